"""Issue 11, usage: nothing acknowledged is lost, nothing is accepted and ignored, no acknowledged input
breaks a later read. Each test names the defect it pins (observed on SQLite and PostgreSQL before the fix)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update

from entitle.events.models import Event
from entitle.usage.models import UsageCounter, UsageRecord
from tests.conftest import LiveServer

SUM_TOKENS = {
    "aggregation": {"function": "SUM", "field": "tokens"},
    "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "completion"}]}],
}
FEATURES: list[dict[str, Any]] = [
    {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
    {"id": "seats", "displayName": "Seats", "featureType": "NUMBER", "meterType": "FLUCTUATING"},
    {"id": "tokens", "displayName": "Tokens", "featureType": "NUMBER", "meterType": "INCREMENTAL", "meter": SUM_TOKENS},
    {
        "id": "requests",
        "displayName": "Requests",
        "featureType": "NUMBER",
        "meterType": "INCREMENTAL",
        "meter": {
            "aggregation": {"function": "COUNT"},
            "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "request"}]}],
        },
    },
    {
        "id": "users",
        "displayName": "Users",
        "featureType": "NUMBER",
        "meterType": "INCREMENTAL",
        "meter": {"aggregation": {"function": "UNIQUE", "field": "user"}, "filters": []},
    },
    {
        "id": "peak",
        "displayName": "Peak",
        "featureType": "NUMBER",
        "meterType": "INCREMENTAL",
        "meter": {
            "aggregation": {"function": "MAX", "field": "load"},
            "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "sample"}]}],
        },
    },
]
BIG = 10**15
METERED = [
    {"type": "FEATURE", "id": "tokens", "usageLimit": BIG, "resetPeriod": "MONTH"},
    {"type": "FEATURE", "id": "requests", "usageLimit": 1000, "resetPeriod": "MONTH"},
    {"type": "FEATURE", "id": "users", "usageLimit": 1000, "resetPeriod": "MONTH"},
    {"type": "FEATURE", "id": "peak", "usageLimit": BIG},
]
PLANS: dict[str, list[dict[str, Any]]] = {
    "basic": [
        {"type": "FEATURE", "id": "calls", "usageLimit": 100, "resetPeriod": "MONTH"},
        {"type": "FEATURE", "id": "seats", "usageLimit": 10},
        *METERED,
    ],
    # No metered feature: events for its customers wait for an entitlement.
    "starter": [{"type": "FEATURE", "id": "calls", "usageLimit": 10, "resetPeriod": "MONTH"}],
}


def build(api: httpx.Client) -> None:
    for body in FEATURES:
        api.post("/api/v1/features", json=body).raise_for_status()
    api.post("/api/v1/products", json={"id": "app", "displayName": "App"}).raise_for_status()
    for plan, entitlements in PLANS.items():
        api.post("/api/v1/plans", json={"id": plan, "displayName": plan, "productId": "app"}).raise_for_status()
        api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": entitlements}).raise_for_status()
        api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()


def customer(api: httpx.Client, customer_id: str, plan: str | None = "basic") -> None:
    body: dict[str, Any] = {"id": customer_id}
    if plan is not None:
        body["subscriptionParams"] = {"planId": plan}
    api.post("/api/v1/customers", json=body).raise_for_status()


def events(api: httpx.Client, *items: dict[str, Any]) -> httpx.Response:
    return api.post("/api/v1/events", json={"events": list(items)})


def event(customer_id: str, key: str, name: str = "completion", **dimensions: Any) -> dict[str, Any]:
    return {"customerId": customer_id, "eventName": name, "idempotencyKey": key, "dimensions": dimensions}


def usage(api: httpx.Client, *items: dict[str, Any]) -> httpx.Response:
    return api.post("/api/v2/usage", json={"usages": list(items)})


def report(customer_id: str, feature: str, value: Any, **more: Any) -> dict[str, Any]:
    return {"customerId": customer_id, "featureId": feature, "value": value, **more}


def check(api: httpx.Client, customer_id: str, feature: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/customers/{customer_id}/entitlements/check", params={"featureId": feature})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def listed(api: httpx.Client, customer_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/customers/{customer_id}/entitlements")
    assert response.status_code == 200, response.text
    return {e["feature"]["id"]: e for e in response.json()["data"]["entitlements"]}


def fields(response: httpx.Response, status: int = 400) -> list[str]:
    assert response.status_code == status, response.text
    return [d["field"] for d in response.json()["error"]["details"]]


def count(server: LiveServer, model: Any, *where: Any) -> int:
    with server.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def built(server: LiveServer, api: httpx.Client) -> LiveServer:
    build(api)
    return server


# --- 1. bounds at the door -------------------------------------------------------------------------


def test_a_huge_event_value_is_refused_by_index_and_the_checks_keep_answering(
    built: LiveServer, api: httpx.Client
) -> None:
    """Defect 1: one SUM event of 1e30 (SQLite) or 5e25 (PostgreSQL) made every later check a 500."""
    customer(api, "acme")
    for huge in (1e30, 5e25, -1e30, "1e30", BIG + 1):
        refused = events(
            api, event("acme", "a", tokens=5), event("acme", "b", tokens=huge), event("acme", "c", tokens=7)
        )
        assert fields(refused) == ["events.1.dimensions.tokens"], huge
    assert count(built, Event) == 0, "nothing of a refused batch is stored"
    assert check(api, "acme", "tokens")["currentUsage"] == 0
    assert events(api, event("acme", "a", tokens=5), event("acme", "c", tokens=BIG - 5)).status_code == 200
    assert check(api, "acme", "tokens")["currentUsage"] == BIG
    # At the top of the range, one more token would leave it: refused, naming the event, nothing stored.
    over = events(api, event("acme", "d", name="request"), event("acme", "e", tokens=1))
    assert fields(over) == ["events.1"]
    assert "outside the range" in over.json()["error"]["message"]
    assert count(built, Event) == 2
    assert listed(api, "acme")["tokens"]["currentUsage"] == BIG


def test_nan_and_infinite_dimensions_are_refused(built: LiveServer, api: httpx.Client) -> None:
    customer(api, "acme")
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        body = (
            '{"events": [{"customerId": "acme", "eventName": "completion", "idempotencyKey": "k",'
            f' "dimensions": {{"tokens": {literal}}}}}]}}'
        )
        response = api.post("/api/v1/events", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, literal
        assert all(f.startswith("events.0.dimensions.tokens") for f in fields(response))
    assert count(built, Event) == 0


def test_reports_that_would_leave_the_range_are_refused_before_anything_is_written(
    built: LiveServer, api: httpx.Client
) -> None:
    """Defect 1: two reports of 9e23 pushed a counter past what the response accepts."""
    customer(api, "acme")
    assert fields(usage(api, report("acme", "calls", 9e23))) == ["usages.0.value"]
    assert fields(usage(api, report("acme", "seats", 3), report("acme", "seats", -(BIG + 1)))) == ["usages.1.value"]
    assert usage(api, report("acme", "seats", BIG, updateBehavior="SET")).status_code == 200
    # Each within range, together out of it: the batch is refused whole (the first report included).
    refused = usage(api, report("acme", "seats", -1), report("acme", "seats", 2))
    assert fields(refused) == ["usages.1.value"]
    assert check(api, "acme", "seats")["currentUsage"] == BIG
    assert count(built, UsageRecord) == 1
    assert usage(api, report("acme", "seats", -BIG, updateBehavior="DELTA")).status_code == 200
    assert listed(api, "acme")["seats"]["currentUsage"] == 0


def test_an_already_stored_out_of_range_counter_is_still_readable(built: LiveServer, api: httpx.Client) -> None:
    """A counter written before the bounds existed must not turn the customer's checks into 500s."""
    customer(api, "acme")
    assert usage(api, report("acme", "calls", 1)).status_code == 200
    with built.db.transaction() as s:
        s.execute(update(UsageCounter).values(value=Decimal("1e25")))
    assert check(api, "acme", "calls")["currentUsage"] == 10**25
    assert listed(api, "acme")["calls"]["currentUsage"] == 10**25


