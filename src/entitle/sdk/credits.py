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
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from entitle.sdk.cache import CacheBackend
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
    def __init__(self, backend: CacheBackend, prefix: str) -> None:
        self.backend = backend
        self.prefix = f"{prefix}credits{_SEP}"
        self.hot: dict[CreditKey, CreditState] = {}
        self._generation: dict[CreditKey, int] = {}
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
            self.hot.setdefault(key, state)
        return state

    def generation(self, key: CreditKey) -> int:
        return self._generation.get(key, 0)

    def _write(self, key: CreditKey, state: CreditState) -> None:
        self.hot[key] = state
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
        """Keep a balance the server sent. With `generation` (a read that was in flight), only if no
        newer balance arrived meanwhile; the answer is the server's either way. `released`: what a
        release just stopped holding (its answer does not say what is still reserved)."""
        with self._lock:
            previous = self.hot.get(key)
            reserved = None if previous is None else max(Decimal(0), previous.reserved - released)
            state = CreditState.from_wire(data, reserved, time.time())
            if generation is None:
                self._generation[key] = self._generation.get(key, 0) + 1
            elif self._generation.get(key, 0) != generation:
                return state
            self._write(key, state)
        return state

    def mark_all_invalid(self, written_before: float) -> None:
        """The push stream connected without a replay point: balances written before may be stale."""
        with self._lock:
            for key, state in list(self.hot.items()):
                if state.written_at < written_before:
                    self._generation[key] = self._generation.get(key, 0) + 1
                    del self.hot[key]
                    try:
                        self.backend.delete(self._bkey(key))
                    except Exception:
                        log.warning("entitle: cache backend write failed", exc_info=True)

    def clear(self) -> None:
        """`reset`: the entitlement store's clear drops the backend's entries (same namespace)."""
        with self._lock:
            for key in self.hot:
                self._generation[key] = self._generation.get(key, 0) + 1
            self.hot.clear()
