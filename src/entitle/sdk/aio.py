"""The asynchronous client, `AsyncEntitle`: the same API as `Entitle`, awaited.

Background work (the push stream, event batches) runs as tasks in the loop of the first call (or
`async with`); `await client.close()` sends the remaining events. If the application exits without
closing, an exit hook still sends queued events synchronously.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx

from entitle.sdk import wire
from entitle.sdk.base import DEFAULT_BASE_URL, ClientBase
from entitle.sdk.batch import DropCallback, DropReporter, Event, EventQueue, TaskBatcher, named_events
from entitle.sdk.cache import CacheBackend
from entitle.sdk.marks import DEFAULT_CACHE_SIZE
from entitle.sdk.push import PushListener
from entitle.sdk.state import State, cached_answer, evaluate, server_result, to_decimal
from entitle.sdk.types import (
    CreditBalance,
    CreditReservation,
    EntitleConnectionError,
    EntitleError,
    EntitlementResult,
    FallbackEntitlement,
    ReportedUsage,
    Source,
)

log = logging.getLogger("entitle.sdk")


class _DrainAtExit:
    """The exit hook of an `AsyncEntitle` that was not closed: the loop is gone by then, so what is
    still queued is sent with a plain sync client.

    It holds the queue itself, not the client: an application's client is often garbage by the
    time the interpreter exits (a local of a coroutine that `asyncio.run` finished), and its events
    must still go out. `close()` unregisters it."""

    def __init__(
        self, events: EventQueue, base_url: str, headers: Mapping[str, str], timeout: float, report: DropReporter
    ) -> None:
        self.events = events
        self.base_url = base_url
        self.headers = dict(headers)
        self.timeout = timeout
        self.report = report

    def __call__(self) -> None:
        queued = list(self.events.events)
        if not queued:
            return
        size = self.events.batch_size
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout) as http:
            for start in range(0, len(queued), size):
                self._deliver(http, queued[start : start + size])

    def _deliver(self, http: httpx.Client, batch: list[Event]) -> None:
        attempt = 0
        while batch:
            try:
                wire.data_of(http.post("/api/v1/events", json={"events": batch}))
                return
            except (httpx.TransportError, EntitleConnectionError) as exc:
                attempt += 1
                if attempt >= 5:
                    self.report(batch, EntitleConnectionError(f"not delivered at exit: {exc!r}"))
                    return
                time.sleep(0.2 * 2**attempt)
            except EntitleError as exc:  # permanent: drop what it names, send the rest
                named = named_events(exc, len(batch)) or set(range(len(batch)))
                self.report([e for i, e in enumerate(batch) if i in named], exc)
                batch = [e for i, e in enumerate(batch) if i not in named]


class AsyncEntitle(ClientBase):
    """Entitle's server SDK (async). See `Entitle` for the semantics of each call."""

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            fallback_entitlements=fallback_entitlements,
            cache_backend=cache_backend,
            push=push,
            cache_ttl=cache_ttl,
            cache_size=cache_size,
            event_batch_size=event_batch_size,
            event_flush_interval=event_flush_interval,
            timeout=timeout,
            offline_retry_interval=offline_retry_interval,
            close_timeout=close_timeout,
            on_events_dropped=on_events_dropped,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )
        self._batcher: TaskBatcher | None = None
        self._push_task: asyncio.Task[None] | None = None
        self._push_http: httpx.AsyncClient | None = None
        self._listener: PushListener | None = None
        self._atexit = _DrainAtExit(self._events, self.base_url, self._headers, timeout, self._report_drop)
        atexit.register(self._atexit)

    def _start(self) -> None:
        """Start the background tasks in the running loop (first call)."""
        if self._closed:
            raise RuntimeError("the Entitle client is closed")
        if self.push and self._push_task is None:
            self._push_http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self.timeout)
            self._listener = PushListener(self._store, self._push_http)
            self._push_task = asyncio.get_running_loop().create_task(self._listener.run(), name="entitle-push")

    async def _send(self, call: wire.Call, attempts: int = 1) -> Any:
        error: EntitleError = EntitleConnectionError("not sent")
        for attempt in range(attempts):
            try:
                response = await self._http.request(call.method, call.path, params=call.params, json=call.body)
            except httpx.TransportError as exc:
                error = EntitleConnectionError(f"{call.method} {call.path}: {exc!r}")
            else:
                if not wire.is_transient_status(response.status_code):
                    return wire.data_of(response)
                error = wire.error_of(response)
            if attempt + 1 < attempts:
                await asyncio.sleep(0.1 * 2**attempt)
        raise error

    # --- entitlements -----------------------------------------------------------------------------

    async def get_entitlement(
        self,
        customer_id: str,
        feature_id: str,
        *,
        resource_id: str | None = None,
        requested_usage: Decimal | int | float | None = None,
        requested_values: Iterable[str] | None = None,
    ) -> EntitlementResult:
        store = self._store
        state = store.hot.get((customer_id, resource_id))
        now = time.time()
        # `store.is_fresh(state, now)`, inlined: this is the hot path, and the call was a tenth of it.
        if (
            state is not None
            and state.valid
            and now < state.expires_at
            and (store.push_connected or now - state.written_at < store.ttl)
            and feature_id not in state.credit_priced
        ):
            if self._push_task is None and self.push:
                self._start()
            return cached_answer(state, customer_id, feature_id, resource_id, requested_usage, requested_values, now)
        usage, values = self._args(requested_usage, requested_values)
        self._start()
        key = (customer_id, resource_id)
        state = self._fresh(key)
        if state is not None and feature_id in state.credit_priced:
            return await self._check_priced(state, customer_id, feature_id, resource_id, usage, values)
        if state is not None:
            return evaluate(state, customer_id, feature_id, resource_id, Source.CACHE, usage, values, time.time())
        state, source = await self._read_through(key)
        if source is Source.SERVER:
            assert state is not None
            if feature_id in state.credit_priced:
                listed = self._as_listed(state, customer_id, feature_id, resource_id, usage, values)
                if listed is not None:
                    return listed
                return await self._check_priced(state, customer_id, feature_id, resource_id, usage, values)
            return evaluate(state, customer_id, feature_id, resource_id, source, usage, values, time.time())
        return self._offline_one(state, customer_id, feature_id, resource_id, usage, values)

    async def _check_priced(
        self,
        state: State,
        customer_id: str,
        feature_id: str,
        resource_id: str | None,
        usage: Decimal | None,
        values: tuple[str, ...] | None,
    ) -> EntitlementResult:
        """A feature priced in credits: the server's check (its answer follows the balance at the feature's
        rate, which the cache does not know); unreachable, the last list's answer (STALE_CACHE)."""
        if self._may_try_server():
            try:
                data = await self._send(wire.feature_check_call(customer_id, feature_id, resource_id, usage, values))
            except EntitleConnectionError as exc:
                log.warning("entitle: server unreachable, answering from cache: %s", exc)
                self._went_offline()
            else:
                self._came_online()
                return server_result(data, customer_id, feature_id, resource_id, usage, values)
        return self._offline_one(state, customer_id, feature_id, resource_id, usage, values)

    async def get_entitlements(self, customer_id: str, *, resource_id: str | None = None) -> list[EntitlementResult]:
        self._start()
        key = (customer_id, resource_id)
        state = self._fresh(key)
        # A list with features priced in credits is the server's: their answers follow balances.
        if state is not None and not state.credit_priced:
            return self._all(state, Source.CACHE, customer_id, resource_id)
        state, source = await self._read_through(key)
        return self._all(state, source, customer_id, resource_id)

    async def _read_through(self, key: tuple[str, str | None]) -> tuple[State | None, Source]:
        last = self._store.load(key)
        if self._may_try_server():
            mark = self._store.before_fetch(key)
            try:
                data = await self._send(wire.entitlements_call(*key))
            except EntitleConnectionError as exc:
                log.warning("entitle: server unreachable, answering from %s: %s", "cache" if last else "fallback", exc)
                self._went_offline()
            else:
                self._came_online()
                return self._store.store(key, data, mark), Source.SERVER
        return last, (Source.STALE_CACHE if last is not None else Source.FALLBACK)

    async def refresh(self, customer_id: str, *, resource_id: str | None = None) -> None:
        key = (customer_id, resource_id)
        mark = self._store.before_fetch(key)
        self._store.store(key, await self._send(wire.entitlements_call(*key), attempts=3), mark)

    # --- writes -----------------------------------------------------------------------------------

    async def provision_customer(
        self,
        customer_id: str,
        *,
        name: str | None = None,
        email: str | None = None,
        billing_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        subscription_params: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        call = wire.provision_customer_call(
            customer_id,
            dict(
                fields,
                name=name,
                email=email,
                billing_id=billing_id,
                metadata=metadata,
                subscription_params=subscription_params,
            ),
        )
        data: dict[str, Any] = await self._send(call)
        self._after_provision(customer_id)
        return data

    async def provision_subscription(
        self,
        customer_id: str,
        plan_id: str,
        *,
        billing_period: str | None = None,
        resource_id: str | None = None,
        addons: Iterable[Mapping[str, Any]] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        call = wire.provision_subscription_call(
            customer_id,
            plan_id,
            dict(
                fields,
                billing_period=billing_period,
                resource_id=resource_id,
                addons=list(addons) if addons is not None else None,
            ),
        )
        data: dict[str, Any] = await self._send(call)
        self._after_provision(customer_id, resource_id)
        return data

    async def report_usage(
        self,
        customer_id: str,
        feature_id: str,
        value: Decimal | int | float,
        *,
        update_behavior: str = "DELTA",
        resource_id: str | None = None,
        idempotency_key: str | None = None,
        created_at: datetime | None = None,
        dimensions: Mapping[str, Any] | None = None,
    ) -> ReportedUsage:
        call = wire.usage_call(
            customer_id,
            feature_id,
            value,
            update_behavior=update_behavior,
            resource_id=resource_id,
            idempotency_key=idempotency_key,
            created_at=created_at,
            dimensions=dimensions,
        )
        usage = wire.reported_usage(await self._send(call, attempts=3))
        self._after_report(customer_id, resource_id, feature_id, usage, backdated=created_at is not None)
        return usage

    async def report_event(
        self,
        customer_id: str,
        event_name: str,
        *,
        dimensions: Mapping[str, Any] | None = None,
        resource_id: str | None = None,
        idempotency_key: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        event = wire.make_event(
            customer_id,
            event_name,
            dimensions=dimensions,
            resource_id=resource_id,
            idempotency_key=idempotency_key,
            timestamp=timestamp,
        )
        self._start()
        if self._batcher is None:
            self._batcher = TaskBatcher(self._events, self._send_events, self._report_drop)
        if self._events.put(event):
            self._batcher.wake()

    async def _send_events(self, events: list[Event]) -> None:
        await self._send(wire.events_call(events), attempts=1)

    async def flush(self, timeout: float | None = 30.0) -> bool:
        if self._batcher is None:
            return True
        return await self._batcher.flush(timeout)

    @property
    def pending_events(self) -> int:
        return self._events.pending

    async def get_paywall(
        self,
        *,
        product_id: str | None = None,
        customer_id: str | None = None,
        resource_id: str | None = None,
        billing_country_code: str | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = await self._send(
            wire.paywall_call(product_id, customer_id, resource_id, billing_country_code), attempts=3
        )
        return data

    # --- credits ----------------------------------------------------------------------------------

    async def get_credit_balance(
        self, customer_id: str, currency_id: str, *, resource_id: str | None = None
    ) -> CreditBalance:
        """The customer's balance in a custom currency: from the cache while it is current (the push
        stream's `credits.updated` keeps it so), else read from the server. Offline, the last known
        balance (`Source.STALE_CACHE`); with none, `EntitleConnectionError`."""
        self._start()
        key = (customer_id, currency_id, resource_id)
        state = self._fresh_credits(key)
        if state is not None:
            return wire.credit_balance(key, state, Source.CACHE)
        last = self._store.credits.load(key, self._store.trusted_since)
        error: EntitleConnectionError = EntitleConnectionError("offline: the server is not tried again yet")
        if self._may_try_server():
            generation = self._store.credits.moves()
            try:
                data = await self._send(wire.credit_check_call(customer_id, currency_id, resource_id))
            except EntitleConnectionError as exc:
                error = exc
                self._went_offline()
            else:
                self._came_online()
                return wire.credit_balance(key, self._store.credits.store(key, data, generation), Source.SERVER)
        if last is not None:
            return wire.credit_balance(key, last, Source.STALE_CACHE)
        raise error

    async def consume(
        self,
        customer_id: str,
        currency_id: str,
        amount: Decimal | int | float,
        *,
        idempotency_key: str | None = None,
        resource_id: str | None = None,
        dimensions: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> CreditBalance:
        """Consume credits now (`POST /api/v1/credits/consumption`), retried with the same idempotency
        key (a new one when none is given) on a transient failure; never refused for lack of credits
        (the server overdraws). Returns the balance after it, which the cache takes at once."""
        key = (customer_id, currency_id, resource_id)
        call = wire.consume_call(
            customer_id,
            currency_id,
            amount,
            idempotency_key or wire.new_idempotency_key(),
            resource_id=resource_id,
            dimensions=dimensions,
            created_at=created_at,
        )
        data = await self._send(call, attempts=3)
        return wire.credit_balance(key, self._store.credits.store(key, data["credit"]), Source.SERVER)

    async def reserve(
        self,
        customer_id: str,
        currency_id: str,
        amount: Decimal | int | float,
        reservation_id: str,
        *,
        ttl_seconds: int | None = None,
        resource_id: str | None = None,
    ) -> CreditReservation:
        """Hold `amount` credits if the balance covers it (the check with `reserveAmount`): granted with
        the hold placed, or refused (`InsufficientCredits`). The same `reservation_id` again answers the
        same hold (so it is retried safely). Release it with `release` once the work is done."""
        key = (customer_id, currency_id, resource_id)
        call = wire.credit_check_call(
            customer_id,
            currency_id,
            resource_id,
            reserve_amount=amount,
            reservation_id=reservation_id,
            ttl_seconds=ttl_seconds,
        )
        data = await self._send(call, attempts=3)
        balance = wire.credit_balance(key, self._store.credits.store(key, data), Source.SERVER)
        return wire.credit_reservation(data, balance)

    async def release(
        self,
        reservation_id: str,
        customer_id: str,
        currency_id: str,
        consumed_amount: Decimal | int | float,
        *,
        resource_id: str | None = None,
    ) -> CreditReservation:
        """End a hold, charging `consumed_amount` (more than was held is drawn afresh). Idempotent."""
        key = (customer_id, currency_id, resource_id)
        call = wire.release_call(reservation_id, customer_id, currency_id, consumed_amount, resource_id)
        data = await self._send(call, attempts=3)
        held = data["reservation"]
        state = self._store.credits.store(key, data["credit"], released=to_decimal(held["amount"]))
        return wire.credit_reservation({"isGranted": True}, wire.credit_balance(key, state, Source.SERVER), held)

    # --- push and lifecycle -----------------------------------------------------------------------

    async def wait_for_push(self, timeout: float = 10.0) -> bool:
        self._start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._store.push_connected:
                return True
            if self._listener is not None and self._listener.unavailable:
                return False
            await asyncio.sleep(0.01)
        return self._store.push_connected

    @property
    def push_connected(self) -> bool:
        return self._store.push_connected

    async def close(self) -> None:
        if self._closed:
            return
        if self._batcher is not None and not await self._batcher.close(self.close_timeout):
            log.error("entitle: %d event(s) could not be delivered before close", self._events.pending)
        self._closed = True
        atexit.unregister(self._atexit)
        if self._push_task is not None:
            self._push_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._push_task
            self._store.push_connected = False
        if self._push_http is not None:
            await self._push_http.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEntitle:
        self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
