"""Hostile input at every write endpoint that creates something: hand-picked values a hostile or careless
caller sends (numbers beyond any range, NaN and infinities as raw JSON, dates at both ends of the
calendar, NUL and control characters, ids with `/`, very long text) put into each field of an otherwise
valid request. Whatever the answer, it is never a 5xx; a refused request writes nothing (the entity it
would have created does not exist); and the reads of what is there keep answering.

Schemathesis (test_fuzz.py) explores the schema broadly; this module is the deliberate, repeatable list
of the values that broke servers before (issue 11: a 1e30 event, a year-9999 timestamp).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import LiveServer

# Raw JSON text, spliced into the body as is (NaN and Infinity are not JSON: a strict parser refuses them).
HOSTILE: dict[str, str] = {
    "huge": "1e400",
    "huge-int": "9" * 400,
    "tiny": "1e-400",
    "negative-huge": "-1e30",
    "nan": "NaN",
    "infinity": "Infinity",
    "long-decimal": "99999999999999999999999.9999999999999",
    "date-min": json.dumps("0001-01-01T00:00:00Z"),
    "date-max": json.dumps("9999-12-31T23:59:59Z"),
    "date-offset-overflow": json.dumps("9999-12-31T23:59:59-23:59"),
    "nul": json.dumps("a\u0000b"),
    "control": json.dumps("a\u0001\u001fb"),
    "slash-id": json.dumps("a/b"),
    "dots": json.dumps("../.."),
    "long-text": json.dumps("x" * 20_000),
    "empty": json.dumps(""),
    "object": json.dumps({"nested": {"deeper": [1, 2, 3]}}),
    "list": json.dumps([None, True, "x"]),
    "null": "null",
    "bool": "true",
    "emoji": json.dumps("\U0001f600\u202e"),
}


@dataclass(frozen=True)
class Write:
    """A write that creates `created` (a GET path, `{id}` filled from the body) from `body`."""

    path: str
    body: dict[str, Any]
    created: str | None
    lists: str


WRITES: list[Write] = [
    Write(
        "/api/v1/customers",
        {"id": "hostile-c", "name": "N", "email": "a@b.co", "metadata": {"k": "v"}},
        "/api/v1/customers/{id}",
        "/api/v1/customers",
    ),
    Write(
        "/api/v1/features",
        {"id": "hostile-f", "displayName": "F", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
        "/api/v1/features/{id}",
        "/api/v1/features",
    ),
    Write("/api/v1/products", {"id": "hostile-p", "displayName": "P"}, "/api/v1/products/{id}", "/api/v1/products"),
    Write(
        "/api/v1/plans",
        {"id": "hostile-plan", "displayName": "Plan", "productId": "base"},
        "/api/v1/plans/{id}",
        "/api/v1/plans",
    ),
    Write(
        "/api/v1/coupons",
        {"id": "hostile-coupon", "name": "C", "type": "PERCENTAGE", "percentOff": 10, "durationInMonths": 3},
        "/api/v1/coupons/{id}",
        "/api/v1/coupons",
    ),
    Write(
        "/api/v1/subscriptions",
        {"id": "hostile-sub", "customerId": "owner", "planId": "basic", "billingPeriod": "MONTHLY"},
        "/api/v1/subscriptions/{id}",
        "/api/v1/subscriptions",
    ),
    Write(
        "/api/v2/usage",
        {"usages": [{"customerId": "acme", "featureId": "calls", "value": 1, "idempotencyKey": "hostile-u"}]},
        None,
        "/api/v1/customers/acme/entitlements",
    ),
    Write(
        "/api/v1/events",
        {
            "events": [
                {
                    "customerId": "acme",
                    "eventName": "call",
                    "idempotencyKey": "hostile-e",
                    "dimensions": {"n": 1},
                }
            ]
        },
        None,
        "/api/v1/customers/acme/entitlements",
    ),
]


def _fields(body: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf's path in the body (dict keys and list indexes)."""
    if isinstance(body, dict):
        return [p for key, value in body.items() for p in _fields(value, (*prefix, key))]
    if isinstance(body, list):
        return [p for i, value in enumerate(body) for p in _fields(value, (*prefix, i))]
    return [prefix]


def _with_raw(body: Any, path: tuple[Any, ...], raw: str) -> str:
    """The body as JSON text with the leaf at `path` replaced by the raw JSON text `raw`."""
    marker = "__HOSTILE_VALUE__"
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), raw)


@pytest.fixture
def seeded(server: LiveServer, api: httpx.Client) -> httpx.Client:
    """A product with a published plan granting a metered feature, a customer on it."""

    def ok(response: httpx.Response) -> None:
        assert response.status_code == 200, response.text

    ok(api.post("/api/v1/products", json={"id": "base", "displayName": "Base"}))
    meter = {"aggregation": {"function": "SUM", "field": "n"}, "filters": []}
    ok(
        api.post(
            "/api/v1/features",
            json={"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
        )
    )
    ok(
        api.post(
            "/api/v1/features",
            json={
                "id": "metered",
                "displayName": "Metered",
                "featureType": "NUMBER",
                "meterType": "INCREMENTAL",
                "meter": meter,
            },
        )
    )
    ok(api.post("/api/v1/plans", json={"id": "basic", "displayName": "Basic", "productId": "base"}))
    grants = [
        {"type": "FEATURE", "id": "calls", "usageLimit": 1000},
        {"type": "FEATURE", "id": "metered", "usageLimit": 1000},
    ]
    ok(api.post("/api/v1/plans/basic/entitlements", json={"entitlements": grants}))
    ok(api.post("/api/v1/plans/basic/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    ok(api.post("/api/v1/customers", json={"id": "acme", "subscriptionParams": {"planId": "basic"}}))
    ok(api.post("/api/v1/customers", json={"id": "owner"}))
    return api


def _reads_answer(api: httpx.Client) -> None:
    for path in [w.lists for w in WRITES] + ["/api/v1/customers/acme/entitlements/check?featureId=metered"]:
        response = api.get(path)
        assert response.status_code < 500, f"GET {path} -> {response.status_code}: {response.text[:300]}"


@pytest.mark.parametrize("write", WRITES, ids=[w.path for w in WRITES])
def test_no_hostile_value_in_any_field_is_a_server_error_or_a_partial_write(seeded: httpx.Client, write: Write) -> None:
    api = seeded
    body = copy.deepcopy(write.body)
    for path in _fields(write.body):
        for name, raw in HOSTILE.items():
            content = _with_raw(body, path, raw)
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
