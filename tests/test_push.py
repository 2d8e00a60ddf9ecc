"""The real-time stream (GET /api/v1/stream): events after changes, replay, reset, and fan-out
across two `entitle serve` processes on one database."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stigg

from entitle.environments.models import KeyKind
from entitle.push import service as push
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.server import serve_process, start_serve
from tests.support.sse import WAIT, SSEClient


def build(client: stigg.Stigg) -> None:
    client.v1.features.create_feature(id="calls", display_name="Calls", feature_type="NUMBER", meter_type="INCREMENTAL")
    client.v1.features.create_feature(
        id="tokens",
        display_name="Tokens",
        feature_type="NUMBER",
        meter_type="INCREMENTAL",
        meter={"aggregation": {"function": "SUM", "field": "tokens"}, "filters": []},
    )
    client.v1.products.create_product(id="p", display_name="P")
    client.v1.plans.create(id="basic", display_name="Basic", product_id="p", pricing_type="FREE")
    client.v1.plans.entitlements.create(
        "basic",
        entitlements=[
            {"type": "FEATURE", "id": "calls", "usage_limit": 10},
            {"type": "FEATURE", "id": "tokens", "usage_limit": 10**6},
        ],
    )
    client.v1.plans.publish("basic", migration_type="NEW_CUSTOMERS")


def subscribe(client: stigg.Stigg, customer: str) -> None:
    client.v1.customers.provision(id=customer)
    client.v1.subscriptions.provision(customer_id=customer, plan_id="basic")


def report(api: httpx.Client, customer: str, value: int, feature: str = "calls") -> httpx.Response:
    return api.post("/api/v2/usage", json={"usages": [{"customerId": customer, "featureId": feature, "value": value}]})


def test_stream_sends_entitlement_and_usage_changes(server: LiveServer, client: stigg.Stigg, api: httpx.Client) -> None:
    build(client)
    with SSEClient(server.base_url, server.server_key) as sse:
        assert sse.status == 200
        assert sse.content_type.startswith("text/event-stream")
        subscribe(client, "c-1")
        changed = sse.next()
        assert changed.event == "entitlements.updated"
        assert changed.data["customerId"] == "c-1"
        assert changed.data["resourceId"] is None
        assert changed.data["timestamp"].endswith("Z")
        assert sse.retry == 1000

        assert report(api, "c-1", 3).status_code == 200
        assert report(api, "c-1", 4).status_code == 200
        first, second = sse.next(), sse.next()
        assert (first.event, first.data["featureId"], first.data["currentUsage"]) == ("usage.updated", "calls", 3)
        assert (second.event, second.data["currentUsage"]) == ("usage.updated", 7)
        assert changed.id is not None and first.id is not None and second.id is not None
        assert changed.id < first.id < second.id

        # Raw events measured by a meter count too.
        body = {
            "events": [
                {"customerId": "c-1", "eventName": "completion", "idempotencyKey": "e1", "dimensions": {"tokens": 40}}
            ]
        }
        assert api.post("/api/v1/events", json=body).status_code == 200
        measured = sse.next()
        assert (measured.event, measured.data["featureId"], measured.data["currentUsage"]) == (
            "usage.updated",
            "tokens",
            40,
        )

        # Usage past a hard limit is recorded (the check denies access), and streamed like any other.
        assert report(api, "c-1", 3).status_code == 200  # 10 of 10
        assert sse.next().data["currentUsage"] == 10
        assert report(api, "c-1", 1).status_code == 200
        assert sse.next().data["currentUsage"] == 11
        client.v1.customers.archive("c-1")
        assert sse.next().event == "entitlements.updated"  # the archive, not a usage event


def test_one_event_per_feature_per_transaction(server: LiveServer, client: stigg.Stigg, api: httpx.Client) -> None:
    build(client)
    subscribe(client, "c-1")
    with SSEClient(server.base_url, server.server_key) as sse:
        batch = [{"customerId": "c-1", "featureId": "calls", "value": v} for v in (1, 2, 3)]
        assert api.post("/api/v2/usage", json={"usages": batch}).status_code == 200
        assert report(api, "c-1", 1).status_code == 200
        assert [(e.event, e.data["currentUsage"]) for e in (sse.next(), sse.next())] == [
            ("usage.updated", 6),
            ("usage.updated", 7),
        ]


def test_customer_filter(server: LiveServer, client: stigg.Stigg, api: httpx.Client) -> None:
    build(client)
    with SSEClient(server.base_url, server.server_key, query="?customerId=c-2,c-3") as sse:
        subscribe(client, "c-1")
        subscribe(client, "c-2")
        assert report(api, "c-1", 1).status_code == 200
        assert report(api, "c-2", 2).status_code == 200
        seen = [sse.next(), sse.next()]
        assert [(e.event, e.data["customerId"]) for e in seen] == [
            ("entitlements.updated", "c-2"),
            ("usage.updated", "c-2"),
        ]


def test_other_environments_events_are_not_sent(server: LiveServer, client: stigg.Stigg) -> None:
    build(client)
    other = server.stigg(server.key("production"))
    build(other)
    with SSEClient(server.base_url, server.server_key) as sse:
        subscribe(other, "prod-customer")
        subscribe(client, "dev-customer")
        assert sse.next().data["customerId"] == "dev-customer"


def test_replay_with_last_event_id_gives_exactly_the_missed_events(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client
) -> None:
    build(client)
    with SSEClient(server.base_url, server.server_key) as sse:
        subscribe(client, "c-1")
        seen = sse.next()
    assert seen.id is not None
    # Missed while disconnected:
    for value in (1, 2, 3):
        assert report(api, "c-1", value).status_code == 200
    subscribe(client, "c-2")

    with SSEClient(server.base_url, server.server_key, last_event_id=str(seen.id)) as sse:
        missed = [sse.next() for _ in range(4)]
        assert [(e.event, e.data["customerId"], e.data.get("currentUsage")) for e in missed] == [
            ("usage.updated", "c-1", 1),
            ("usage.updated", "c-1", 3),
            ("usage.updated", "c-1", 6),
            ("entitlements.updated", "c-2", None),
        ]
        ids = [e.id for e in missed]
        assert ids == sorted(ids) and len(set(ids)) == 4 and ids[0] > seen.id  # type: ignore[operator]
        # Then live, and nothing replayed twice: the next event is the new change.
        assert report(api, "c-2", 5).status_code == 200
        live = sse.next()
        assert (live.event, live.data["customerId"], live.data["currentUsage"]) == ("usage.updated", "c-2", 5)

    # The same replay as a query parameter, from the last event seen: only what came after it.
    with SSEClient(server.base_url, server.server_key, query=f"?lastEventId={missed[-1].id}") as sse:
        assert report(api, "c-1", 1).status_code == 200
        replayed = sse.next()
        assert (replayed.data["customerId"], replayed.data["currentUsage"]) == ("c-2", 5)
        assert sse.next().data["currentUsage"] == 7


def test_reset_when_last_event_id_is_too_old_or_unknown(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, test_clock: TestClock
) -> None:
    build(client)
    subscribe(client, "c-1")
    assert report(api, "c-1", 1).status_code == 200
    with SSEClient(server.base_url, server.server_key, last_event_id="0") as sse:
        first = sse.next()  # the log still holds everything: a plain replay
        assert first.event == "entitlements.updated"
        usage = sse.next()
    assert first.id is not None and usage.id is not None
    test_clock.advance(timedelta(hours=25))
    assert report(api, "c-1", 1).status_code == 200
    assert push.prune(server.db) == 2  # both day-old events are gone; the new one is kept

    with SSEClient(server.base_url, server.server_key, last_event_id=str(first.id)) as sse:
        reset = sse.next()
        assert (reset.event, reset.data) == ("reset", {"reason": "LAST_EVENT_ID_TOO_OLD"})
        assert reset.id is not None and reset.id > usage.id
        assert report(api, "c-1", 1).status_code == 200  # then live from the reset's id
        after = sse.next()
        assert (after.event, after.data["currentUsage"]) == ("usage.updated", 3)

    # The last event before the pruned gap: nothing was missed, so no reset.
    with SSEClient(server.base_url, server.server_key, last_event_id=str(usage.id)) as sse:
        assert [sse.next().data["currentUsage"], sse.next().data["currentUsage"]] == [2, 3]

    for unknown in ("999999999", "not-a-number", "-3"):
        with SSEClient(server.base_url, server.server_key, last_event_id=unknown) as sse:
            assert sse.next().event == "reset", unknown


def test_a_fresh_stream_starts_with_its_replay_point(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client
) -> None:
    """A stream opened without Last-Event-ID sent no id until its first event: a client dropped before
    one (a quiet environment, a server restart) reconnected with no replay point and had to distrust
    everything it cached. It now starts with a message of only an id, from which a replay misses nothing."""
    build(client)
    subscribe(client, "c-1")
    newest = push.newest_id(server.db)
    raw = httpx.Client(base_url=server.base_url, headers={"X-API-KEY": server.server_key}, timeout=WAIT)
    with raw, raw.stream("GET", "/api/v1/stream") as response:
        lines = response.iter_lines()
        assert [next(lines) for _ in range(4)] == ["retry: 1000", "", f"id: {newest}", ""]
    assert report(api, "c-1", 1).status_code == 200  # while it was away
    with SSEClient(server.base_url, server.server_key, last_event_id=str(newest)) as sse:
        event = sse.next()
        assert (event.event, event.data["currentUsage"]) == ("usage.updated", 1)


def test_the_stream_needs_a_server_key(server: LiveServer) -> None:
    with SSEClient(server.base_url, server.key(kind=KeyKind.CLIENT)) as sse:
        assert sse.status == 403
        assert sse.body["error"]["code"] == "PERMISSION_DENIED"
    with SSEClient(server.base_url, "nope") as sse:
        assert sse.status == 401


def test_a_revoked_keys_open_stream_ends_and_carries_nothing_more(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client
) -> None:
    """Revoking a (leaked) key refuses its next request; its stream, one request that never ends, used to
    go on handing its holder every customer's usage and balances after the revocation."""
    build(client)
    subscribe(client, "c-1")
    leaked = server.key()
    with SSEClient(server.base_url, leaked) as sse:
        assert report(api, "c-1", 1).status_code == 200
        assert sse.next_of("usage.updated").data["currentUsage"] == 1
        key_id = next(k["id"] for k in api.get("/api/v1/keys").json()["data"] if leaked.startswith(k["prefix"]))
        assert api.post(f"/api/v1/keys/{key_id}/revoke").status_code == 200
        assert report(api, "c-1", 1).status_code == 200
        while (event := sse.events.get(timeout=WAIT)) is not None:
            assert event.event != "usage.updated", event
    with SSEClient(server.base_url, leaked) as sse:
        assert sse.status == 401


