"""Issue 12: on SQLite a server process ingests one batch at a time (`events.routes.BatchTurns`): two
batches in worker threads at once only traded the GIL, the one holding the write lock waiting for it at
each row. A batch waiting for its turn is acknowledged once the one before it is, each counted once; the
other routes (an entitlement check, a usage report) never wait behind it. On PostgreSQL batches still run
side by side."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from entitle.events import routes, service
from tests.conftest import LiveServer
from tests.test_usage_trust import FEATURES

EVENTS = "/api/v1/events"
WAIT = 60.0  # only a broken test waits this long; a passing one is released at once
# The features test_usage_trust.py meters with (a COUNT meter on "request" events; reported usage).
REQUESTS, CALLS = ({f["id"]: f for f in FEATURES}[ref] for ref in ("requests", "calls"))


@pytest.fixture
def built(server: LiveServer, api: httpx.Client) -> LiveServer:
    for feature in (REQUESTS, CALLS):
        api.post("/api/v1/features", json=feature).raise_for_status()
    api.post("/api/v1/products", json={"id": "app", "displayName": "App"}).raise_for_status()
    entitlements = [
        {"type": "FEATURE", "id": ref, "usageLimit": 10**9, "resetPeriod": "MONTH"} for ref in ("requests", "calls")
    ]
    api.post("/api/v1/plans", json={"id": "basic", "displayName": "Basic", "productId": "app"}).raise_for_status()
    api.post("/api/v1/plans/basic/entitlements", json={"entitlements": entitlements}).raise_for_status()
    api.post("/api/v1/plans/basic/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
    api.post("/api/v1/customers", json={"id": "acme", "subscriptionParams": {"planId": "basic"}}).raise_for_status()
    return server


class Inside:
    """`service.report_items` wrapped: which batches are in it at once; the first one stays there until
    released (`release`), so that the test can see what happens to the others meanwhile."""

    def __init__(self, original: Callable[..., Any]) -> None:
        self.original = original
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.entered = 0
        self.first_in = threading.Event()
        self.second_in = threading.Event()
        self.released = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.entered += 1
            first = self.entered == 1
        try:
            if first:
                self.first_in.set()
                assert self.released.wait(WAIT), "never released"
            else:
                self.second_in.set()
            return self.original(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


@pytest.fixture
def inside(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inside]:
    wrapped = Inside(service.report_items)
    monkeypatch.setattr(service, "report_items", wrapped)
    yield wrapped
    wrapped.released.set()  # a failing test never leaves a server thread waiting


def _event(key: str) -> dict[str, Any]:
    return {"customerId": "acme", "eventName": "request", "idempotencyKey": key}


def _post_in_thread(server: LiveServer, keys: list[str], answers: dict[str, Any], name: str) -> threading.Thread:
    def post() -> None:
        with server.http() as api:
            response = api.post(EVENTS, json={"events": [_event(key) for key in keys]}, timeout=WAIT)
            answers[name] = (response.status_code, response.json())

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT * 1000)):
        if condition():
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"never: {what}")


def _used(api: httpx.Client, feature: str) -> Any:
    response = api.get("/api/v1/customers/acme/entitlements/check", params={"featureId": feature})
    assert response.status_code == 200, response.text
    return response.json()["data"]["currentUsage"]


def test_a_second_batch_waits_for_its_turn_while_other_routes_are_answered(
    built: LiveServer, api: httpx.Client, inside: Inside
) -> None:
    server = built
    answers: dict[str, Any] = {}
    first = _post_in_thread(server, [f"a{n}" for n in range(10)], answers, "first")
    assert inside.first_in.wait(WAIT)
    # The second resends one of the first's keys: the first's turn comes first, so that one is a duplicate.
    second = _post_in_thread(server, ["a0", *(f"b{n}" for n in range(5))], answers, "second")
    if server.db.dialect != "sqlite":
        assert inside.second_in.wait(WAIT)  # PostgreSQL: both batches are in at once
        assert inside.most == 2
        inside.released.set()
    else:
        # The second batch waits for its turn (or, wrongly, is in beside the first).
        _until(lambda: routes.batch_turns.waiting == 1 or inside.most > 1, "the second batch arrived")
        assert inside.most == 1
        # Meanwhile the process answers the other routes: a check, and a usage report (which writes).
        assert _used(api, "requests") == 0
        usage = {"customerId": "acme", "featureId": "calls", "value": 2}
        reported = api.post("/api/v2/usage", json={"usages": [usage]})
        assert reported.status_code == 200, reported.text
        assert _used(api, "calls") == 2
        assert "second" not in answers and inside.entered == 1
        inside.released.set()
    first.join(WAIT)
    second.join(WAIT)
    if server.db.dialect == "sqlite":
        assert answers["first"] == (200, {"data": {"new": 10, "duplicates": 0}})
        assert answers["second"] == (200, {"data": {"new": 5, "duplicates": 1}})
        assert inside.most == 1
    else:  # side by side: whichever stored a0 first counted it, the other dropped it
        assert answers["first"][0] == answers["second"][0] == 200
        acknowledged = [answers[name][1]["data"] for name in ("first", "second")]
        assert sum(a["new"] for a in acknowledged) == 15
        assert sum(a["duplicates"] for a in acknowledged) == 1
    assert routes.batch_turns.waiting == 0
    assert _used(api, "requests") == 15  # each event counted once
