"""The cache follows the server's push stream: changes made elsewhere reach cached answers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest

from entitle import domain_events
from entitle.customers.events import EntitlementsChanged
from entitle.domain_events import DomainEvent
from entitle.sdk import AsyncEntitle, Entitle, Source
from entitle.sdk.cache import MemoryCache
from entitle.sdk.store import EntitlementStore
from tests.conftest import LiveServer
from tests.sdk.conftest import CALLS_LIMIT, CountingTransport
from tests.support.sse import SSEClient

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


class HeldAfterCommit:
    """Holds the committing thread of a change of one customer between its commit and this process's
    after-commit work (`domain_events` listeners: the snapshot's drop), as a descheduled thread would."""

    def __init__(self, customer: str) -> None:
        self.customer = customer
        self.holding = threading.Event()
        self.release = threading.Event()

    def announce(self, real: Callable[[list[DomainEvent]], None]) -> Callable[[list[DomainEvent]], None]:
        def held(events: list[DomainEvent]) -> None:
            if any(isinstance(e, EntitlementsChanged) and e.customer_ref == self.customer for e in events):
                self.holding.set()
                self.release.wait(30)
            real(events)

        return held


@contextlib.contextmanager
def after_commit_held(monkeypatch: pytest.MonkeyPatch, customer: str) -> Iterator[HeldAfterCommit]:
    gate = HeldAfterCommit(customer)
    monkeypatch.setattr(domain_events, "_announce", gate.announce(domain_events._announce))
    try:
        yield gate
    finally:
        gate.release.set()


@contextlib.contextmanager
def upgrading(server: LiveServer, customer: str, gate: HeldAfterCommit) -> Iterator[None]:
    """`POST /api/v1/subscriptions` to `pro` in a thread (its request held by `gate`), released and joined
    on exit."""
    failures: list[BaseException] = []

    def post() -> None:
        try:
            with server.http() as api:
                body = {"customerId": customer, "planId": "pro"}
                api.post("/api/v1/subscriptions", json=body).raise_for_status()
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    try:
        yield
    finally:
        gate.release.set()
        thread.join(timeout=40)
    assert not failures, failures
    assert not thread.is_alive()


def granted_beyond_the_limit(api: httpx.Client) -> tuple[bool, bool]:
    params = {"featureId": "calls", "requestedUsage": CALLS_LIMIT + 1}
    response = api.get("/api/v1/customers/c1/entitlements/check", params=params)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return data["isGranted"], bool(data["hasUnlimitedUsage"])


def test_a_streamed_change_is_answered_by_the_process_that_streamed_it(
    seeded: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream of the process that committed a change may carry it before that process's own
    after-commit work ran (the committing thread descheduled under load): the hub reads the row as soon
    as it is committed. A client re-reading on the event must get the new state, never the one its
    memory held before, which it would then keep as fresh (nothing is announced again)."""
    with seeded.http() as api:
        assert granted_beyond_the_limit(api) == (False, False)  # held in the server's memory now
        with (
            SSEClient(seeded.base_url, seeded.server_key) as sse,
            after_commit_held(monkeypatch, "c1") as gate,
            upgrading(seeded, "c1", gate),
        ):
            changed = sse.next_of("entitlements.updated", timeout=20)
            assert changed.data["customerId"] == "c1"
            # The committing request is still before its after-commit work: held there, or (the hub read the
            # committed row first) not even there yet; the re-read below is made while it is held.
            assert gate.holding.wait(20), "the upgrade's after-commit work was never reached"
            answer = granted_beyond_the_limit(api)
            gate.release.set()
        assert answer == (True, True)
        assert granted_beyond_the_limit(api) == (True, True)


def test_a_pushed_change_reaches_the_cache_while_its_commit_is_still_being_announced(
    seeded: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's re-read on `entitlements.updated` lands while the server that committed the change has
    not yet run its after-commit work: the cached answer is the new one, not the one from before."""
    transport = CountingTransport()
    with Entitle(seeded.key(), seeded.base_url, transport=transport) as client:
        require_push(client)
        before = client.get_entitlement("c1", "calls", requested_usage=CALLS_LIMIT + 1)
        assert (before.is_granted, before.usage_limit) == (False, CALLS_LIMIT)
        with after_commit_held(monkeypatch, "c1") as gate, upgrading(seeded, "c1", gate):
            assert gate.holding.wait(20), "the upgrade did not commit"
            # The push thread hears the change (the key's generation moves), re-reads c1 on its own
            # connection and keeps the answer as valid, all while the server is still held.
            store, key = client._store, ("c1", None)
            reread = eventually(
                lambda: (store._changes.at(key), store.hot.get(key)),
                lambda seen: seen[0] >= 1 and seen[1] is not None and seen[1].valid,
            )
            assert reread[0] >= 1, "the push stream did not carry the change"
            assert reread[1] is not None and reread[1].valid, "the push thread did not re-read the customer"
            answer = client.get_entitlement("c1", "calls", requested_usage=CALLS_LIMIT + 1)
            gate.release.set()
        assert (answer.is_granted, answer.has_unlimited_usage, answer.source) == (True, True, Source.CACHE)
        after = client.get_entitlement("c1", "calls", requested_usage=CALLS_LIMIT + 1)
        assert (after.is_granted, after.has_unlimited_usage) == (True, True)


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


def _metered(current: int) -> dict[str, Any]:
    calls = {"feature": {"id": "calls", "featureType": "NUMBER"}, "isGranted": True, "usageLimit": 10}
    return {"entitlements": [{**calls, "currentUsage": current}]}


def test_usage_pushed_while_the_list_was_in_flight_is_not_overwritten_by_it() -> None:
    """A list read by the server before a usage change, answered after the change was pushed, must not
    put the older counter back as fresh: no later event would correct it."""
    store = EntitlementStore(MemoryCache(), "t:", ttl=30.0)
    key = ("c1", None)
    store.store(key, _metered(0), store.before_fetch(key))
    mark = store.before_fetch(key)
    store.set_usage(key, "calls", Decimal(7))  # pushed while the list was in flight
    store.set_usage(("c2", None), "calls", Decimal(3))  # another customer's: not this list's
    kept = store.store(key, _metered(0), mark)
    assert (kept.valid, kept.entries["calls"].current_usage) == (True, Decimal(7))
    assert store.hot[key].entries["calls"].current_usage == Decimal(7)
    # A list asked for after the push says what the server read since.
    again = store.store(key, _metered(9), store.before_fetch(key))
    assert again.entries["calls"].current_usage == Decimal(9)


def test_a_list_in_flight_when_the_stream_connects_without_a_replay_point_is_not_trusted() -> None:
    """The stream (re)connected with no replay point: what changed before it opened is never sent. A
    list asked for before that, of a customer not held yet, may predate such a change: kept, but re-read
    on its next use, like the states held then (and likewise across a `reset`)."""
    for distrust in ("mark_all_invalid", "clear"):
        store = EntitlementStore(MemoryCache(), "t:", ttl=30.0)
        key = ("c1", None)
        mark = store.before_fetch(key)
        if distrust == "mark_all_invalid":
            store.mark_all_invalid(time.time())
        else:
            store.clear()
        assert store.store(key, _metered(0), mark).valid is False, distrust
        assert store.store(key, _metered(0), store.before_fetch(key)).valid is True


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


def test_the_client_holds_a_replay_point_before_any_event(seeded: LiveServer) -> None:
    """With nothing changing, the client never learnt an event id: a dropped stream (a server restart)
    reconnected without a replay point and distrusted every cached state. The stream's opening id is kept."""
    from entitle.push import service as push

    with Entitle(seeded.key(), seeded.base_url) as client:
        require_push(client)
        held = eventually(client._store.last_event_id, lambda found: found is not None)
        assert held == push.newest_id(seeded.db)


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
