"""AsyncEntitle on the main paths: cache hits, usage, offline answers, event batching."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import func, select

from entitle.events.models import Event
from entitle.sdk import AsyncEntitle, Source
from tests.conftest import LiveServer
from tests.sdk.conftest import CALLS_LIMIT, AsyncCountingTransport, closed_port_url

LIST = "/api/v1/customers/c1/entitlements"


def test_async_reads_are_local_after_one_request(seeded: LiveServer) -> None:
    async def scenario() -> None:
        transport = AsyncCountingTransport()
        async with AsyncEntitle(seeded.key(), seeded.base_url, push=False, transport=transport) as client:
            assert (await client.get_entitlement("c1", "flag")).source is Source.SERVER
            results = await asyncio.gather(
                *(client.get_entitlement("c1", "seats", requested_usage=n % 7) for n in range(200))
            )
            assert {r.source for r in results} == {Source.CACHE}
            assert [r.is_granted for r in results[:7]] == [True] * 6 + [False]
            assert transport.paths == {LIST: 1}
            entitlements = await client.get_entitlements("c1")
            assert [e.feature_id for e in entitlements] == ["api-events", "calls", "flag", "regions", "seats"]
            assert transport.paths == {LIST: 1}

    asyncio.run(scenario())


def test_async_usage_updates_the_cache_past_the_limit(seeded: LiveServer) -> None:
    async def scenario() -> None:
        transport = AsyncCountingTransport()
        async with AsyncEntitle(seeded.key(), seeded.base_url, push=False, transport=transport) as client:
            await client.get_entitlement("c1", "calls")
            reported = await client.report_usage("c1", "calls", CALLS_LIMIT - 1)
            assert reported.current_usage == CALLS_LIMIT - 1
            cached = await client.get_entitlement("c1", "calls", requested_usage=2)
            assert (cached.source, cached.current_usage, cached.is_granted) == (
                Source.CACHE,
                Decimal(CALLS_LIMIT - 1),
                False,
            )
            await client.report_usage("c1", "calls", 1)
            past = await client.report_usage("c1", "calls", 1)  # recorded past the limit, not refused
            assert past.current_usage == CALLS_LIMIT + 1
            denied = await client.get_entitlement("c1", "calls")
            assert (denied.source, denied.is_granted, denied.current_usage) == (Source.CACHE, False, CALLS_LIMIT + 1)
            assert transport.paths[LIST] == 1

    asyncio.run(scenario())


def test_async_offline_answers_say_where_they_come_from() -> None:
    async def scenario() -> None:
        async with AsyncEntitle("k", closed_port_url(), push=False, fallback_entitlements={"flag": True}) as client:
            flag = await client.get_entitlement("c1", "flag")
            other = await client.get_entitlement("c1", "other")
            assert (flag.source, flag.is_granted) == (Source.FALLBACK, True)
            assert (other.source, other.is_granted, other.access_denied_reason) == (Source.FALLBACK, False, "Unknown")

    asyncio.run(scenario())


def test_async_events_are_all_delivered_once_on_close(seeded: LiveServer) -> None:
    n = 777

    async def scenario() -> None:
        client = AsyncEntitle(
            seeded.key(), seeded.base_url, push=False, event_batch_size=100, event_flush_interval=3600
        )
        for i in range(n):
            await client.report_event("c1", "api_call", dimensions={"i": i})
        await client.close()
        assert client.pending_events == 0

    asyncio.run(scenario())
    with seeded.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == n
        assert s.scalar(select(func.count(func.distinct(Event.idempotency_key)))) == n


def test_async_flush_sends_without_closing(seeded: LiveServer) -> None:
    async def scenario() -> None:
        async with AsyncEntitle(
            seeded.key(), seeded.base_url, push=False, event_batch_size=1000, event_flush_interval=3600
        ) as client:
            for i in range(5):
                await client.report_event("c1", "api_call", idempotency_key=f"f{i}")
            assert await client.flush(timeout=10) is True
            with seeded.db.read() as s:
                assert s.scalar(select(func.count()).select_from(Event)) == 5

    asyncio.run(scenario())
