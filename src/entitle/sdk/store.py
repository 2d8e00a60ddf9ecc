"""The client's entitlement cache: a decoded in-process layer in front of a `CacheBackend`.

Thread-safe: states are immutable and replaced whole, so the read path is one dict lookup without
a lock; writers take a lock. Used by the sync client (readers on any thread, the push stream on
its own thread) and by the async client alike.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from entitle.sdk.cache import CacheBackend
from entitle.sdk.credits import CreditCache
from entitle.sdk.marks import DEFAULT_CACHE_SIZE, DEFAULT_MARKS, ChangeMarks, Held
from entitle.sdk.state import State

log = logging.getLogger("entitle.sdk")

Key = tuple[str, str | None]
_SEP = "\x1f"
_LAST_EVENT = "__last_event_id__"


def namespace(api_key: str, base_url: str) -> str:
    """Backend keys are prefixed per server and environment (the key), so one Redis or file can
    serve several clients without mixing their customers."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()[:16]
    return f"entitle:{digest}:"


@dataclass(frozen=True, slots=True)
class FetchMark:
    """Where the entitlement changes, the usage sets and the credit cache's changes stood when a key's list
    was asked for (each a counter over all keys)."""

    entitlements: int
    credits: int
    usage: int = 0
    # How many times every state was distrusted at once (`mark_all_invalid`, `clear`).
    distrusted: int = 0


@dataclass(frozen=True, slots=True)
class _UsageSet:
    order: int
    current: Decimal
    start: datetime | None
    end: datetime | None


