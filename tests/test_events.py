from __future__ import annotations

import threading

import httpx
import stigg
from sqlalchemy import func, select

from entitle.events.models import Event
from tests.conftest import LiveServer


def _count(server: LiveServer) -> int:
    with server.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Event)) or 0)


def test_a_batch_of_1000_events_is_stored_once_even_when_resent(server: LiveServer, client: stigg.Stigg) -> None:
    events = [
        {
            "customer_id": f"cust-{i % 10}",
            "event_name": "api_call",
            "idempotency_key": f"evt-{i}",
            "dimensions": {"tokens": i, "model": "small", "cached": i % 2 == 0},
        }
        for i in range(1000)
    ]
    assert client.v1.events.report(events=events).data is not None
    assert _count(server) == 1000
    client.v1.events.report(events=events[:500])  # a client retry after a lost response
    assert _count(server) == 1000
    with server.db.read() as s:
        stored = s.scalars(select(Event).where(Event.idempotency_key == "evt-7")).one()
        assert stored.dimensions == {"tokens": 7, "model": "small", "cached": False}
        assert stored.customer_ref == "cust-7"


def test_parallel_resends_never_double_count(server: LiveServer) -> None:
    batch = {"events": [{"customerId": "c", "eventName": "e", "idempotencyKey": f"k{i}"} for i in range(300)]}
    statuses: list[int] = []

    def send() -> None:
        with server.http() as api:
            statuses.append(api.post("/api/v1/events", json=batch).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4
    assert _count(server) == 300


def test_bad_batches_are_refused_whole(server: LiveServer, api: httpx.Client) -> None:
    good = {"customerId": "c", "eventName": "e", "idempotencyKey": "k1"}
    for bad in (
        {"customerId": "c", "eventName": "e"},
        {**good, "idempotencyKey": "k2", "dimensions": {"x": {"nested": 1}}},
        {**good, "idempotencyKey": "k3", "timestamp": "yesterday"},
    ):
        response = api.post("/api/v1/events", json={"events": [good, bad]})
        assert response.status_code == 400, bad
        # The offending event is named by its index: a client drops it and resends the rest.
        assert {d["field"].split(".")[:2] == ["events", "1"] for d in response.json()["error"]["details"]} == {True}
    assert api.post("/api/v1/events", json={"events": []}).status_code == 400
    assert _count(server) == 0
