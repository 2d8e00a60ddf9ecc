"""Cached credit balances: one entry per (customer, currency, resource), beside the entitlement states.

Entries live in the same backend and namespace as the entitlement states (so one Redis or file serves
both) under keys of their own, and follow the same freshness rule: current while the push stream is
connected (its `credits.updated` events carry the whole balance), else for the cache TTL. A balance read
from the server while a pushed one arrived is dropped, not stored over the newer value.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from entitle.sdk.cache import CacheBackend
from entitle.sdk.marks import DEFAULT_CACHE_SIZE, DEFAULT_MARKS, ChangeMarks, Held
from entitle.sdk.state import to_decimal

log = logging.getLogger("entitle.sdk")

CreditKey = tuple[str, str, str | None]  # customer, currency, resource
_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class CreditState:
    usage_limit: Decimal
    current_usage: Decimal
    reserved: Decimal
    written_at: float

    def dumps(self) -> str:
        return json.dumps(
            {
                "usageLimit": str(self.usage_limit),
                "currentUsage": str(self.current_usage),
                "reserved": str(self.reserved),
                "writtenAt": self.written_at,
            }
        )

    @staticmethod
    def loads(text: str) -> CreditState | None:
        try:
            raw = json.loads(text)
            return CreditState(
                Decimal(raw["usageLimit"]), Decimal(raw["currentUsage"]), Decimal(raw["reserved"]), raw["writtenAt"]
            )
        except (ValueError, KeyError, TypeError, ArithmeticError):
            return None

    @staticmethod
    def from_wire(data: dict[str, Any], reserved: Decimal | None, now: float) -> CreditState:
        """From a check's CREDIT result, a pushed `credits.updated`, or a consumption's `credit` block
        (which does not say what is reserved: `reserved` is then the last known amount)."""
        held = data.get("reserved")
        return CreditState(
            to_decimal(data["usageLimit"]),
            to_decimal(data["currentUsage"]),
            to_decimal(held) if held is not None else (reserved or Decimal(0)),
            now,
        )


class CreditCache:
    def __init__(
        self, backend: CacheBackend, prefix: str, *, size: int = DEFAULT_CACHE_SIZE, marks: int = DEFAULT_MARKS
    ) -> None:
        self.backend = backend
        self.prefix = f"{prefix}credits{_SEP}"
        # Bounded as the entitlement states are (`marks.Held`).
        self.hot: Held[CreditKey, CreditState] = Held(size)
        # When each balance last changed (or was dropped), on one counter for all of them: a read in flight
        # keeps what it got only if its balance did not change after the read was sent (`marks.ChangeMarks`).
        self._changes: ChangeMarks[CreditKey] = ChangeMarks(marks)
        self._lock = threading.Lock()

    def _bkey(self, key: CreditKey) -> str:
        customer, currency, resource = key
        return f"{self.prefix}{customer}{_SEP}{currency}{_SEP}{resource or ''}"

    def load(self, key: CreditKey, trusted_since: float) -> CreditState | None:
        state = self.hot.get(key)
        if state is not None:
            return state
        try:
            text = self.backend.get(self._bkey(key))
        except Exception:
            log.warning("entitle: cache backend read failed", exc_info=True)
            return None
        state = CreditState.loads(text) if text is not None else None
        if state is None or state.written_at < trusted_since:
            return None
        with self._lock:
            return self.hot.hold_if_absent(key, state)

    def moves(self) -> int:
        """Where the change counter stands: taken before sending a read whose balances `store` or
        `store_listed` keeps."""
        return self._changes.ticks

    def _move(self, key: CreditKey) -> None:
        self._changes.move(key)

    def _write(self, key: CreditKey, state: CreditState) -> None:
        self.hot.hold(key, state)
        try:
            self.backend.set(self._bkey(key), state.dumps())
        except Exception:
            log.warning("entitle: cache backend write failed", exc_info=True)

    def store(
        self,
        key: CreditKey,
        data: dict[str, Any],
        generation: int | None = None,
        *,
        released: Decimal = Decimal(0),
    ) -> CreditState:
        """Keep a balance the server sent. With `generation` (`moves()` before a read that was in flight),
        only if no newer balance arrived meanwhile; the answer is the server's either way. `released`: what a
        release just stopped holding (its answer does not say what is still reserved)."""
        with self._lock:
            previous = self.hot.get(key)
            reserved = None if previous is None else max(Decimal(0), previous.reserved - released)
            state = CreditState.from_wire(data, reserved, time.time())
            if generation is None:
                self._move(key)
            elif not self._changes.unchanged_since(key, generation):
                return state
            self._write(key, state)
        return state

    def store_listed(self, customer_id: str, resource_id: str | None, entitlements: Iterable[Any], since: int) -> None:
        """Keep the balances an entitlement list carries (its CREDIT entries, each the currency check's
        answer), except those that changed after `since` (`moves()` when the list was asked for): a
        balance pushed meanwhile may be newer than the list."""
        now = time.time()
        with self._lock:
            for raw in entitlements:
                if not isinstance(raw, dict) or raw.get("type") != "CREDIT":
                    continue
                currency = (raw.get("currency") or {}).get("currencyId")
                if not currency or raw.get("usageLimit") is None or raw.get("currentUsage") is None:
                    continue
                key = (customer_id, currency, resource_id)
                if not self._changes.unchanged_since(key, since):
                    continue
                self._write(key, CreditState.from_wire(raw, None, now))

    def mark_all_invalid(self, written_before: float) -> None:
        """The push stream connected without a replay point: balances written before may be stale."""
        with self._lock:
            for key, state in list(self.hot.items()):
                if state.written_at < written_before:
                    self._move(key)
                    del self.hot[key]
                    try:
                        self.backend.delete(self._bkey(key))
                    except Exception:
                        log.warning("entitle: cache backend write failed", exc_info=True)

    def clear(self) -> None:
        """`reset`: the entitlement store's clear drops the backend's entries (same namespace)."""
        with self._lock:
            for key in list(self.hot):
                self._move(key)
            self.hot.clear()
