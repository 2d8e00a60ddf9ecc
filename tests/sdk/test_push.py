"""The cache follows the server's push stream: changes made elsewhere reach cached answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

import pytest

from entitle.sdk import AsyncEntitle, Entitle, Source
from tests.conftest import LiveServer
from tests.sdk.conftest import CALLS_LIMIT, CountingTransport

LIST = "/api/v1/customers/c1/entitlements"
NO_STREAM = "the server offers no push stream (GET /api/v1/stream answered 404): the server side has not landed"


T = TypeVar("T")


def require_push(client: Entitle) -> None:
    connected = client.wait_for_push(10)
    if not connected and client._listener is not None and client._listener.unavailable:
        pytest.xfail(NO_STREAM)
    assert connected, "the push stream did not connect"


def eventually(read: Callable[[], T], until: Callable[[T], bool]) -> T:
    deadline = time.monotonic() + 20  # a wait for the push, not a timing: a loaded CI machine is slow
    while True:
        result = read()
        if until(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


def test_a_change_made_through_the_api_reaches_the_cached_answer(seeded: LiveServer) -> None:
    transport = CountingTransport()
    with Entitle(seeded.key(), seeded.base_url, transport=transport) as client:
        require_push(client)
        before = client.get_entitlement("c1", "calls", requested_usage=CALLS_LIMIT + 1)
        assert (before.is_granted, before.usage_limit) == (False, CALLS_LIMIT)
        assert client.get_entitlement("c1", "calls").source is Source.CACHE
        with seeded.http() as api:  # someone else upgrades the customer
            api.post("/api/v1/subscriptions", json={"customerId": "c1", "planId": "pro"}).raise_for_status()
        after = eventually(
            lambda: client.get_entitlement("c1", "calls", requested_usage=CALLS_LIMIT + 1),
            lambda r: r.is_granted,
        )
        assert (after.is_granted, after.has_unlimited_usage) == (True, True)
        # The push thread re-read the customer: later reads are local again.
        settled = eventually(lambda: client.get_entitlement("c1", "calls"), lambda r: r.source is Source.CACHE)
        assert settled.source is Source.CACHE
        assert client.get_entitlement("c1", "seats").is_granted is False  # pro grants no seats
        assert transport.paths[LIST] <= 2


def test_usage_reported_elsewhere_updates_the_cached_counter(seeded: LiveServer) -> None:
    transport = CountingTransport()
    with Entitle(seeded.key(), seeded.base_url, transport=transport) as client:
        require_push(client)
        assert client.get_entitlement("c1", "calls").current_usage == 0
        with seeded.http() as api:
            usage = {"customerId": "c1", "featureId": "calls", "value": 7, "idempotencyKey": "elsewhere"}
            api.post("/api/v2/usage", json={"usages": [usage]}).raise_for_status()
        after = eventually(lambda: client.get_entitlement("c1", "calls"), lambda r: r.current_usage == 7)
        assert (after.current_usage, after.source) == (Decimal(7), Source.CACHE)
        assert client.get_entitlement("c1", "calls", requested_usage=4).is_granted is False
        assert transport.paths[LIST] == 1


def test_async_client_follows_the_push_stream(seeded: LiveServer) -> None:
    async def scenario() -> None:
        async with AsyncEntitle(seeded.key(), seeded.base_url) as client:
            if not await client.wait_for_push(10) and client._listener and client._listener.unavailable:
                pytest.xfail(NO_STREAM)
            assert client.push_connected
            assert (await client.get_entitlement("c1", "flag")).source is Source.SERVER
            with seeded.http() as api:
                body = {"customerId": "c1", "planId": "pro"}
                await asyncio.to_thread(lambda: api.post("/api/v1/subscriptions", json=body).raise_for_status())
            deadline = time.monotonic() + 20  # a wait for the push, not a timing: a loaded CI machine is slow
            while True:
                result = await client.get_entitlement("c1", "calls", requested_usage=CALLS_LIMIT + 1)
                if result.is_granted or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            assert (result.is_granted, result.has_unlimited_usage) == (True, True)

    asyncio.run(scenario())


def test_a_reset_drops_the_cache(seeded: LiveServer) -> None:
    """A stale replay point (`Last-Event-ID` older than the retained window, or unknown) makes the
    server send `reset`; the client then drops what it cached."""
    from entitle.sdk.cache import MemoryCache
    from entitle.sdk.store import namespace

    backend = MemoryCache()
    key = seeded.key()
    # A replay point far beyond anything the server holds: the server answers with `reset`.
    backend.set(namespace(key, seeded.base_url) + "__last_event_id__", str(10**12))
    with Entitle(key, seeded.base_url, cache_backend=backend, push=False) as warm:
        warm.get_entitlement("c1", "flag")
    assert backend.get(namespace(key, seeded.base_url) + "c1\x1f") is not None
    with Entitle(key, seeded.base_url, cache_backend=backend) as client:
        require_push(client)
        deadline = time.monotonic() + 20  # a wait for the push, not a timing: a loaded CI machine is slow
        while backend.get(namespace(key, seeded.base_url) + "c1\x1f") is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backend.get(namespace(key, seeded.base_url) + "c1\x1f") is None
        assert client.get_entitlement("c1", "flag").source is Source.SERVER