# --- 2. dates within a documented window -------------------------------------------------------------


def test_dates_outside_the_usage_window_are_refused_naming_the_item(built: LiveServer, api: httpx.Client) -> None:
    """Defect 3: a year-9999 timestamp or createdAt was a 500 that rejected the batch (and blocked the SDK)."""
    customer(api, "acme")
    now = datetime.now(UTC)
    for bad in (
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-05:00",
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
    ):
        batch = [event("acme", "a", tokens=1), {**event("acme", "b", tokens=1), "timestamp": bad}]
        assert fields(events(api, *batch)) == ["events.1.timestamp"], bad
        assert fields(usage(api, report("acme", "calls", 1, createdAt=bad))) == ["usages.0.createdAt"], bad
    late = (now + timedelta(minutes=30)).isoformat()
    assert fields(events(api, {**event("acme", "z"), "timestamp": late})) == ["events.0.timestamp"]
    assert count(built, Event) == 0 and count(built, UsageRecord) == 0
    skewed = (now + timedelta(minutes=1)).isoformat()  # a client clock slightly ahead is fine
    assert events(api, {**event("acme", "a", tokens=2), "timestamp": skewed}).status_code == 200
    assert usage(api, report("acme", "calls", 1, createdAt=skewed)).status_code == 200
    assert (check(api, "acme", "tokens")["currentUsage"], check(api, "acme", "calls")["currentUsage"]) == (2, 1)


