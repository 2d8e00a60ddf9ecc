"""The sync SDK against a real server: local cache, usage, offline answers, event batching."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from entitle.events.models import Event
from entitle.sdk import Entitle, EntitleError, FallbackEntitlement, Source
from tests.conftest import LiveServer
from tests.sdk.conftest import CALLS_LIMIT, CountingTransport, closed_port_url, seed
from tests.support.server import running_server

LIST = "/api/v1/customers/c1/entitlements"


def sdk(server: LiveServer, **options: object) -> tuple[Entitle, CountingTransport]:
    transport = CountingTransport()
    options.setdefault("push", False)
    client = Entitle(server.key(), server.base_url, transport=transport, **options)  # type: ignore[arg-type]
    return client, transport


def server_check(server: LiveServer, feature: str, **params: object) -> dict[str, object]:
    with server.http() as api:
        response = api.get(LIST + "/check", params={"featureId": feature, **params})
        response.raise_for_status()
        data: dict[str, object] = response.json()["data"]
        return data


def test_reads_are_answered_locally_after_one_request(seeded: LiveServer) -> None:
    client, transport = sdk(seeded)
    with client:
        first = client.get_entitlement("c1", "flag")
        assert (first.source, first.is_granted) == (Source.SERVER, True)
        assert transport.paths == {LIST: 1}
        cases: list[tuple[str, dict[str, object]]] = [
            ("flag", {}),
            ("seats", {}),
            ("seats", {"requested_usage": 5}),
            ("seats", {"requested_usage": 6}),
            ("calls", {}),
            ("calls", {"requested_usage": CALLS_LIMIT}),
            ("calls", {"requested_usage": CALLS_LIMIT + 1}),
            ("regions", {"requested_values": ["eu"]}),
            ("regions", {"requested_values": ["eu", "apac"]}),
            ("missing-feature", {}),
        ]
        for _ in range(50):
            for feature, args in cases:
                result = client.get_entitlement("c1", feature, **args)  # type: ignore[arg-type]
                assert result.source is Source.CACHE
        assert transport.paths == {LIST: 1}, "the cache answered without another request"
        # And every local answer is the server's answer.
        for feature, args in cases:
            local = client.get_entitlement("c1", feature, **args)  # type: ignore[arg-type]
            params: dict[str, object] = {}
            if "requested_usage" in args:
                params["requestedUsage"] = args["requested_usage"]
            if "requested_values" in args:
                params["requestedValues"] = ",".join(args["requested_values"])  # type: ignore[arg-type]
            remote = server_check(seeded, feature, **params)
            assert local.is_granted == remote["isGranted"], (feature, args)
            if remote["isGranted"] is False and feature != "missing-feature":
                assert local.access_denied_reason == remote["accessDeniedReason"]
        assert client.get_entitlement("c1", "regions").enum_values == ("eu", "us")
        assert transport.paths == {LIST: 1}


def test_a_reported_usage_shows_in_the_cache_at_once(seeded: LiveServer) -> None:
    client, transport = sdk(seeded)
    with client:
        assert client.get_entitlement("c1", "calls").current_usage == 0
        usage = client.report_usage("c1", "calls", 4)
        assert usage.current_usage == 4
        cached = client.get_entitlement("c1", "calls", requested_usage=6)
        assert (cached.source, cached.current_usage, cached.is_granted) == (Source.CACHE, Decimal(4), True)
        assert client.get_entitlement("c1", "calls", requested_usage=7).is_granted is False
        client.report_usage("c1", "calls", CALLS_LIMIT, update_behavior="SET")
        full = client.get_entitlement("c1", "calls")
        assert (full.is_granted, full.access_denied_reason) == (False, "RequestedUsageExceedingLimit")
        assert server_check(seeded, "calls")["isGranted"] is False
        # Usage past the hard limit is recorded, not refused: the check is what denies access.
        past = client.report_usage("c1", "calls", 1)
        assert past.current_usage == CALLS_LIMIT + 1
        assert client.get_entitlement("c1", "calls").current_usage == CALLS_LIMIT + 1
        assert server_check(seeded, "calls")["currentUsage"] == CALLS_LIMIT + 1
        assert transport.paths[LIST] == 1


def test_an_unreachable_server_answers_from_fallbacks(tmp_path: Path) -> None:
    fallbacks = {"flag": True, "calls": FallbackEntitlement(usage_limit=3), "regions": {"enum_values": ["eu"]}}
    with Entitle("any-key", closed_port_url(), push=False, fallback_entitlements=fallbacks) as client:
        flag = client.get_entitlement("c1", "flag")
        assert (flag.source, flag.is_granted) == (Source.FALLBACK, True)
        assert client.get_entitlement("c1", "calls", requested_usage=3).is_granted is True
        over = client.get_entitlement("c1", "calls", requested_usage=4)
        assert (over.is_granted, over.access_denied_reason) == (False, "RequestedUsageExceedingLimit")
        assert client.get_entitlement("c1", "regions", requested_values=["us"]).is_granted is False
        unknown = client.get_entitlement("c1", "seats")
        assert (unknown.source, unknown.is_granted, unknown.access_denied_reason) == (Source.FALLBACK, False, "Unknown")
        assert [r.feature_id for r in client.get_entitlements("c1")] == ["calls", "flag", "regions"]
        assert client.is_offline


def test_a_stopped_server_leaves_the_last_known_state(database_url: str, tmp_path: Path) -> None:
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    with running_server(database_url, tmp_path) as (base_url, database):
        key = create_key(database, "development", KeyKind.SERVER)
        with httpx.Client(base_url=base_url, headers={"X-API-KEY": key}) as api:
            seed(api, customers=("c1", "c2"))
        # cache_ttl=0: every read goes to the server while it is up.
        client = Entitle(key, base_url, push=False, cache_ttl=0, fallback_entitlements={"flag": True})
        client.report_usage("c1", "calls", 3)
        warm = client.get_entitlement("c1", "calls")
        assert (warm.source, warm.current_usage) == (Source.SERVER, 3)
    # The server is gone.
    stale = client.get_entitlement("c1", "calls", requested_usage=7)
    assert (stale.source, stale.current_usage, stale.is_granted) == (Source.STALE_CACHE, 3, True)
    assert client.get_entitlement("c1", "calls", requested_usage=8).is_granted is False
    assert client.get_entitlement("c1", "regions", requested_values=["eu"]).source is Source.STALE_CACHE
    never_seen = client.get_entitlement("c2", "flag")
    assert (never_seen.source, never_seen.is_granted) == (Source.FALLBACK, True)
    assert {r.source for r in client.get_entitlements("c1")} == {Source.STALE_CACHE}
    client.close()


def _stored_events(server: LiveServer) -> tuple[int, int]:
    with server.db.read() as s:
        rows = int(s.scalar(select(func.count()).select_from(Event)) or 0)
        keys = int(s.scalar(select(func.count(func.distinct(Event.idempotency_key)))) or 0)
        return rows, keys


def test_queued_events_are_all_delivered_once_on_close(seeded: LiveServer) -> None:
    client, transport = sdk(seeded, event_batch_size=100, event_flush_interval=3600)
    n = 1234
    for i in range(n):
        client.report_event("c1", "api_call", dimensions={"i": i})
    client.close()  # nothing reached the time threshold; the size threshold sent some
    assert client.pending_events == 0
    assert _stored_events(seeded) == (n, n)
    assert transport.paths["/api/v1/events"] == 13  # 12 full batches of 100, then the 34 left
    with Entitle(seeded.key(), seeded.base_url, push=False) as fresh:
        assert fresh.get_entitlement("c1", "api-events").current_usage == n


def test_events_go_out_on_the_time_threshold_and_on_flush(seeded: LiveServer) -> None:
    client, _ = sdk(seeded, event_batch_size=1000, event_flush_interval=0.2)
    with client:
        for i in range(3):
            client.report_event("c1", "api_call", idempotency_key=f"timed-{i}")
        deadline = time.monotonic() + 10
        while _stored_events(seeded)[0] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _stored_events(seeded) == (3, 3), "sent without flush, close or size threshold"
    slow, _ = sdk(seeded, event_batch_size=1000, event_flush_interval=3600)
    with slow:
        slow.report_event("c1", "api_call", idempotency_key="flushed")
        assert slow.flush(timeout=10) is True
        assert _stored_events(seeded) == (4, 4)
        assert slow.pending_events == 0


class LosesResponses(httpx.BaseTransport):
    """Forwards each event batch to the server, then loses the first `lose` answers (the server
    committed; the client cannot know), and refuses the next `refuse` connections outright."""

    def __init__(self, lose: int, refuse: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.lose, self.refuse = lose, refuse
        self.event_posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/api/v1/events":
            return self.inner.handle_request(request)
        self.event_posts += 1
        if self.refuse and self.event_posts > self.lose:
            self.refuse -= 1
            raise httpx.ConnectError("refused", request=request)
        response = self.inner.handle_request(request)
        response.read()
        if self.event_posts <= self.lose:
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response


def test_a_lost_acknowledgement_is_retried_with_the_same_keys(seeded: LiveServer) -> None:
    transport = LosesResponses(lose=2, refuse=2)
    client = Entitle(seeded.key(), seeded.base_url, push=False, event_batch_size=50, transport=transport)
    for _ in range(120):
        client.report_event("c1", "api_call")
    client.close()
    assert _stored_events(seeded) == (120, 120)
    assert transport.event_posts > 3  # the retries happened, and counted nothing twice


def test_a_report_dated_into_an_earlier_window_does_not_replace_the_cached_current_usage(seeded: LiveServer) -> None:
    """The answer to a report with an old `created_at` carries the counter of the window it counted in; the
    client wrote it over the current window's, and answered from it (with the push stream connected, as
    current) until the customer next changed: last month's usage denied this month's calls."""
    from datetime import UTC, datetime, timedelta

    client, transport = sdk(seeded)
    with client:
        client.report_usage("c1", "calls", 2)
        assert client.get_entitlement("c1", "calls").current_usage == 2
        late = client.report_usage("c1", "calls", 7, created_at=datetime.now(UTC) - timedelta(days=45))
        assert late.current_usage != 9  # counted where it belongs, not in this month's window
        current = server_check(seeded, "calls")["currentUsage"]
        assert current == 2
        cached = client.get_entitlement("c1", "calls", requested_usage=CALLS_LIMIT - 2)
        assert (cached.current_usage, cached.is_granted) == (2, True)
        reads = transport.paths[LIST]
        assert client.report_usage("c1", "calls", 1).current_usage == 3  # a report of now: taken as it is
        assert client.get_entitlement("c1", "calls").current_usage == 3
        now = datetime.now(UTC)
        assert client.report_usage("c1", "calls", 1, created_at=now).current_usage == 4  # dated now: the same
        assert client.get_entitlement("c1", "calls").current_usage == 4
        assert transport.paths[LIST] == reads


def test_a_dated_reports_answer_is_applied_unless_it_is_another_windows() -> None:
    """The rule above, per case: a resetting feature's counter of another window (or of none) leaves the
    state to be re-read; a feature that never resets has one counter, which any report's answer gives."""
    from datetime import UTC, datetime, timedelta

    from entitle.sdk.types import ReportedUsage

    now = datetime.now(UTC)
    month = (now - timedelta(days=3), now + timedelta(days=27))
    listed = {
        "entitlements": [
            {
                "feature": {"id": "calls", "featureType": "NUMBER"},
                "isGranted": True,
                "usageLimit": 10,
                "currentUsage": 2,
                "usagePeriodStart": month[0].isoformat(),
                "usagePeriodEnd": month[1].isoformat(),
            },
            {
                "feature": {"id": "seats", "featureType": "NUMBER"},
                "isGranted": True,
                "usageLimit": 10,
                "currentUsage": 2,
            },
        ]
    }

    def answer(feature: str, current: int, window: tuple[datetime, datetime] | None) -> ReportedUsage:
        start, end = window if window is not None else (None, None)
        return ReportedUsage("1", "c1", feature, None, Decimal(1), Decimal(current), start, end, end)

    last_month = (month[0] - timedelta(days=30), month[0])
    for feature, reported, window, applied in (
        ("calls", 9, last_month, False),
        ("calls", 9, None, False),  # dated before any window of the customer's
        ("calls", 3, month, True),
        ("seats", 3, None, True),
    ):
        client = Entitle("k", "http://127.0.0.1:9", push=False)
        key = ("c1", None)
        client._store.store(key, listed, client._store.before_fetch(key))
        client._after_report("c1", None, feature, answer(feature, reported, window), backdated=True)
        state = client._store.hot[key]
        expected = (True, Decimal(reported)) if applied else (False, Decimal(2))
        assert (state.valid, state.entries[feature].current_usage) == expected, (feature, window)
        client.close()


