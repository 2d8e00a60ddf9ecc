"""Server keys remembered for one second by the hot routes (entitlement checks and lists, event ingestion).

Authenticating reads the key's row on every request; at thousands of checks per second that read is
most of a check's cost. A server key's principal is therefore reused for at most `TTL` seconds after
it was read: a revocation committed by another process holds on those routes within `TTL`, one
committed by this process at once (`forget_all`). Event ingestion remembers them alike (its key read
was a thread hop of its own on every batch); every other route still reads the key each time.

Under steady traffic no request waits for that read: once a remembered key is half its `TTL` old, the
next request is still answered from memory and starts one read in the background (`needs_refresh`);
a request that finds it expired waits for the one read in flight instead of starting its own. Before,
every request of the expiry instant read the key in its own worker thread: at 32 connections, a
stampede once a second that made the entitlement check's p99.

Client keys are not remembered: what they may do depends on the environment's customer-token
settings, which the command line changes and which must hold from the next request on.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

from entitle.environments.models import KeyKind

if TYPE_CHECKING:
    from entitle.environments.service import Principal

TTL = 1.0
MAX_KEYS = 1000

_caches: weakref.WeakSet[KeyCache] = weakref.WeakSet()
_registry_lock = threading.Lock()


class KeyCache:
    def __init__(self, ttl: float = TTL, max_keys: int = MAX_KEYS) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._principals: dict[str, tuple[Principal, float]] = {}
        with _registry_lock:
            _caches.add(self)

    def get(self, raw_key: str) -> Principal | None:
        found = self._principals.get(raw_key)
        if found is None:
            return None
        principal, read_at = found
        if time.monotonic() - read_at >= self.ttl:
            return None
        return principal

    def remembers(self, raw_key: str) -> bool:
        """Whether the key was read as a server key (its entry may have expired)."""
        return raw_key in self._principals

    def needs_refresh(self, raw_key: str) -> bool:
        """Past half its `TTL`: time to read it again, before any request has to wait for that."""
        found = self._principals.get(raw_key)
        return found is not None and time.monotonic() - found[1] >= self.ttl / 2

    def forget(self, raw_key: str) -> None:
        with self._lock:
            self._principals.pop(raw_key, None)

    def keep(self, raw_key: str, principal: Principal, read_at: float) -> None:
        """`read_at`: `time.monotonic()` before the key was read (its age counts from then)."""
        if principal.kind is not KeyKind.SERVER:
            return
        with self._lock:
            if len(self._principals) >= self.max_keys:
                self._principals.clear()  # more live keys than this is not a hot path worth a smarter bound
            self._principals[raw_key] = (principal, read_at)

    def clear(self) -> None:
        with self._lock:
            self._principals.clear()


def forget_all() -> None:
    """A key was revoked in this process: no cache here may answer for any key from now on."""
    with _registry_lock:
        caches = list(_caches)
    for cache in caches:
        cache.clear()
