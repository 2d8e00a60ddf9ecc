"""Hostile input at every write endpoint that creates something: hand-picked values a hostile or careless
caller sends (numbers beyond any range, NaN and infinities as raw JSON, dates at both ends of the
calendar, NUL and control characters, ids with `/`, very long text) put into each field of an otherwise
valid request. Whatever the answer, it is never a 5xx; a refused request writes nothing (the entity it
would have created does not exist); and the reads of what is there keep answering. Then what the sweep
of every write (test_hostile_writes.py) found, and reused keys and ids.

Schemathesis (test_fuzz.py) explores the schema broadly; this module is the deliberate, repeatable list
of the values that broke servers before (issue 11: a 1e30 event, a year-9999 timestamp).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.hostile import (
    HOSTILE,
    WRITES,
    Make,
    Write,
    fields,
    ok,
    package_reads,
    read_state,
    seeded_client,
    with_raw,
)


@pytest.fixture(scope="module")
def seeded(module_server: LiveServer) -> Iterator[httpx.Client]:
    yield from seeded_client(module_server)


@pytest.fixture(scope="module")
def make(seeded: httpx.Client, module_server: LiveServer) -> Make:
    return Make(seeded, module_server)


def _reads_answer(api: httpx.Client) -> None:
    for path in [w.lists for w in WRITES] + ["/api/v1/customers/acme/entitlements/check?featureId=metered"]:
        response = api.get(path)
        assert response.status_code < 500, f"GET {path} -> {response.status_code}: {response.text[:300]}"


@pytest.mark.parametrize("write", WRITES, ids=[w.path for w in WRITES])
def test_no_hostile_value_in_any_field_is_a_server_error_or_a_partial_write(seeded: httpx.Client, write: Write) -> None:
    api = seeded
    body = copy.deepcopy(write.body)
    for path in fields(write.body):
        for name, raw in HOSTILE.items():
            content = with_raw(body, path, raw)
            response = api.post(write.path, content=content, headers={"content-type": "application/json"})
            where = f"POST {write.path} with {'.'.join(map(str, path))} = {name}"
            assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
            created_id = body.get("id")
            if response.status_code >= 400:
                assert response.json()["error"]["code"], where
                if write.created is not None and isinstance(created_id, str) and path != ("id",):
                    # Refused: the entity it would have made does not exist.
                    gone = api.get(write.created.format(id=quote(created_id, safe="")))
                    assert gone.status_code == 404, f"{where} was refused but wrote {gone.text[:200]}"
            elif write.created is not None:
                # Accepted (a value the field legitimately takes): undo it, and use a fresh id from now on
                # (an archived entity keeps its id).
                _undo(api, write, response)
                body["id"] = f"{body['id']}-x"
    _reads_answer(api)


def _undo(api: httpx.Client, write: Write, response: httpx.Response) -> None:
    data = response.json()["data"]
    made = data.get("id") if isinstance(data, dict) else None
    assert isinstance(made, str), response.text[:300]
    ref = quote(made, safe="")
    undo = {
        "/api/v1/customers": (f"/api/v1/customers/{ref}/archive", None),
        "/api/v1/features": (f"/api/v1/features/{ref}/archive", None),
        "/api/v1/products": (f"/api/v1/products/{ref}/archive", None),
        "/api/v1/plans": (f"/api/v1/plans/{ref}/archive", None),
        "/api/v1/coupons": (f"/api/v1/coupons/{ref}/archive", None),
        "/api/v1/subscriptions": (f"/api/v1/subscriptions/{ref}/cancel", {"cancellationTime": "IMMEDIATE"}),
    }
    path, json_body = undo[write.path]
    response = api.post(path, json=json_body) if json_body is not None else api.post(path)
    assert response.status_code < 500, response.text[:300]


# -- regressions: what the sweep found --------------------------------------------------------------------


def test_a_trial_is_whole_days_or_months_and_at_most_a_century(seeded: httpx.Client, make: Make) -> None:
    """A trial of 10^9 days was stored and then failed every subscription to the plan with a 500."""
    api = seeded
    plan = make.package("plans", publish=False)
    before = read_state(api, package_reads("plans", plan))
    for duration, units in [(10**9, "DAY"), (36_501, "DAY"), (1_201, "MONTH"), (1e15, "DAY"), (0.5, "DAY")]:
        response = api.patch(
            f"/api/v1/plans/{plan}", json={"defaultTrialConfig": {"duration": duration, "units": units}}
        )
        assert (response.status_code, response.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), response.text
        assert read_state(api, package_reads("plans", plan)) == before
    for duration, units in [(36_500, "DAY"), (1_200, "MONTH")]:
        ok(api.patch(f"/api/v1/plans/{plan}", json={"defaultTrialConfig": {"duration": duration, "units": units}}))


def test_a_trial_that_would_end_after_year_9999_is_refused_and_nothing_is_written(
    seeded: httpx.Client, make: Make
) -> None:
    api = seeded
    plan = make.package("plans", publish=False)
    ok(api.patch(f"/api/v1/plans/{plan}", json={"defaultTrialConfig": {"duration": 30, "units": "DAY"}}))
    ok(api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    customer = make.customer()
    late = "9999-12-20T00:00:00Z"
    refused = api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": plan, "startDate": late})
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), refused.text
    assert "after year 9999" in refused.json()["error"]["message"]
    assert ok(api.get("/api/v1/subscriptions", params={"customerId": customer})) == []
    # Provisioned with the customer: neither is written.
    newcomer = make.uid("cust")
    body = {"id": newcomer, "subscriptionParams": {"planId": plan, "startDate": late}}
    assert api.post("/api/v1/customers", json=body).status_code == 400
    assert api.get(f"/api/v1/customers/{newcomer}").status_code == 404
    # The same plan still subscribes from an ordinary date.
    ok(api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": plan}))


UNUSABLE_URLS = [
    "https://[::1/",
    "https://a.example.com:99999/",
    "https://a.example.com:0/",
    "https://a.example.com:/",
    "https://a..example.com/",
    "https://.com/",
    "https://a b.example.com/",
    "https://a.example.com/\x7f",
    "https:///path",
]


@pytest.mark.parametrize("url", UNUSABLE_URLS)
def test_a_url_no_client_can_use_is_refused_where_it_is_stored(seeded: httpx.Client, make: Make, url: str) -> None:
    """Stripe's apiBase, a webhook endpoint's url and a portal returnUrl: an unusable URL used to be stored
    (apiBase) and failed only in the jobs that used it."""
    api = seeded
    reads = ["/api/v1/integrations", "/api/v1/webhooks"]
    before = read_state(api, reads)
    key = f"sk_test_{make.uid('bogus')}"
    writes = [
        ("/api/v1/integrations", {"vendorIdentifier": "STRIPE", "apiSecretKey": key, "apiBase": url}),
        ("/api/v1/webhooks", {"url": url, "eventTypes": ["customer.created"], "enabled": False}),
        (f"/api/v1/customers/{make.customer()}/portal-session", {"returnUrl": url}),
    ]
    for path, body in writes:
        response = api.post(path, json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), (
            path,
            response.text,
        )
    assert read_state(api, reads) == before


def test_a_reused_key_counts_once_or_is_refused_and_a_reused_id_is_a_conflict(seeded: httpx.Client, make: Make) -> None:
    api = seeded
    customer = make.customer(subscriptionParams={"planId": "basic"})
    key = make.uid("key")

    def usage() -> Any:
        entitlements = ok(api.get(f"/api/v1/customers/{customer}/entitlements"))["entitlements"]
        return next(e["currentUsage"] for e in entitlements if e["feature"]["id"] == "calls")

    report = {"customerId": customer, "featureId": "calls", "value": 3, "idempotencyKey": key}
    ok(api.post("/api/v1/usage", json={"usages": [report]}))
    ok(api.post("/api/v2/usage", json={"usages": [report]}))  # the same report again, through v2: once
    ok(api.post("/api/v1/usage", json={"usages": [report, report]}))  # twice in one batch: once
    assert usage() == 3
    other = api.post("/api/v1/usage", json={"usages": [{**report, "value": 4}]})  # the key, another value
    assert (other.status_code, other.json()["error"]["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    mixed = api.post(
        "/api/v1/usage", json={"usages": [{**report, "idempotencyKey": make.uid("k")}, {**report, "value": 4}]}
    )
    assert mixed.status_code == 409 and usage() == 3, "a refused batch counts none of its reports"
    event = {"customerId": customer, "eventName": "call", "idempotencyKey": key, "dimensions": {"n": 1}}
    assert ok(api.post("/api/v1/events", json={"events": [event, event]})) == {"new": 1, "duplicates": 1}
    assert ok(api.post("/api/v1/events", json={"events": [event]})) == {"new": 0, "duplicates": 1}
    # Ids: a second entity with a taken id is a conflict, and the first is untouched.
    for path, body in [
        ("/api/v1/customers", {"id": customer, "name": "Other"}),
        ("/api/v1/plans", {"id": "basic", "displayName": "Other", "productId": "base"}),
        ("/api/v1/features", {"id": "calls", "displayName": "Other", "featureType": "BOOLEAN"}),
        ("/api/v1/coupons", {"id": "c10", "name": "Other", "percentOff": 50}),
    ]:
        before = read_state(api, [f"{path}/{body['id']}"])
        response = api.post(path, json=body)
        assert response.status_code == 409, (path, response.text)
        assert read_state(api, [f"{path}/{body['id']}"]) == before
