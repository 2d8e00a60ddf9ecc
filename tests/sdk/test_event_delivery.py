"""Issue 11, item 8: the SDK never blocks its event queue. A permanent refusal drops exactly the events
the server names (reported through a log line and `on_events_dropped`) and delivers the rest; server
errors and network failures are retried with backoff without holding back the events behind them."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.events.models import Event
from entitle.sdk import AsyncEntitle, Entitle, EntitleConnectionError, EntitleError
from tests.conftest import LiveServer
from tests.sdk.conftest import CountingTransport

YEAR_9999 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
EVENTS = "/api/v1/events"


class Dropped:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.errors: list[EntitleError] = []

    def __call__(self, events: list[dict[str, Any]], error: EntitleError) -> None:
        self.events += events
        self.errors.append(error)

    @property
    def keys(self) -> list[str]:
        return [e["idempotencyKey"] for e in self.events]


def _stored_keys(server: LiveServer) -> Counter[str]:
    with server.db.read() as s:
        return Counter(s.scalars(select(Event.idempotency_key)))


def test_a_year_9999_event_between_good_ones_is_dropped_and_every_good_one_arrives_once(
    seeded: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 3: the server answered 500, the SDK retried the batch forever, blocked every event queued
    behind it and lost all 11 at close()."""
    transport = CountingTransport()
    options: dict[str, Any] = {"event_batch_size": 4, "event_flush_interval": 3600, "close_timeout": 5}
    client = Entitle(seeded.key(), seeded.base_url, push=False, transport=transport, **options)
    good = [f"good-{i}" for i in range(10)]
    for key in good[:5]:
        client.report_event("c1", "api_call", idempotency_key=key)
    client.report_event("c1", "api_call", idempotency_key="far-future", timestamp=YEAR_9999)
    client.report_event("c1", "api_call", idempotency_key="nul-character", dimensions={"x": "a\x00b"})
    for key in good[5:]:
        client.report_event("c1", "api_call", idempotency_key=key)
    with caplog.at_level(logging.ERROR, logger="entitle.sdk"):
        client.close()
    assert _stored_keys(seeded) == Counter(good)
    assert "2 event(s) dropped" not in caplog.text  # each refusal is reported as it comes
    assert "1 event(s) dropped (nul-character)" in caplog.text
    assert "1 event(s) dropped (far-future)" in caplog.text
    assert client.pending_events == 0
    # Three batches of four; the one holding both refused events was refused twice (request validation
    # names the NUL character, then ingestion the year 9999), each time resending the rest at once.
    assert transport.paths[EVENTS] == 3 + 2
    with Entitle(seeded.key(), seeded.base_url, push=False) as fresh:
        assert fresh.get_entitlement("c1", "api-events").current_usage == 10


def test_the_async_client_drops_only_what_the_server_names(seeded: LiveServer) -> None:
    dropped = Dropped()

    async def scenario() -> None:
        client = AsyncEntitle(
            seeded.key(), seeded.base_url, push=False, event_batch_size=100, on_events_dropped=dropped
        )
        for i in range(5):
            await client.report_event("c1", "api_call", idempotency_key=f"a-{i}")
        await client.report_event("c1", "api_call", idempotency_key="far-future", timestamp=YEAR_9999)
        for i in range(5, 10):
            await client.report_event("c1", "api_call", idempotency_key=f"a-{i}")
        await client.close()

    asyncio.run(scenario())
    assert _stored_keys(seeded) == Counter(f"a-{i}" for i in range(10))
    assert dropped.keys == ["far-future"]


class FlakyServer:
    """An events endpoint that fails as told: `poison` keys always 500 (a server bug on one event), the
    first `unreachable` requests fail to connect, a `refuse_all` status refuses any batch naming nothing."""

    def __init__(self, unreachable: int = 0, refuse_all: int | None = None) -> None:
        self.delivered: Counter[str] = Counter()
        self.unreachable = unreachable
        self.refuse_all = refuse_all
        self.posts = 0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        keys = [e["idempotencyKey"] for e in json.loads(request.content)["events"]]
        with self._lock:
            self.posts += 1
            if self.unreachable:
                self.unreachable -= 1
                raise httpx.ConnectError("refused", request=request)
            if self.refuse_all is not None:
                return httpx.Response(self.refuse_all, json={"error": {"code": "UNAUTHENTICATED", "message": "no"}})
            if any(k.startswith("poison") for k in keys):
                return httpx.Response(500, json={"error": {"code": "INTERNAL", "message": "internal error"}})
            self.delivered.update(keys)
            return httpx.Response(200, json={"data": {"new": len(keys), "duplicates": 0}})


def _client(server: FlakyServer, dropped: Dropped, **options: Any) -> Entitle:
    return Entitle(
        "key",
        "http://entitle.test",
        push=False,
        transport=httpx.MockTransport(server),
        on_events_dropped=dropped,
        **options,
    )


def test_an_event_the_server_keeps_failing_on_holds_back_nothing() -> None:
    server, dropped = FlakyServer(), Dropped()
    client = _client(server, dropped, event_batch_size=4, event_flush_interval=3600, close_timeout=1.0)
    good = [f"g{i}" for i in range(11)]
    for key in good[:2]:
        client.report_event("c", "e", idempotency_key=key)
    client.report_event("c", "e", idempotency_key="poison")
    for key in good[2:]:
        client.report_event("c", "e", idempotency_key=key)
    deadline = time.monotonic() + 60
    while server.delivered != Counter(good) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Nothing waits behind the event the server fails on, not even its batch-mates; it is still retried.
    assert server.delivered == Counter(good)
    assert client.pending_events == 1 and dropped.events == []
    client.close()
    assert dropped.keys == ["poison"]
    assert isinstance(dropped.errors[0], EntitleConnectionError) and client.pending_events == 0


def test_network_failures_are_retried_until_delivered_once() -> None:
    server, dropped = FlakyServer(unreachable=3), Dropped()
    client = _client(server, dropped, event_batch_size=5, event_flush_interval=3600)
    for i in range(12):
        client.report_event("c", "e", idempotency_key=f"k{i}")
    client.close()
    assert server.delivered == Counter(f"k{i}" for i in range(12))
    assert dropped.events == [] and server.posts == 3 + 3


def test_a_refusal_naming_no_event_drops_its_batch_and_reports_it() -> None:
    server, dropped = FlakyServer(refuse_all=401), Dropped()
    client = _client(server, dropped, event_batch_size=3, event_flush_interval=3600)
    for i in range(4):
        client.report_event("c", "e", idempotency_key=f"k{i}")
    client.close()
    assert dropped.keys == ["k0", "k1", "k2", "k3"] and server.posts == 2
    assert {e.status for e in dropped.errors} == {401}


def test_an_event_json_cannot_carry_is_refused_when_reported() -> None:
    with Entitle("key", "http://entitle.test", push=False) as client, pytest.raises(ValueError, match="JSON"):
        client.report_event("c", "e", dimensions={"x": float("inf")})


def test_a_failing_callback_does_not_stop_delivery(seeded: LiveServer) -> None:
    def broken(events: list[dict[str, Any]], error: EntitleError) -> None:
        raise RuntimeError("the application's bug")

    client = Entitle(seeded.key(), seeded.base_url, push=False, event_batch_size=10, on_events_dropped=broken)
    client.report_event("c1", "api_call", idempotency_key="far-future", timestamp=YEAR_9999)
    client.report_event("c1", "api_call", idempotency_key="fine")
    client.close()
    assert _stored_keys(seeded) == Counter(["fine"])
