"""The synchronous client, `Entitle`."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx

from entitle.sdk import wire
from entitle.sdk.base import DEFAULT_BASE_URL, ClientBase
from entitle.sdk.batch import DropCallback, Event, ThreadBatcher
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


def _close_at_exit(ref: weakref.ref[Entitle]) -> None:
    client = ref()
    if client is not None:
        client.close()


class Entitle(ClientBase):
    """Entitle's server SDK (sync). Thread-safe: create one per process and share it.

    Entitlement reads are answered from a local cache (warmed per customer by one request, kept
    fresh by the push stream); see docs/sdk.md. `transport` replaces the request client's httpx
    transport (tests, proxies).
    """

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
        transport: httpx.BaseTransport | None = None,
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
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport)
        self._batcher: ThreadBatcher | None = None
        self._batcher_lock = threading.Lock()
        self._push_loop: asyncio.AbstractEventLoop | None = None
        self._push_task: asyncio.Task[None] | None = None
        self._push_thread: threading.Thread | None = None
        self._listener: PushListener | None = None
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)
        if push:
            self._start_push()

    # --- sending ----------------------------------------------------------------------------------

    def _send(self, call: wire.Call, attempts: int = 1) -> Any:
        error: EntitleError = EntitleConnectionError("not sent")
        for attempt in range(attempts):
            try:
                response = self._http.request(call.method, call.path, params=call.params, json=call.body)
            except httpx.TransportError as exc:
                error = EntitleConnectionError(f"{call.method} {call.path}: {exc!r}")
            else:
                if not wire.is_transient_status(response.status_code):
                    return wire.data_of(response)
                error = wire.error_of(response)
            if attempt + 1 < attempts:
                time.sleep(0.1 * 2**attempt)
        raise error

    # --- entitlements -----------------------------------------------------------------------------

    def get_entitlement(
        self,
        customer_id: str,
        feature_id: str,
        *,
        resource_id: str | None = None,
        requested_usage: Decimal | int | float | None = None,
        requested_values: Iterable[str] | None = None,
    ) -> EntitlementResult:
        """May the customer use the feature (this much, these values)? Never raises for a network
        failure: the answer's `source` says where it came from."""
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
            return cached_answer(state, customer_id, feature_id, resource_id, requested_usage, requested_values, now)
        usage, values = self._args(requested_usage, requested_values)
        key = (customer_id, resource_id)
        state = self._fresh(key)
        if state is not None and feature_id in state.credit_priced:
            return self._check_priced(state, customer_id, feature_id, resource_id, usage, values)
        if state is not None:
            return evaluate(state, customer_id, feature_id, resource_id, Source.CACHE, usage, values, time.time())
        state, source = self._read_through(key)
        if source is Source.SERVER:
            assert state is not None
            if feature_id in state.credit_priced:
                listed = self._as_listed(state, customer_id, feature_id, resource_id, usage, values)
                if listed is not None:
                    return listed
                return self._check_priced(state, customer_id, feature_id, resource_id, usage, values)
            return evaluate(state, customer_id, feature_id, resource_id, source, usage, values, time.time())
        return self._offline_one(state, customer_id, feature_id, resource_id, usage, values)

    def _check_priced(
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
                data = self._send(wire.feature_check_call(customer_id, feature_id, resource_id, usage, values))
            except EntitleConnectionError as exc:
                log.warning("entitle: server unreachable, answering from cache: %s", exc)
                self._went_offline()
            else:
                self._came_online()
                return server_result(data, customer_id, feature_id, resource_id, usage, values)
        return self._offline_one(state, customer_id, feature_id, resource_id, usage, values)

    def get_entitlements(self, customer_id: str, *, resource_id: str | None = None) -> list[EntitlementResult]:
        """Every feature the customer is entitled to (or, offline with nothing known, the fallbacks)."""
        key = (customer_id, resource_id)
        state = self._fresh(key)
        # A list with features priced in credits is the server's: their answers follow balances.
        if state is not None and not state.credit_priced:
            return self._all(state, Source.CACHE, customer_id, resource_id)
        state, source = self._read_through(key)
        return self._all(state, source, customer_id, resource_id)

    def _read_through(self, key: tuple[str, str | None]) -> tuple[Any, Source]:
        """Fetch the customer's list into the cache; offline: the last known state, if any."""
        last = self._store.load(key)
        if self._may_try_server():
            mark = self._store.before_fetch(key)
            try:
                data = self._send(wire.entitlements_call(*key))
            except EntitleConnectionError as exc:
                log.warning("entitle: server unreachable, answering from %s: %s", "cache" if last else "fallback", exc)
                self._went_offline()
            else:
                self._came_online()
                return self._store.store(key, data, mark), Source.SERVER
        return last, (Source.STALE_CACHE if last is not None else Source.FALLBACK)

    def refresh(self, customer_id: str, *, resource_id: str | None = None) -> None:
        """Re-read a customer's entitlements now (raises when the server is unreachable)."""
        key = (customer_id, resource_id)
        mark = self._store.before_fetch(key)
        self._store.store(key, self._send(wire.entitlements_call(*key), attempts=3), mark)

    # --- writes -----------------------------------------------------------------------------------

    def provision_customer(
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
        """Create a customer (and, with `subscription_params` such as `{"plan_id": ...}`, its first
        subscription in the same transaction). Returns the customer as the server sent it."""
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
        data: dict[str, Any] = self._send(call)
        self._after_provision(customer_id)
        return data

    def provision_subscription(
        self,
        customer_id: str,
        plan_id: str,
        *,
        billing_period: str | None = None,
        resource_id: str | None = None,
        addons: Iterable[Mapping[str, Any]] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Provision a subscription (`POST /api/v1/subscriptions`); returns the server's answer
        (`id`, `status`, `subscription`, `entitlements`)."""
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
        data: dict[str, Any] = self._send(call)
        self._after_provision(customer_id, resource_id)
        return data

    def report_usage(
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
        """Report usage now (retried with the same idempotency key on a transient failure). The
        cached `current_usage` takes the server's new value at once. Usage is recorded even past a
        hard limit (the check denies access there). Raises `EntitleError` for a report the server
        refuses (a value out of range, IDEMPOTENCY_KEY_REUSED...) or `EntitleConnectionError`."""
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
        usage = wire.reported_usage(self._send(call, attempts=3))
        self._after_report(customer_id, resource_id, feature_id, usage, backdated=created_at is not None)
        return usage

    def report_event(
        self,
        customer_id: str,
        event_name: str,
        *,
        dimensions: Mapping[str, Any] | None = None,
        resource_id: str | None = None,
        idempotency_key: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Queue a raw event; it is sent in the background in batches (size or time threshold,
        `flush()`, `close()`), retried with its idempotency key until acknowledged. An event the
        server refuses for good is dropped and reported (log, `on_events_dropped`); see docs/sdk.md."""
        event = wire.make_event(
            customer_id,
            event_name,
            dimensions=dimensions,
            resource_id=resource_id,
            idempotency_key=idempotency_key,
            timestamp=timestamp,
        )
        if self._batcher is None:
            with self._batcher_lock:
                if self._batcher is None:
                    self._batcher = ThreadBatcher(self._events, self._send_events, self._report_drop)
        self._events.put(event)

    def _send_events(self, events: list[Event]) -> None:
        self._send(wire.events_call(events), attempts=1)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Send every queued event now; True once all were acknowledged within `timeout`."""
        if self._batcher is None:
            return True
        return self._batcher.flush(timeout)

    @property
    def pending_events(self) -> int:
        return self._events.pending

    # --- credits ----------------------------------------------------------------------------------

    def get_credit_balance(
        self, customer_id: str, currency_id: str, *, resource_id: str | None = None
    ) -> CreditBalance:
        """The customer's balance in a custom currency: from the cache while it is current (the push
        stream's `credits.updated` keeps it so), else read from the server. Offline, the last known
        balance (`Source.STALE_CACHE`); with none, `EntitleConnectionError`."""
        key = (customer_id, currency_id, resource_id)
        state = self._fresh_credits(key)
        if state is not None:
            return wire.credit_balance(key, state, Source.CACHE)
        last = self._store.credits.load(key, self._store.trusted_since)
        error: EntitleConnectionError = EntitleConnectionError("offline: the server is not tried again yet")
        if self._may_try_server():
            generation = self._store.credits.moves()
            try:
                data = self._send(wire.credit_check_call(customer_id, currency_id, resource_id))
            except EntitleConnectionError as exc:
                error = exc
                self._went_offline()
            else:
                self._came_online()
                return wire.credit_balance(key, self._store.credits.store(key, data, generation), Source.SERVER)
        if last is not None:
            return wire.credit_balance(key, last, Source.STALE_CACHE)
        raise error

    def consume(
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
        data = self._send(call, attempts=3)
        return wire.credit_balance(key, self._store.credits.store(key, data["credit"]), Source.SERVER)

    def reserve(
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
        data = self._send(call, attempts=3)
        balance = wire.credit_balance(key, self._store.credits.store(key, data), Source.SERVER)
        return wire.credit_reservation(data, balance)

    def release(
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
        data = self._send(call, attempts=3)
        held = data["reservation"]
        state = self._store.credits.store(key, data["credit"], released=to_decimal(held["amount"]))
        return wire.credit_reservation({"isGranted": True}, wire.credit_balance(key, state, Source.SERVER), held)

    # --- paywall ----------------------------------------------------------------------------------

    def get_paywall(
        self,
        *,
        product_id: str | None = None,
        customer_id: str | None = None,
        resource_id: str | None = None,
        billing_country_code: str | None = None,
    ) -> dict[str, Any]:
        """What a pricing page needs (`GET /api/v1/paywall`): plans, add-ons, the customer's plan."""
        data: dict[str, Any] = self._send(
            wire.paywall_call(product_id, customer_id, resource_id, billing_country_code), attempts=3
        )
        return data

    # --- push -------------------------------------------------------------------------------------

    def _start_push(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main() -> None:
            async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self.timeout) as client:
                self._listener = PushListener(self._store, client)
                await self._listener.run()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._push_task = loop.create_task(main())
            started.set()
            try:
                loop.run_until_complete(self._push_task)
            except BaseException as exc:  # cancelled at close; anything else is logged
                if not isinstance(exc, asyncio.CancelledError):
                    log.warning("entitle: push stream stopped: %r", exc)
            finally:
                loop.close()

        self._push_loop = loop
        self._push_thread = threading.Thread(target=run, name="entitle-push", daemon=True)
        self._push_thread.start()
        started.wait(5)

    def wait_for_push(self, timeout: float = 10.0) -> bool:
        """Block until the push stream is connected (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._store.push_connected:
                return True
            if self._listener is not None and self._listener.unavailable:
                return False
            time.sleep(0.01)
        return self._store.push_connected

    @property
    def push_connected(self) -> bool:
        return self._store.push_connected

    def _stop_push(self) -> None:
        loop, task, thread = self._push_loop, self._push_task, self._push_thread
        if loop is None or thread is None:
            return
        if task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already stopped
                loop.call_soon_threadsafe(task.cancel)
        thread.join(5)
        self._store.push_connected = False

    # --- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Send every queued event (retrying until `close_timeout`), stop the push stream, close
        connections. Idempotent; also runs at interpreter exit and on `with` exit."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        with self._batcher_lock:
            if self._batcher is None:
                with self._events.cond:
                    self._events.stopping = True  # report_event after close raises
            elif not self._batcher.close(self.close_timeout):
                log.error("entitle: %d event(s) could not be delivered before close", self._events.pending)
        self._stop_push()
        self._http.close()

    def __enter__(self) -> Entitle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
