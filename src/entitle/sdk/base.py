"""What the sync and async clients share: configuration, the cache, offline state, answers."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from entitle.sdk.batch import DropCallback, DropReporter, EventQueue
from entitle.sdk.cache import CacheBackend, MemoryCache
from entitle.sdk.credits import CreditKey, CreditState
from entitle.sdk.marks import DEFAULT_CACHE_SIZE
from entitle.sdk.state import State, evaluate, fallback_result, normalize_fallbacks, server_result, to_decimal
from entitle.sdk.store import EntitlementStore, Key, namespace
from entitle.sdk.types import EntitlementResult, FallbackEntitlement, ReportedUsage, Source

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
USER_AGENT = "entitle-python-sdk"


class ClientBase:
    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        fallback_entitlements: Mapping[str, FallbackEntitlement | bool | Mapping[str, Any]] | None = None,
        cache_backend: CacheBackend | None = None,
        push: bool = True,
        cache_ttl: float = 30.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
        event_batch_size: int = 500,
        event_flush_interval: float = 1.0,
        timeout: float = 10.0,
        offline_retry_interval: float = 1.0,
        close_timeout: float = 10.0,
        on_events_dropped: DropCallback | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.push = push
        self.timeout = timeout
        self.close_timeout = close_timeout
        self._headers = {"X-API-KEY": api_key, "User-Agent": USER_AGENT}
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        # The default backend is this process's memory, bounded too: it holds a serialized copy of each
        # state and balance the store holds (and the stream's replay point).
        backend = cache_backend if cache_backend is not None else MemoryCache(max_entries=2 * cache_size + 1)
        self._store = EntitlementStore(backend, namespace(api_key, self.base_url), cache_ttl, size=cache_size)
        self._fallbacks = normalize_fallbacks(fallback_entitlements)
        self._events = EventQueue(event_batch_size, event_flush_interval)
        self._report_drop = DropReporter(on_events_dropped)
        self._offline_retry = offline_retry_interval
        self._offline_until = 0.0
        self._offline_backoff = offline_retry_interval
        self._closed = False

    # --- offline bookkeeping --------------------------------------------------------------------

    @property
    def is_offline(self) -> bool:
        """True while the last request failed to reach the server (until a retry succeeds)."""
        return self._offline_until > 0.0

    def _may_try_server(self) -> bool:
        return time.monotonic() >= self._offline_until

    def _went_offline(self) -> None:
        """After a failure, answer locally without trying the server again for a while (doubling)."""
        self._offline_until = time.monotonic() + self._offline_backoff
        self._offline_backoff = min(self._offline_backoff * 2, 30.0)

    def _came_online(self) -> None:
        self._offline_until = 0.0
        self._offline_backoff = self._offline_retry

    # --- answers --------------------------------------------------------------------------------

    @staticmethod
    def _args(
        requested_usage: Decimal | int | float | None, requested_values: Iterable[str] | None
    ) -> tuple[Decimal | None, tuple[str, ...] | None]:
        return (
            None if requested_usage is None else to_decimal(requested_usage),
            None if requested_values is None else tuple(requested_values),
        )

    def _fresh(self, key: Key) -> State | None:
        state = self._store.load(key)
        return state if state is not None and self._store.is_fresh(state, time.time()) else None

    def _offline_one(
        self,
        state: State | None,
        customer_id: str,
        feature_id: str,
        resource_id: str | None,
        usage: Decimal | None,
        values: tuple[str, ...] | None,
    ) -> EntitlementResult:
        if state is not None:
            return evaluate(state, customer_id, feature_id, resource_id, Source.STALE_CACHE, usage, values, time.time())
        return fallback_result(self._fallbacks.get(feature_id), customer_id, feature_id, resource_id, usage, values)

    @staticmethod
    def _as_listed(
        state: State,
        customer_id: str,
        feature_id: str,
        resource_id: str | None,
        usage: Decimal | None,
        values: tuple[str, ...] | None,
    ) -> EntitlementResult | None:
        """A credit-priced feature asked without a usage or values, answered by the list the server sent in
        this very call: the list answers each feature as its check without `requestedUsage` does (docs/credits.md),
        so a second request would only ask the same again. None: the check must be asked (also when a change
        was announced while the list was in flight: the list may predate it)."""
        entry = state.entries.get(feature_id)
        if usage is not None or values is not None or entry is None or not state.valid:
            return None
        return server_result(entry.raw, customer_id, feature_id, resource_id, None, None)

    def _all(
        self, state: State | None, source: Source, customer_id: str, resource_id: str | None
    ) -> list[EntitlementResult]:
        now = time.time()
        if state is None:
            return [
                fallback_result(fb, customer_id, feature_id, resource_id, None, None)
                for feature_id, fb in sorted(self._fallbacks.items())
            ]
        results = [
            evaluate(state, customer_id, feature_id, resource_id, source, None, None, now)
            for feature_id in sorted(state.entries)
        ]
        return [r for r in results if r.feature_type is not None]  # a lapsed grant (stale) is no entitlement

    def _fresh_credits(self, key: CreditKey) -> CreditState | None:
        store = self._store
        state = store.credits.load(key, store.trusted_since)
        if state is None or not (store.push_connected or time.time() - state.written_at < store.ttl):
            return None
        return state

    def _after_provision(self, customer_id: str, resource_id: str | None = None) -> None:
        self._store.invalidate(customer_id, resource_id, all_resources=True)

    def _after_report(
        self, customer_id: str, resource_id: str | None, feature_id: str, usage: ReportedUsage, backdated: bool
    ) -> None:
        """The report's counter becomes the cached current usage when it is the current window's. A report
        dated into an earlier window (`created_at`) answers that window's counter: written over the
        current one it made the cache deny (or grant) on last month's usage until the next change. Such
        a report leaves the state to be read again instead (the window it counted in is not always told).
        A feature whose usage never resets has one counter: any report's answer is current."""
        if usage.current_usage is None:
            return
        key = (customer_id, resource_id)
        windowed = usage.usage_period_end is not None or self._store.counts_in_windows(key, feature_id)
        if backdated and windowed and not _in_current_window(usage, datetime.now(UTC)):
            self._store.invalidate(customer_id, resource_id)
            return
        window = usage.usage_period_start, usage.usage_period_end
        self._store.set_usage(key, feature_id, usage.current_usage, *window)

    def cached_keys(self) -> list[Key]:
        """(customer, resource) pairs held in this process's cache layer (diagnostics)."""
        return list(self._store.hot)


def _in_current_window(usage: ReportedUsage, now: datetime) -> bool:
    start, end = usage.usage_period_start, usage.usage_period_end
    return end is not None and now < end and (start is None or start <= now)