def test_provisioning_through_the_sdk_refreshes_the_customer(seeded: LiveServer) -> None:
    client, transport = sdk(seeded)
    with client:
        unknown = client.get_entitlement("new", "flag")
        assert (unknown.is_granted, unknown.access_denied_reason) == (False, "CustomerNotFound")
        customer = client.provision_customer(
            "new", email="ops@new.test", metadata={"tier_name": "x"}, subscription_params={"plan_id": "basic"}
        )
        assert (customer["id"], customer["email"], customer["metadata"]) == ("new", "ops@new.test", {"tier_name": "x"})
        granted = client.get_entitlement("new", "seats", requested_usage=5)
        assert (granted.source, granted.is_granted) == (Source.SERVER, True)
        provisioned = client.provision_subscription("new", "pro", billing_period="MONTHLY")
        assert provisioned["subscription"]["planId"] == "pro"
        upgraded = client.get_entitlement("new", "calls", requested_usage=CALLS_LIMIT + 1)
        assert (upgraded.source, upgraded.is_granted, upgraded.has_unlimited_usage) == (Source.SERVER, True, True)
        assert transport.paths["/api/v1/customers/new/entitlements"] == 3
        with pytest.raises(EntitleError) as taken:
            client.provision_customer("new")
        assert taken.value.status == 409
        # docs/sdk.md: `status`, `code` and `message` from the server's error envelope (`message` was missing:
        # an `except EntitleError as e: log(e.message)` raised AttributeError in the handler).
        envelope = taken.value.body["error"]
        assert (taken.value.code, taken.value.message) == (envelope["code"], envelope["message"])
        assert "new" in taken.value.message and not taken.value.message.startswith("POST ")


def test_paywall(seeded: LiveServer) -> None:
    with seeded.http() as api:
        if "/api/v1/paywall" not in api.get("/openapi.json").json()["paths"]:
            pytest.skip("the server has no GET /api/v1/paywall yet")
    client, _ = sdk(seeded)
    with client:
        paywall = client.get_paywall(product_id="app", customer_id="c1")
        assert {p["id"] for p in paywall["plans"]} == {"basic", "pro"}
        assert paywall["customer"]["currentPlanId"] == "basic"