def test_history_ranges_are_capped_and_say_so(built: LiveServer, api: httpx.Client, monkeypatch: Any) -> None:
    """Defect 3 and 9: an endDate in 9999 was a 500; a 20-year range answered 24.9 MB in 3.2 s."""
    customer(api, "acme")
    history = "/api/v1/usage/acme/history/calls"
    now = datetime.now(UTC)
    far = api.get(
        history, params={"startDate": (now - timedelta(days=30)).isoformat(), "endDate": "9999-12-31T00:00:00Z"}
    )
    assert fields(far) == ["endDate"]
    twenty_years = api.get(history, params={"startDate": (now - timedelta(days=20 * 365)).isoformat()})
    assert fields(twenty_years) == ["endDate"] and "366 days" in twenty_years.json()["error"]["message"]
    assert fields(api.get(history, params={"startDate": "1969-01-01T00:00:00Z"})) == ["startDate"]
    assert fields(api.get(history, params={"startDate": "9999-12-31T23:59:59-05:00"}))[0].startswith("startDate")
    year = api.get(history, params={"startDate": (now - timedelta(days=365)).isoformat()})
    assert year.status_code == 200
    for i in range(4):
        assert usage(api, report("acme", "calls", 1, idempotencyKey=f"h{i}")).status_code == 200
    monkeypatch.setattr("entitle.usage.service.HISTORY_MAX_POINTS", 3)
    crowded = api.get(history, params={"startDate": (now - timedelta(days=1)).isoformat()})
    assert fields(crowded) == ["endDate"] and "more than the 3" in crowded.json()["error"]["message"]
    monkeypatch.setattr("entitle.usage.service.HISTORY_MAX_POINTS", 4)
    points = api.get(history, params={"startDate": (now - timedelta(days=1)).isoformat()}).json()["data"]
    assert [p["value"] for p in points["series"][0]["points"]] == [1, 2, 3, 4]


# --- 3. events count whenever their owner appears -----------------------------------------------------


def _early_events(api: httpx.Client, customer_id: str) -> None:
    batch = [
        event(customer_id, f"{customer_id}-t1", tokens=5),
        event(customer_id, f"{customer_id}-t2", tokens=7),
        *(event(customer_id, f"{customer_id}-r{i}", name="request") for i in range(3)),
        *(event(customer_id, f"{customer_id}-u{i}", name="seen", user=u) for i, u in enumerate("aba")),
        event(customer_id, f"{customer_id}-p1", name="sample", load=-3),
        event(customer_id, f"{customer_id}-p2", name="sample", load=-8),
    ]
    response = events(api, *batch)
    assert response.status_code == 200, response.text


EARLY = {"tokens": 12, "requests": 3, "users": 2, "peak": -3}


def _usage_of(api: httpx.Client, customer_id: str) -> dict[str, Any]:
    return {ref: check(api, customer_id, ref)["currentUsage"] for ref in EARLY}


def test_events_before_the_customer_count_once_it_is_provisioned(built: LiveServer, api: httpx.Client) -> None:
    """Defect 2: events for a customer that did not exist yet were stored and never counted."""
    _early_events(api, "late")
    customer(api, "late")  # created with its subscription in one request
    assert _usage_of(api, "late") == EARLY
    from entitle.usage.models import WaitingUsage

    assert count(built, WaitingUsage) == 0, "what waited moved into the window"
    more = [event("late", "late-t3", tokens=1), event("late", "late-u3", name="seen", user="c")]
    assert events(api, *more).status_code == 200
    assert _usage_of(api, "late") == {**EARLY, "tokens": 13, "users": 3}


