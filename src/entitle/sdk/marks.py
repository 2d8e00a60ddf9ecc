"""Bounded memory for the client's caches: what is held, and when each key last changed.

A long-running application asks about more and more customers; the client must not keep every one of
them forever. Two things are bounded here:

- `Held`: the decoded states (or balances) kept in memory, at most `limit`, the least recently written
  dropped first. Reads stay a plain `dict.get` without a lock (the hot path); dropping a state only
  means the next read of it looks in the backend, then asks the server.
- `ChangeMarks`: when each key last changed, on one counter for all of them, so that a read in flight
  keeps what it got only if its key did not change after the read was sent. At most `limit` keys are
  remembered; the oldest one's mark becomes the floor, and a read sent before the floor is not trusted
  (it may have missed a change that is forgotten): it is kept as needing a re-read, never as fresh.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Cached states a client holds decoded by default. A customer with 20 features costs ~17 KiB decoded and
# ~4 KiB serialized (tracemalloc over 100 customers of bench/sdk_cache.py's catalog; `state._kept`); the
# default in-process backend keeps twice as many serialized: ~5,000 x 17 + 10,000 x 4 KiB, ~125 MB at
# most. An application that asks about more customers than this, again and again, should raise
# `cache_size` (a dropped state costs one request when next asked for).
DEFAULT_CACHE_SIZE = 5_000
# Changes remembered for reads in flight (~150 bytes each). A read is distrusted only if this many other
# keys changed while it was in flight (a fraction of a second): far more than a stream delivers meanwhile.
DEFAULT_MARKS = 10_000


class Held(dict[K, V]):
    """A dict whose writers go through `hold` (under their own lock): at most `limit` entries, the least
    recently written dropped first. Readers use it as the plain dict it is (slotted: an instance dict
    would make every `get` on the hot path look for a shadowing attribute first)."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("the cache holds at least one entry")
        self.limit = limit

    def hold(self, key: K, value: V) -> None:
        """Keep `value` as the newest entry. Written again, a key moves to the end (dicts keep insertion
        order), so the first key is the least recently written."""
        self.pop(key, None)
        self[key] = value
        while len(self) > self.limit:
            del self[next(iter(self))]

    def hold_if_absent(self, key: K, value: V) -> V:
        """`setdefault`, bounded: what a reader copies in from the backend."""
        held = self.get(key)
        if held is not None:
            return held
        self.hold(key, value)
        return value


class ChangeMarks(Generic[K]):
    """When each key last changed (`move`), on one counter for all keys. Not thread-safe: its owner's
    lock guards it."""

    def __init__(self, limit: int = DEFAULT_MARKS) -> None:
        self.limit = limit
        self.ticks = 0
        self.floor = 0
        self._at: dict[K, int] = {}

    def move(self, key: K) -> int:
        self.ticks += 1
        self._at.pop(key, None)
        self._at[key] = self.ticks
        while len(self._at) > self.limit:
            oldest = next(iter(self._at))
            self.floor = self._at.pop(oldest)
        return self.ticks

    def at(self, key: K) -> int:
        """The key's last change (0: none remembered)."""
        return self._at.get(key, 0)

    def unchanged_since(self, key: K, tick: int) -> bool:
        """No change of `key` after `tick` (a `ticks` taken earlier), as far as anything remembered tells:
        false also when a change after `tick` may have been forgotten."""
        return tick >= self.floor and self._at.get(key, 0) <= tick

    def __len__(self) -> int:
        return len(self._at)