class EntitlementStore:
    def __init__(
        self,
        backend: CacheBackend,
        prefix: str,
        ttl: float,
        *,
        size: int = DEFAULT_CACHE_SIZE,
        marks: int = DEFAULT_MARKS,
    ) -> None:
        self.backend = backend
        self.prefix = prefix
        self.ttl = ttl
        # At most `size` decoded states, the least recently written dropped first (`marks.Held`): a state
        # dropped is read again from the backend, else from the server.
        self.hot: Held[Key, State] = Held(size)
        self.push_connected = False
        # States written before this instant may have missed a change (the push stream connected
        # then without a replay point): a backend entry older than it is read as invalid.
        self.trusted_since = 0.0
        # When each key's entitlements last changed (an invalidation): a list in flight then is kept as
        # needing a re-read. Bounded (`marks.ChangeMarks`).
        self._changes: ChangeMarks[Key] = ChangeMarks(marks)
        # The last usage set per key and feature (pushed by the server, or a local report's answer), with
        # its place in the order of all of them (`_usage_moves`): a list fetched before it is overlaid with
        # it. Keys in the order of their last set, at most `marks` of them: a list asked for before the
        # last set forgotten (`_usage_floor`) cannot be overlaid with certainty, and is kept as needing a re-read.
        self._usage_set: dict[Key, dict[str, _UsageSet]] = {}
        self._usage_moves = 0
        self._usage_floor = 0
        self._marks = marks
        # Bumped when every state is distrusted at once: a list in flight then, of a key not held (no
        # change of it recorded), may predate a change the stream will never send.
        self._distrusted = 0
        self._lock = threading.Lock()
        self.credits = CreditCache(backend, prefix, size=size, marks=marks)

    # --- freshness ------------------------------------------------------------------------------

    def is_fresh(self, state: State, now: float) -> bool:
        """Valid, before its first window/grant end, and either watched by a connected push stream
        or younger than the TTL."""
        return state.valid and now < state.expires_at and (self.push_connected or now - state.written_at < self.ttl)

    # --- reads ----------------------------------------------------------------------------------

    def _bkey(self, key: Key) -> str:
        customer, resource = key
        return f"{self.prefix}{customer}{_SEP}{resource or ''}"

    def load(self, key: Key) -> State | None:
        """The hot state, else the backend's (copied into the hot layer), else None."""
        state = self.hot.get(key)
        if state is not None:
            return state
        try:
            text = self.backend.get(self._bkey(key))
        except Exception:  # a broken backend must not break reads
            log.warning("entitle: cache backend read failed", exc_info=True)
            return None
        if text is None:
            return None
        state = State.loads(text)
        if state is not None:
            if state.written_at < self.trusted_since:
                state = state.invalidated()
            with self._lock:
                state = self.hot.hold_if_absent(key, state)
        return state

    def before_fetch(self, key: Key) -> FetchMark:
        """Taken before asking for the key's list: `store` then knows what changed while it was in flight."""
        return FetchMark(self._changes.ticks, self.credits.moves(), self._usage_moves, self._distrusted)

    # --- writes ---------------------------------------------------------------------------------

    def _write(self, key: Key, state: State) -> None:
        self.hot.hold(key, state)
        try:
            self.backend.set(self._bkey(key), state.dumps())
        except Exception:
            log.warning("entitle: cache backend write failed", exc_info=True)

    def store(self, key: Key, data: Mapping[str, Any], mark: FetchMark) -> State:
        """Keep a fetched list. If a change was announced for the key while the fetch was in flight
        (or may have been: see `marks.ChangeMarks`), the result may predate it: keep it, but as invalid
        (re-read next). Usage set meanwhile (`set_usage`) is kept over the list's. The list's balances
        (its CREDIT entries) fill the credit cache, so a balance read next is local."""
        with self._lock:
            valid = (
                self._changes.unchanged_since(key, mark.entitlements)
                and self._distrusted == mark.distrusted
                and self._usage_floor <= mark.usage
            )
            state = State.from_wire(data, time.time(), valid)
            # Usage set while the list was in flight is newer than the list's (or as new: a change after
            # the list was read is pushed after it, and sets its own value then). Without this, the
            # list's older counter would be kept as fresh until the feature's next usage change.
            if mark.usage < self._usage_moves:
                for feature_id, moved in self._usage_set.get(key, {}).items():
                    if moved.order > mark.usage:
                        updated = state.with_usage(feature_id, moved.current, moved.start, moved.end, state.written_at)
                        state = updated or state
            self._write(key, state)
        self.credits.store_listed(key[0], key[1], data.get("entitlements") or (), mark.credits)
        return state

    def invalidate(self, customer_id: str, resource_id: str | None, *, all_resources: bool = False) -> list[Key]:
        """Mark the customer's states as needing a re-read (kept as last known state for offline
        use). Returns the keys this process held."""
        held: list[Key] = []
        with self._lock:
            keys = {(customer_id, resource_id)}
            if all_resources:
                keys |= {k for k in self.hot if k[0] == customer_id}
            for key in keys:
                self._changes.move(key)
                state = self.hot.get(key)
                if state is not None:
                    held.append(key)
                    self._write(key, state.invalidated())
                else:
                    self._invalidate_backend(key)
        return held

    def _invalidate_backend(self, key: Key) -> None:
        try:
            text = self.backend.get(self._bkey(key))
            if text is None:
                return
            state = State.loads(text)
            if state is None:
                self.backend.delete(self._bkey(key))
            else:
                self.backend.set(self._bkey(key), state.invalidated().dumps())
        except Exception:
            log.warning("entitle: cache backend write failed", exc_info=True)

    def set_usage(
        self,
        key: Key,
        feature_id: str,
        current: Decimal,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        """A new current usage for one metered feature (a local report, or pushed by the server)."""
        with self._lock:
            self._usage_moves += 1
            self._remember_usage(key, feature_id, _UsageSet(self._usage_moves, current, start, end))
            state = self.hot.get(key)
            if state is None:
                state = self.load_backend_unlocked(key)
                if state is None:
                    return
            updated = state.with_usage(feature_id, current, start, end, state.written_at)
            if updated is not None:
                self._write(key, updated)

    def counts_in_windows(self, key: Key, feature_id: str) -> bool:
        """Whether the cached state counts this feature's usage per window (it resets); False when unknown."""
        with self._lock:
            state = self.hot.get(key) or self.load_backend_unlocked(key)
        entry = state.entries.get(feature_id) if state is not None else None
        return entry is not None and entry.period_end is not None

    def _remember_usage(self, key: Key, feature_id: str, moved: _UsageSet) -> None:
        sets = self._usage_set.pop(key, None) or {}
        sets[feature_id] = moved
        self._usage_set[key] = sets  # last: keys stay in the order of their last set
        while len(self._usage_set) > self._marks:
            forgotten = self._usage_set.pop(next(iter(self._usage_set)))
            self._usage_floor = max(self._usage_floor, *(s.order for s in forgotten.values()))

    def load_backend_unlocked(self, key: Key) -> State | None:
        try:
            text = self.backend.get(self._bkey(key))
        except Exception:
            return None
        return None if text is None else State.loads(text)

    def mark_all_invalid(self, written_before: float) -> None:
        """After the push stream (re)connects without a replay point, states written before it may
        have missed changes."""
        with self._lock:
            self._distrusted += 1
            self.trusted_since = written_before
            for key, state in list(self.hot.items()):
                if state.valid and state.written_at < written_before:
                    self._changes.move(key)
                    self._write(key, state.invalidated())
        self.credits.mark_all_invalid(written_before)

    def clear(self) -> None:
        """`reset` from the server: drop everything cached for the environment."""
        with self._lock:
            self._distrusted += 1
            for key in self.hot:
                self._changes.move(key)
            self.hot.clear()
            self.credits.clear()
            try:
                self.backend.clear(self.prefix)
            except Exception:
                log.warning("entitle: cache backend clear failed", exc_info=True)

    # --- the push stream's replay point, shared through the backend -------------------------------

    def last_event_id(self) -> int | None:
        try:
            text = self.backend.get(self.prefix + _LAST_EVENT)
            return int(text) if text else None
        except Exception:
            return None

    def set_last_event_id(self, event_id: int) -> None:
        try:
            self.backend.set(self.prefix + _LAST_EVENT, str(event_id))
        except Exception:
            log.warning("entitle: cache backend write failed", exc_info=True)