def test_events_before_the_subscription_count_once_it_exists(built: LiveServer, api: httpx.Client) -> None:
    """Defect 2: events for a customer without a subscription were stored and never counted."""
    customer(api, "acme", plan=None)
    _early_events(api, "acme")
    provisioned = api.post("/api/v1/subscriptions", json={"customerId": "acme", "planId": "basic"})
    assert provisioned.status_code == 200, provisioned.text
    answered = {e["feature"]["id"]: e["currentUsage"] for e in provisioned.json()["data"]["entitlements"]}
    assert {ref: answered[ref] for ref in EARLY} == EARLY, "the provisioning answer already counts them"
    assert _usage_of(api, "acme") == EARLY


def test_events_before_the_entitlement_count_once_granted(built: LiveServer, api: httpx.Client) -> None:
    """An upgrade announces the entitlement change when the old subscription ends, before the new one
    exists: what waited is still counted, just before the change commits."""
    customer(api, "acme", plan="starter")
    _early_events(api, "acme")
    assert check(api, "acme", "tokens")["accessDeniedReason"] == "NoFeatureEntitlementInSubscription"
    upgraded = api.post("/api/v1/subscriptions", json={"customerId": "acme", "planId": "basic"})
    assert upgraded.status_code == 200, upgraded.text
    assert _usage_of(api, "acme") == EARLY

    customer(api, "promo", plan=None)
    _early_events(api, "promo")
    grant = {"promotionalEntitlements": [{"featureId": "tokens", "period": "1 month", "usageLimit": 100}]}
    assert api.post("/api/v1/customers/promo/promotional-entitlements", json=grant).status_code == 200
    assert check(api, "promo", "tokens")["currentUsage"] == 12
    from entitle.usage.models import WaitingUsage

    assert count(built, WaitingUsage, WaitingUsage.customer_ref == "promo") == 3  # the rest still waits


def test_an_archived_customer_s_events_wait_until_it_is_unarchived(built: LiveServer, api: httpx.Client) -> None:
    customer(api, "acme", plan=None)
    api.post("/api/v1/customers/acme/archive").raise_for_status()
    _early_events(api, "acme")
    api.post("/api/v1/customers/acme/unarchive").raise_for_status()
    assert api.post("/api/v1/subscriptions", json={"customerId": "acme", "planId": "basic"}).status_code == 200
    assert _usage_of(api, "acme") == EARLY


def test_a_tally_written_before_tallies_were_kept_is_rebuilt_from_its_events(
    built: LiveServer, api: httpx.Client
) -> None:
    customer(api, "acme")
    sample = [event("acme", f"p{i}", name="sample", load=v) for i, v in enumerate((4, 9, 2))]
    assert events(api, *sample).status_code == 200
    with built.db.transaction() as s:  # as migration 0017 leaves a MAX counter of before
        s.execute(update(UsageCounter).where(UsageCounter.feature_ref == "peak").values(samples=None, value=7))
    assert events(api, event("acme", "p3", name="sample", load=5)).status_code == 200
    assert check(api, "acme", "peak")["currentUsage"] == 9


# --- 4. idempotency with one meaning per endpoint ---------------------------------------------------------


def test_a_reused_usage_key_answers_the_first_result_or_409(built: LiveServer, api: httpx.Client) -> None:
    """Defect 4: values 3 then 5 under one key both answered "3"; a key reused for another customer
    answered the first record relabelled with the new customer id, and recorded nothing."""
    customer(api, "acme")
    customer(api, "other")
    first = usage(api, report("acme", "calls", 3, idempotencyKey="k"))
    assert first.status_code == 200
    again = usage(api, report("acme", "calls", 3.0, idempotencyKey="k"))
    assert again.json()["data"]["usages"] == first.json()["data"]["usages"]
    for changed in (
        report("acme", "calls", 5, idempotencyKey="k"),
        report("other", "calls", 3, idempotencyKey="k"),
        report("acme", "seats", 3, idempotencyKey="k"),
        report("acme", "calls", 3, idempotencyKey="k", updateBehavior="SET"),
        report("acme", "calls", 3, idempotencyKey="k", resourceId="r1"),
        report("ghost", "calls", 3, idempotencyKey="k"),
    ):
        refused = usage(api, report("acme", "calls", 1, idempotencyKey="fresh"), changed)
        assert refused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED", changed
        assert fields(refused, 409) == ["usages.1.idempotencyKey"]
        assert refused.headers["x-should-retry"] == "false"
    assert (check(api, "acme", "calls")["currentUsage"], check(api, "other", "calls")["currentUsage"]) == (3, 0)
    assert count(built, UsageRecord) == 1
    within = usage(api, report("acme", "calls", 1, idempotencyKey="w"), report("acme", "calls", 2, idempotencyKey="w"))
    assert fields(within, 409) == ["usages.1.idempotencyKey"]
    same = usage(api, report("acme", "calls", 1, idempotencyKey="s"), report("acme", "calls", 1, idempotencyKey="s"))
    assert [u["currentUsage"] for u in same.json()["data"]["usages"]] == [4, 4]
    assert check(api, "acme", "calls")["currentUsage"] == 4