def test_a_revoked_keys_idle_stream_ends_at_its_keepalive(server: LiveServer) -> None:
    hub = server_app_hub(server)
    hub.keepalive_interval = 0.2
    leaked = server.key()
    with SSEClient(server.base_url, leaked) as sse:
        deadline = time.monotonic() + WAIT
        while ": keepalive" not in sse.comments and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ": keepalive" in sse.comments
        push_revoke(server, leaked)
        assert sse.ended()


def push_revoke(server: LiveServer, raw_key: str) -> None:
    from entitle.environments.service import revoke_raw_key

    revoke_raw_key(server.db, raw_key)


def test_keepalive_comments(server: LiveServer) -> None:
    hub = server_app_hub(server)
    hub.keepalive_interval = 0.2
    with SSEClient(server.base_url, server.server_key) as sse:
        deadline = time.monotonic() + WAIT
        while ": keepalive" not in sse.comments and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ": keepalive" in sse.comments


def server_app_hub(server: LiveServer) -> Any:
    """The push hub of the in-process test server (reached through the running app)."""
    import gc

    from entitle.push.hub import Hub

    hubs = [o for o in gc.get_objects() if isinstance(o, Hub) and o.db is server.db]
    assert len(hubs) == 1
    return hubs[0]


# -- two processes ---------------------------------------------------------------------------


