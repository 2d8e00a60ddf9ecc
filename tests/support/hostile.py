"""Shared by the hostile-input test modules (test_hostile_inputs.py, test_hostile_writes.py): the hostile
values, the seed of the module's server, what makes a case's entities, and reading the state a refused
write must leave as it was."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

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
        {"id": "hostile-coupon", "name": "C", "percentOff": 10, "durationInMonths": 3},
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


def fields(body: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf's path in the body (dict keys and list indexes)."""
    if isinstance(body, dict):
        return [p for key, value in body.items() for p in fields(value, (*prefix, key))]
    if isinstance(body, list):
        return [p for i, value in enumerate(body) for p in fields(value, (*prefix, i))]
    return [prefix]


def with_raw(body: Any, path: tuple[Any, ...], raw: str) -> str:
    """The body as JSON text with the leaf at `path` replaced by the raw JSON text `raw`."""
    marker = "__HOSTILE_VALUE__"
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), raw)


def node_at(body: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        body = body[key]
    return body


def nodes(body: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every node's path in the body, the body itself (()) first, then containers before their items."""
    found = [prefix]
    if isinstance(body, dict):
        found += [p for key, value in body.items() for p in nodes(value, (*prefix, key))]
    elif isinstance(body, list):
        found += [p for i, value in enumerate(body) for p in nodes(value, (*prefix, i))]
    return found


def seeded_client(server: LiveServer) -> Iterator[httpx.Client]:
    """A client of the module's server, seeded (see `seed`)."""
    with server.http() as api:
        seed(api)
        yield api


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: {response.text[:500]}"
    return response.json()["data"]


def seed(api: httpx.Client) -> None:
    """A product with a published plan granting a metered feature and a counted one, a published add-on, a
    product allowing several subscriptions (per resource) with its plan, a coupon; `acme` on the basic plan,
    `owner` with no subscription."""
    ok(api.post("/api/v1/products", json={"id": "base", "displayName": "Base"}))
    ok(api.post("/api/v1/products", json={"id": "multi", "displayName": "Multi", "multipleSubscriptions": True}))
    meter = {"aggregation": {"function": "SUM", "field": "n"}, "filters": []}
    for feature in (
        {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
        {
            "id": "metered",
            "displayName": "Metered",
            "featureType": "NUMBER",
            "meterType": "INCREMENTAL",
            "meter": meter,
        },
        {"id": "seats", "displayName": "Seats", "featureType": "NUMBER"},
        {"id": "flag", "displayName": "Flag", "featureType": "BOOLEAN"},
    ):
        ok(api.post("/api/v1/features", json=feature))
    grants = [
        {"type": "FEATURE", "id": "calls", "usageLimit": 1000},
        {"type": "FEATURE", "id": "metered", "usageLimit": 1000},
        {"type": "FEATURE", "id": "flag"},
    ]
    ok(api.post("/api/v1/addons", json={"id": "extra", "displayName": "Extra", "productId": "base"}))
    ok(
        api.post(
            "/api/v1/addons/extra/entitlements",
            json={"entitlements": [{"type": "FEATURE", "id": "seats", "usageLimit": 5}]},
        )
    )
    ok(api.post("/api/v1/addons/extra/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    for plan, product in (("basic", "base"), ("pro", "base"), ("site", "multi")):
        ok(api.post("/api/v1/plans", json={"id": plan, "displayName": plan.title(), "productId": product}))
        ok(api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": grants}))
        if product == "base":
            ok(api.patch(f"/api/v1/plans/{plan}", json={"compatibleAddonIds": ["extra"]}))
        ok(api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    ok(api.post("/api/v1/coupons", json={"id": "c10", "name": "Ten", "percentOff": 10}))
    ok(api.post("/api/v1/customers", json={"id": "acme", "subscriptionParams": {"planId": "basic"}}))
    ok(api.post("/api/v1/customers", json={"id": "owner"}))


@dataclass
class Target:
    """What one case's write acts on: its path parameters, a valid body (None: the route takes none), the
    GETs that show what it may change, the status the valid write answers (-1: a clean 4xx or a 200), and
    the body nodes no hostile value replaces."""

    params: dict[str, str]
    body: dict[str, Any] | None
    reads: list[str]
    expect: int = 200
    cleanup: Callable[[], None] | None = None
    pinned: frozenset[tuple[Any, ...]] = frozenset()


_unique = itertools.count()


class Make:
    """Builds the entities a case needs on the module's server, each with a fresh id."""

    def __init__(
        self, api: httpx.Client, server: LiveServer, *, stripe_base: str | None = None, stripe_key: str | None = None
    ) -> None:
        self.api = api
        self.server = server
        # Connecting Stripe asks Stripe whether the key works: writes that need an integration talk to the
        # local emulator when one is given; without one, connecting answers 503 (nothing reaches a real Stripe).
        self.stripe_base = stripe_base or DEAD_STRIPE
        self.stripe_key = stripe_key

    def uid(self, prefix: str) -> str:
        return f"{prefix}-{next(_unique)}"

    def feature(self, **extra: Any) -> str:
        ref = self.uid("f")
        body = {"id": ref, "displayName": "F", "featureType": "NUMBER", "meterType": "INCREMENTAL", **extra}
        ok(self.api.post("/api/v1/features", json=body))
        return ref

    def product(self) -> str:
        ref = self.uid("p")
        ok(self.api.post("/api/v1/products", json={"id": ref, "displayName": "P"}))
        return ref

    def package(self, kind: str, *, publish: bool, grants: bool = True) -> str:
        ref = self.uid(kind[:-1])
        ok(self.api.post(f"/api/v1/{kind}", json={"id": ref, "displayName": "Pk", "productId": "base"}))
        if grants:
            entitlements = [{"type": "FEATURE", "id": "calls", "usageLimit": 10}]
            ok(self.api.post(f"/api/v1/{kind}/{ref}/entitlements", json={"entitlements": entitlements}))
        if publish:
            ok(self.api.post(f"/api/v1/{kind}/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"}))
        return ref

    def coupon(self) -> str:
        ref = self.uid("coupon")
        ok(self.api.post("/api/v1/coupons", json={"id": ref, "name": "C", "percentOff": 5}))
        return ref

    def customer(self, **extra: Any) -> str:
        ref = self.uid("cust")
        ok(self.api.post("/api/v1/customers", json={"id": ref, **extra}))
        return ref

    def subscription(self, plan: str = "basic", **extra: Any) -> tuple[str, str]:
        customer = self.customer()
        body = {"customerId": customer, "planId": plan, **extra}
        return customer, ok(self.api.post("/api/v1/subscriptions", json=body))["id"]

    def integration(self) -> str:
        body = {"vendorIdentifier": "STRIPE", "apiSecretKey": self.stripe_secret(), "apiBase": self.stripe_base}
        ref: str = ok(self.api.post("/api/v1/integrations", json=body))["id"]
        return ref

    def stripe_secret(self) -> str:
        return self.stripe_key or f"sk_test_{self.uid('bogus')}"

    def remove_integration(self, ref: str) -> Callable[[], None]:
        # Connecting the emulator's key again revives the same integration, which an earlier cleanup
        # may have removed already: gone is what a cleanup wants.
        def remove() -> None:
            response = self.api.delete(f"/api/v1/integrations/{ref}")
            assert response.status_code in (200, 404), response.text

        return remove


DEAD_STRIPE = "http://127.0.0.1:9"


def customer_reads(ref: str) -> list[str]:
    return [f"/api/v1/customers/{ref}", f"/api/v1/customers/{ref}/entitlements"]


def sub_reads(customer: str, sub: str) -> list[str]:
    return [f"/api/v1/subscriptions/{sub}", *customer_reads(customer)]


def package_reads(kind: str, ref: str) -> list[str]:
    return [f"/api/v1/{kind}/{ref}", f"/api/v1/{kind}/{ref}/entitlements", f"/api/v1/{kind}/{ref}/charges"]


def read_state(api: httpx.Client, reads: list[str]) -> list[tuple[int, Any]]:
    state = []
    for path in reads:
        response = api.get(path)
        assert response.status_code < 500, f"GET {path} -> {response.status_code}: {response.text[:300]}"
        state.append((response.status_code, _without_last_use(response.json())))
    return state


def _without_last_use(value: Any) -> Any:
    """A read without `lastUsedAt` (an API key's, which every request moves)."""
    if isinstance(value, dict):
        return {k: _without_last_use(v) for k, v in value.items() if k != "lastUsedAt"}
    if isinstance(value, list):
        return [_without_last_use(v) for v in value]
    return value


def send_raw(api: httpx.Client, method: str, url: str, content: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"} if content is not None else {}
    return api.request(method, url, content=content, headers=headers)