def test_a_batch_repeating_an_event_key_keeps_the_first_and_stores_the_rest(
    built: LiveServer, api: httpx.Client
) -> None:
    """Defect 4: a batch of events that repeated an idempotency key was refused whole with 400."""
    customer(api, "acme")
    batch = [event("acme", "k1", tokens=1), event("acme", "k1", tokens=100), event("acme", "k2", tokens=2)]
    answered = events(api, *batch)
    assert answered.status_code == 200
    assert answered.json()["data"] == {"new": 2, "duplicates": 1}
    assert check(api, "acme", "tokens")["currentUsage"] == 3
    resent = events(api, *batch, event("acme", "k3", tokens=4))
    assert resent.json()["data"] == {"new": 1, "duplicates": 3}
    assert check(api, "acme", "tokens")["currentUsage"] == 7
    with built.db.read() as s:
        assert s.scalars(select(Event.dimensions).where(Event.idempotency_key == "k1")).one() == {"tokens": 1}


# --- 5. usage is never refused for a limit ----------------------------------------------------------------


def test_usage_past_a_hard_limit_is_recorded_and_the_check_denies(built: LiveServer, api: httpx.Client) -> None:
    """Defect 5: a DELTA report at a hard limit got 409 and was not recorded (nor billed)."""
    customer(api, "acme")
    assert usage(api, report("acme", "calls", 100)).status_code == 200
    over = usage(api, report("acme", "calls", 5))
    assert over.status_code == 200
    assert over.json()["data"]["usages"][0]["currentUsage"] == 105
    result = check(api, "acme", "calls")
    assert (result["isGranted"], result["currentUsage"], result["accessDeniedReason"]) == (
        False,
        105,
        "RequestedUsageExceedingLimit",
    )
    assert count(built, UsageRecord) == 2


def test_an_ingestion_and_a_grant_that_interleave_lose_nothing(built: LiveServer, api: httpx.Client) -> None:
    """An ingestion that finds no grant and a provisioning that folds what waits run at the same time:
    the fold waits for the ingestion (PostgreSQL advisory lock), so the usage cannot be left waiting
    behind a grant that already folded. SQLite serializes writers, so this interleaving cannot happen."""
    if built.db.dialect != "postgresql":
        pytest.skip("SQLite serializes write transactions: an ingestion and a provisioning cannot interleave")
    from entitle.environments.service import ensure_environment
    from entitle.events.ingested import NewEvent
    from entitle.usage.counting import apply_events

    customer(api, "acme", plan=None)
    env_id = ensure_environment(built.db, "development").pk
    answers: list[int] = []
    with built.db.transaction() as s:  # the ingestion, still open: its waiting tally is not committed
        arrived = NewEvent("acme", None, "completion", {"tokens": 42}, datetime.now(UTC), 0)
        apply_events(s, env_id, [arrived])

        def provision() -> None:
            with built.http() as other:
                body = {"customerId": "acme", "planId": "basic"}
                answers.append(other.post("/api/v1/subscriptions", json=body).status_code)

        provisioning = threading.Thread(target=provision)
        provisioning.start()
        with built.db.read() as watcher:  # until the provisioning's fold waits for the ingestion's lock
            waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            while not watcher.scalar(waiting) and provisioning.is_alive():
                watcher.rollback()
    provisioning.join()
    assert answers == [200]
    assert check(api, "acme", "tokens")["currentUsage"] == 42