@pytest.fixture
def two_servers(server: LiveServer, database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two `entitle serve` processes on the test's database (besides the in-process server)."""
    with serve_process(database_url, tmp_path / "a") as base_a, serve_process(database_url, tmp_path / "b") as base_b:
        yield base_a, base_b


def test_a_change_through_one_process_reaches_a_stream_of_another(
    server: LiveServer, client: stigg.Stigg, two_servers: tuple[str, str], database_url: str
) -> None:
    base_a, base_b = two_servers
    build(client)
    subscribe(client, "c-1")
    latencies: list[float] = []
    with (
        httpx.Client(base_url=base_a, headers={"X-API-KEY": server.server_key}, timeout=30) as via_a,
        SSEClient(base_b, server.server_key) as sse,
    ):
        for n in range(1, 6):
            response = report(via_a, "c-1", 1)
            committed = time.monotonic()  # the response is sent after the commit
            assert response.status_code == 200
            event = sse.next()
            latencies.append(time.monotonic() - committed)
            assert (event.event, event.data["currentUsage"]) == ("usage.updated", n)
        stigg_a = server.stigg()
        stigg_a.base_url = base_a
        stigg_a.v1.customers.provision(id="c-2")
        stigg_a.v1.subscriptions.provision(customer_id="c-2", plan_id="basic")
        started = time.monotonic()
        event = sse.next()
        latencies.append(time.monotonic() - started)
        assert (event.event, event.data["customerId"]) == ("entitlements.updated", "c-2")
    engine = database_url.split(":", 1)[0]
    print(
        f"\n[{engine}] commit in process A -> SSE event in process B: "
        + ", ".join(f"{x * 1000:.0f} ms" for x in latencies)
    )


def test_serve_stops_promptly_with_open_streams(server: LiveServer, database_url: str, tmp_path: Path) -> None:
    proc, base = start_serve(database_url, tmp_path / "s")
    try:
        with SSEClient(base, server.server_key) as sse:
            proc.send_signal(signal.SIGTERM)
            assert sse.ended(), "the server did not end the stream on SIGTERM"
            assert proc.wait(timeout=WAIT) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
