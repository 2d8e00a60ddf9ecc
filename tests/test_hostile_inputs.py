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
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st

from entitle.app import create_app
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


@pytest.fixture(scope="module")
def seeded(module_server: LiveServer) -> Iterator[httpx.Client]:
    """The module's server with a catalog and customers every case builds on (see `_seed`)."""
    with module_server.http() as api:
        _seed(api)
        yield api


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: {response.text[:500]}"
    return response.json()["data"]


def _seed(api: httpx.Client) -> None:
    """A product with a published plan granting a metered feature and a counted one, a published add-on, a
    product allowing several subscriptions (per resource) with its plan, a coupon; `acme` on the basic plan,
    `owner` with no subscription."""
    _ok(api.post("/api/v1/products", json={"id": "base", "displayName": "Base"}))
    _ok(api.post("/api/v1/products", json={"id": "multi", "displayName": "Multi", "multipleSubscriptions": True}))
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
        _ok(api.post("/api/v1/features", json=feature))
    grants = [
        {"type": "FEATURE", "id": "calls", "usageLimit": 1000},
        {"type": "FEATURE", "id": "metered", "usageLimit": 1000},
        {"type": "FEATURE", "id": "flag"},
    ]
    _ok(api.post("/api/v1/addons", json={"id": "extra", "displayName": "Extra", "productId": "base"}))
    _ok(
        api.post(
            "/api/v1/addons/extra/entitlements",
            json={"entitlements": [{"type": "FEATURE", "id": "seats", "usageLimit": 5}]},
        )
    )
    _ok(api.post("/api/v1/addons/extra/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    for plan, product in (("basic", "base"), ("pro", "base"), ("site", "multi")):
        _ok(api.post("/api/v1/plans", json={"id": plan, "displayName": plan.title(), "productId": product}))
        _ok(api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": grants}))
        if product == "base":
            _ok(api.patch(f"/api/v1/plans/{plan}", json={"compatibleAddonIds": ["extra"]}))
        _ok(api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    _ok(api.post("/api/v1/coupons", json={"id": "c10", "name": "Ten", "type": "PERCENTAGE", "percentOff": 10}))
    _ok(api.post("/api/v1/customers", json={"id": "acme", "subscriptionParams": {"planId": "basic"}}))
    _ok(api.post("/api/v1/customers", json={"id": "owner"}))


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


# -- every other write: updates, actions, deletes -----------------------------------------------------------
#
# Each case makes what its write acts on (fresh ids: the cases share the module's server, in any order), a
# valid body, and the reads that show the state the write may change. Hostile values go into every node of
# the body and into every path parameter; a refused write must leave those reads exactly as they were.


@dataclass
class Target:
    """What one case's write acts on: its path parameters, a valid body (None: the route takes none), the
    GETs that show what it may change, and the status the valid write answers."""

    params: dict[str, str]
    body: dict[str, Any] | None
    reads: list[str]
    expect: int = 200
    cleanup: Callable[[], None] | None = None


_unique = itertools.count()


class Make:
    """Builds the entities a case needs on the module's server, each with a fresh id."""

    def __init__(self, api: httpx.Client, server: LiveServer) -> None:
        self.api = api
        self.server = server

    def uid(self, prefix: str) -> str:
        return f"{prefix}-{next(_unique)}"

    def feature(self, **extra: Any) -> str:
        ref = self.uid("f")
        body = {"id": ref, "displayName": "F", "featureType": "NUMBER", "meterType": "INCREMENTAL", **extra}
        _ok(self.api.post("/api/v1/features", json=body))
        return ref

    def product(self) -> str:
        ref = self.uid("p")
        _ok(self.api.post("/api/v1/products", json={"id": ref, "displayName": "P"}))
        return ref

    def package(self, kind: str, *, publish: bool, grants: bool = True) -> str:
        ref = self.uid(kind[:-1])
        _ok(self.api.post(f"/api/v1/{kind}", json={"id": ref, "displayName": "Pk", "productId": "base"}))
        if grants:
            entitlements = [{"type": "FEATURE", "id": "calls", "usageLimit": 10}]
            _ok(self.api.post(f"/api/v1/{kind}/{ref}/entitlements", json={"entitlements": entitlements}))
        if publish:
            _ok(self.api.post(f"/api/v1/{kind}/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"}))
        return ref

    def coupon(self) -> str:
        ref = self.uid("coupon")
        _ok(self.api.post("/api/v1/coupons", json={"id": ref, "name": "C", "type": "PERCENTAGE", "percentOff": 5}))
        return ref

    def customer(self, **extra: Any) -> str:
        ref = self.uid("cust")
        _ok(self.api.post("/api/v1/customers", json={"id": ref, **extra}))
        return ref

    def subscription(self, plan: str = "basic", **extra: Any) -> tuple[str, str]:
        customer = self.customer()
        body = {"customerId": customer, "planId": plan, **extra}
        return customer, _ok(self.api.post("/api/v1/subscriptions", json=body))["id"]

    def integration(self) -> str:
        # A bogus key against a closed local port: nothing ever reaches a real Stripe.
        body = {"vendorIdentifier": "STRIPE", "apiSecretKey": f"sk_test_{self.uid('bogus')}", "apiBase": DEAD_STRIPE}
        ref: str = _ok(self.api.post("/api/v1/integrations", json=body))["id"]
        return ref

    def remove_integration(self, ref: str) -> Callable[[], None]:
        return lambda: _ok(self.api.delete(f"/api/v1/integrations/{ref}"))


DEAD_STRIPE = "http://127.0.0.1:9"


def _customer_reads(ref: str) -> list[str]:
    return [f"/api/v1/customers/{ref}", f"/api/v1/customers/{ref}/entitlements"]


def _sub_reads(customer: str, sub: str) -> list[str]:
    return [f"/api/v1/subscriptions/{sub}", *_customer_reads(customer)]


def _package_reads(kind: str, ref: str) -> list[str]:
    return [f"/api/v1/{kind}/{ref}", f"/api/v1/{kind}/{ref}/entitlements", f"/api/v1/{kind}/{ref}/charges"]


FLAT_CHARGES = {
    "pricingType": "PAID",
    "pricingModels": [
        {"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 10}}]}
    ],
}
GRANT = {
    "type": "FEATURE",
    "id": "calls",
    "usageLimit": 3,
    "hasSoftLimit": False,
    "resetPeriod": "MONTH",
    "monthlyResetPeriodConfiguration": {"accordingTo": "SubscriptionStart"},
    "description": "d",
    "displayNameOverride": "Seats",
    "order": 1,
}


def _feature_update(m: Make) -> Target:
    ref = m.feature(meter={"aggregation": {"function": "SUM", "field": "n"}, "filters": []})
    body = {
        "displayName": "F2",
        "description": "d",
        "featureUnits": "u",
        "featureUnitsPlural": "us",
        "metadata": {"k": "v"},
        "meter": {
            "aggregation": {"function": "SUM", "field": "n"},
            "filters": [{"conditions": [{"field": "region", "operation": "EQUALS", "value": "eu"}]}],
        },
    }
    return Target({"feature_id": ref}, body, [f"/api/v1/features/{ref}"])


def _archived_feature(m: Make) -> Target:
    ref = m.feature()
    _ok(m.api.post(f"/api/v1/features/{ref}/archive"))
    return Target({"feature_id": ref}, None, [f"/api/v1/features/{ref}"])


def _product_update(m: Make) -> Target:
    ref = m.product()
    settings = {
        "subscriptionCancellationTime": "END_OF_BILLING_PERIOD",
        "subscriptionEndSetup": "CANCEL_SUBSCRIPTION",
        "subscriptionStartSetup": "PLAN_SELECTION",
    }
    body = {
        "displayName": "P2",
        "description": "d",
        "metadata": {"k": "v"},
        "multipleSubscriptions": True,
        "productSettings": settings,
    }
    return Target({"product_id": ref}, body, [f"/api/v1/products/{ref}"])


def _archived_product(m: Make) -> Target:
    ref = m.product()
    _ok(m.api.post(f"/api/v1/products/{ref}/archive"))
    return Target({"product_id": ref}, None, [f"/api/v1/products/{ref}"])


def _product_duplicate(m: Make) -> Target:
    ref, copy_ref = m.product(), m.uid("copy")
    body = {"targetId": copy_ref, "displayName": "Copy", "description": "d"}
    return Target({"product_id": ref}, body, [f"/api/v1/products/{ref}", f"/api/v1/products/{copy_ref}"])


def _package_update(kind: str) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        ref = m.package(kind, publish=False)
        body: dict[str, Any] = {
            "displayName": "Pk2",
            "description": "d",
            "metadata": {"k": "v"},
            "charges": FLAT_CHARGES,
        }
        if kind == "plans":
            body |= {"compatibleAddonIds": ["extra"], "defaultTrialConfig": {"duration": 14, "units": "DAY"}}
        else:
            body |= {"maxQuantity": 5, "dependencies": []}
        param = "plan_id" if kind == "plans" else "addon_id"
        return Target({param: ref}, body, _package_reads(kind, ref))

    return make


def _package_action(kind: str, *, publish: bool, draft: bool = False, body: dict[str, Any] | None = None) -> Any:
    def make(m: Make) -> Target:
        ref = m.package(kind, publish=publish)
        if draft:
            _ok(m.api.post(f"/api/v1/{kind}/{ref}/draft"))
        return Target({"package_id": ref}, copy.deepcopy(body), _package_reads(kind, ref))

    return make


def _package_grants(kind: str) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        ref = m.package(kind, publish=False, grants=False)
        return Target({"package_id": ref}, {"entitlements": [copy.deepcopy(GRANT)]}, _package_reads(kind, ref))

    return make


def _package_grant(kind: str, *, delete: bool) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        ref = m.package(kind, publish=False)
        body = None if delete else {k: v for k, v in GRANT.items() if k not in ("id", "usageLimit")} | {"usageLimit": 7}
        return Target({"package_id": ref, "entitlement_id": "calls"}, body, _package_reads(kind, ref))

    return make


def _addon_create(m: Make) -> Target:
    ref = m.uid("addon")
    body = {
        "id": ref,
        "displayName": "A",
        "productId": "base",
        "description": "d",
        "maxQuantity": 3,
        "metadata": {"k": "v"},
    }
    return Target({}, body, [f"/api/v1/addons/{ref}", "/api/v1/addons"])


def _coupon_update(m: Make) -> Target:
    ref = m.coupon()
    return Target(
        {"coupon_id": ref}, {"name": "C2", "description": "d", "metadata": {"k": "v"}}, [f"/api/v1/coupons/{ref}"]
    )


def _coupon_archive(m: Make) -> Target:
    ref = m.coupon()
    return Target({"coupon_id": ref}, None, [f"/api/v1/coupons/{ref}"])


def _customer_import(m: Make) -> Target:
    ref = m.uid("imported")
    body = {"customers": [{"id": ref, "name": "N", "email": "n@example.com", "billingId": "b", "metadata": {"k": "v"}}]}
    return Target({}, body, [f"/api/v1/customers/{ref}"])


def _customer_update(m: Make) -> Target:
    ref = m.customer()
    body = {
        "name": "N2",
        "email": "n2@example.com",
        "billingId": m.uid("billing"),
        "language": "en",
        "timezone": "Europe/Paris",
        "metadata": {"k": "v"},
    }
    return Target({"customer_id": ref}, body, _customer_reads(ref))


def _customer_archive(m: Make) -> Target:
    ref = m.customer()
    return Target({"customer_id": ref}, None, _customer_reads(ref))


def _customer_unarchive(m: Make) -> Target:
    ref = m.customer()
    _ok(m.api.post(f"/api/v1/customers/{ref}/archive"))
    return Target({"customer_id": ref}, None, _customer_reads(ref))


def _customer_link(m: Make) -> Target:
    ref = m.customer()
    body = {"id": m.uid("hs"), "vendorIdentifier": "STRIPE", "syncedEntityId": "cus_x"}
    return Target({"customer_id": ref}, body, _customer_reads(ref))


def _customer_link_change(*, delete: bool) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        ref, link = m.customer(), m.uid("hs")
        body = {"id": link, "vendorIdentifier": "STRIPE", "syncedEntityId": "cus_x"}
        _ok(m.api.post(f"/api/v1/customers/{ref}/integrations", json=body))
        return Target(
            {"customer_id": ref, "integration_id": link},
            None if delete else {"syncedEntityId": "y"},
            _customer_reads(ref),
        )

    return make


def _payment_method(*, delete: bool) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        integration = m.integration()
        ref = m.customer()
        body = {"integrationId": integration, "paymentMethodId": "pm_card_visa", "vendorIdentifier": "STRIPE"}
        # The customer is not synced to Stripe (the worker does not run here): refused, cleanly.
        return Target(
            {"customer_id": ref},
            None if delete else body,
            _customer_reads(ref),
            expect=-1,
            cleanup=m.remove_integration(integration),
        )

    return make


def _portal_session(m: Make) -> Target:
    integration = m.integration()
    ref = m.customer()
    return Target(
        {"customer_id": ref},
        {"returnUrl": "https://app.example.com/account"},
        _customer_reads(ref),
        expect=-1,
        cleanup=m.remove_integration(integration),
    )


PROMOTION = {
    "featureId": "calls",
    "period": "custom",
    "customEndDate": "2100-01-01T00:00:00Z",
    "usageLimit": 5,
    "hasUnlimitedUsage": False,
    "hasSoftLimit": False,
    "isVisible": True,
    "description": "d",
    "resetPeriod": "MONTH",
    "monthlyResetPeriodConfiguration": {"accordingTo": "SubscriptionStart"},
}


def _promotion_grant(m: Make) -> Target:
    ref = m.customer()
    body = {"promotionalEntitlements": [copy.deepcopy(PROMOTION)]}
    return Target(
        {"customer_id": ref}, body, [*_customer_reads(ref), f"/api/v1/customers/{ref}/promotional-entitlements"]
    )


def _promotion_revoke(m: Make) -> Target:
    ref = m.customer()
    _ok(m.api.post(f"/api/v1/customers/{ref}/promotional-entitlements", json={"promotionalEntitlements": [PROMOTION]}))
    return Target(
        {"customer_id": ref, "feature_id": "calls"},
        None,
        [*_customer_reads(ref), f"/api/v1/customers/{ref}/promotional-entitlements"],
    )


def _subscription_create(m: Make) -> Target:
    customer, ref = m.customer(), m.uid("sub")
    body = {
        "id": ref,
        "customerId": customer,
        "planId": "basic",
        "billingPeriod": "MONTHLY",
        "unitQuantity": 1,
        "addons": [{"id": "extra", "quantity": 2}],
        "entitlements": [{"type": "FEATURE", "id": "calls", "usageLimit": 50}],
        "startDate": "2030-01-01T00:00:00Z",
        "metadata": {"k": "v"},
        "appliedCoupon": {"couponId": "c10"},
        "trialOverrideConfiguration": {"isTrial": False},
    }
    return Target({}, body, [f"/api/v1/subscriptions/{ref}", *_customer_reads(customer)])


def _subscription_preview(m: Make) -> Target:
    customer = m.customer()
    body = {
        "customerId": customer,
        "planId": "basic",
        "billingPeriod": "MONTHLY",
        "unitQuantity": 1,
        "addons": [{"id": "extra", "quantity": 1}],
        "startDate": "2030-01-01T00:00:00Z",
        "appliedCoupon": {"couponId": "c10"},
    }
    return Target({}, body, _customer_reads(customer))


def _subscription_update(m: Make) -> Target:
    customer, ref = m.subscription()
    body = {
        "addons": [{"id": "extra", "quantity": 2}],
        "entitlements": [{"type": "FEATURE", "id": "calls", "usageLimit": 20}],
        "billingPeriod": "MONTHLY",
        "scheduleStrategy": "IMMEDIATE",
        "metadata": {"k": "v"},
        "appliedCoupon": {"couponId": "c10"},
    }
    return Target({"subscription_id": ref}, body, _sub_reads(customer, ref))


def _subscription_action(body: dict[str, Any] | None, *, plan: str = "basic", **extra: Any) -> Any:
    def make(m: Make) -> Target:
        customer, ref = m.subscription(plan, **extra)
        filled = json.loads(json.dumps(body).replace("{other}", m.customer())) if body is not None else None
        return Target({"subscription_id": ref}, filled, _sub_reads(customer, ref))

    return make


def _scheduled_update(m: Make) -> Target:
    customer, ref = m.subscription("pro")
    _ok(
        m.api.patch(
            f"/api/v1/subscriptions/{ref}",
            json={"billingPeriod": "ANNUALLY", "scheduleStrategy": "END_OF_BILLING_PERIOD"},
        )
    )
    return Target({"subscription_id": ref}, None, _sub_reads(customer, ref), expect=-1)


def _usage_v1(m: Make) -> Target:
    customer = m.customer(subscriptionParams={"planId": "basic"})
    usage = {
        "customerId": customer,
        "featureId": "calls",
        "value": 1,
        "idempotencyKey": m.uid("u"),
        "updateBehavior": "DELTA",
    }
    return Target({}, {"usages": [usage]}, _customer_reads(customer))


def _job_retry(m: Make) -> Target:
    return Target({"job_id": "999999"}, None, ["/api/v1/jobs"], expect=404)


def _integration_connect(m: Make) -> Target:
    key = f"sk_test_{m.uid('bogus')}"
    body = {
        "vendorIdentifier": "STRIPE",
        "apiSecretKey": key,
        "webhookSecret": "whsec_bogus",
        "apiBase": DEAD_STRIPE,
        "isDefault": False,
        "syncCustomers": True,
        "syncSubscriptions": True,
        "taxEnabled": False,
        "paymentSettlementHours": 24,
    }
    return Target({}, body, ["/api/v1/integrations"], expect=-1, cleanup=lambda: _remove_all_integrations(m.api))


def _remove_all_integrations(api: httpx.Client) -> None:
    for integration in _ok(api.get("/api/v1/integrations")):
        _ok(api.delete(f"/api/v1/integrations/{integration['id']}"))


def _integration_remove(m: Make) -> Target:
    ref = m.integration()
    return Target(
        {"integration_id": ref}, None, ["/api/v1/integrations"], cleanup=lambda: _remove_all_integrations(m.api)
    )


def _stripe_event(m: Make) -> Target:
    ref = m.integration()
    event = {"id": m.uid("evt"), "type": "invoice.paid", "data": {"object": {"id": "in_1", "customer": "cus_1"}}}
    # No signature: refused (400), and nothing is stored.
    return Target(
        {"integration_id": ref},
        event,
        ["/api/v1/integrations", f"/api/v1/integrations/{ref}/sync-states"],
        expect=-1,
        cleanup=lambda: _remove_all_integrations(m.api),
    )


def _webhook_create(m: Make) -> Target:
    body = {
        "url": f"https://hooks.example.com/{m.uid('in')}",
        "eventTypes": ["customer.created"],
        "secret": "whsec_" + "A" * 32,
        "description": "d",
        "enabled": False,
    }
    return Target({}, body, ["/api/v1/webhooks"], cleanup=lambda: _remove_all_webhooks(m.api))


def _remove_all_webhooks(api: httpx.Client) -> None:
    for webhook in _ok(api.get("/api/v1/webhooks")):
        _ok(api.delete(f"/api/v1/webhooks/{webhook['id']}"))


def _webhook_change(*, delete: bool) -> Callable[[Make], Target]:
    def make(m: Make) -> Target:
        created = _ok(
            m.api.post(
                "/api/v1/webhooks",
                json={
                    "url": f"https://hooks.example.com/{m.uid('in')}",
                    "eventTypes": ["customer.created"],
                    "enabled": False,
                },
            )
        )
        body = {
            "url": "https://hooks.example.com/other",
            "eventTypes": ["customer.updated"],
            "description": "d",
            "enabled": False,
        }
        return Target(
            {"webhook_id": created["id"]},
            None if delete else body,
            ["/api/v1/webhooks"],
            cleanup=lambda: _remove_all_webhooks(m.api),
        )

    return make


def _redeliver(m: Make) -> Target:
    return Target({"delivery_id": "999999"}, None, ["/api/v1/webhooks"], expect=404)


def _key_revoke(m: Make) -> Target:
    from entitle.environments.models import KeyKind

    key = m.server.key(kind=KeyKind.CLIENT)
    listed = _ok(m.api.get("/api/v1/keys", params={"limit": 100}))
    ref = next(k["id"] for k in listed if key.startswith(k["prefix"]))
    return Target({"key_id": ref}, None, ["/api/v1/keys?limit=100"])


@dataclass(frozen=True)
class Case:
    method: str
    template: str
    make: Callable[[Make], Target]
    # The write uses up what it acts on when it succeeds (a fresh target is made after an accepted value).
    consumes: bool = True

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


def _update(template: str, make: Callable[[Make], Target]) -> Case:
    return Case("PATCH", template, make, consumes=False)


CASES: list[Case] = [
    _update("/api/v1/features/{feature_id}", _feature_update),
    Case("POST", "/api/v1/features/{feature_id}/archive", lambda m: Target({"feature_id": m.feature()}, None, [])),
    Case("POST", "/api/v1/features/{feature_id}/unarchive", _archived_feature),
    _update("/api/v1/products/{product_id}", _product_update),
    Case("POST", "/api/v1/products/{product_id}/archive", lambda m: Target({"product_id": m.product()}, None, [])),
    Case("POST", "/api/v1/products/{product_id}/unarchive", _archived_product),
    Case("POST", "/api/v1/products/{product_id}/duplicate", _product_duplicate),
    _update("/api/v1/plans/{plan_id}", _package_update("plans")),
    Case("POST", "/api/v1/plans/{package_id}/archive", _package_action("plans", publish=True)),
    Case("POST", "/api/v1/plans/{package_id}/draft", _package_action("plans", publish=True)),
    Case("DELETE", "/api/v1/plans/{package_id}/draft", _package_action("plans", publish=True, draft=True)),
    Case(
        "POST",
        "/api/v1/plans/{package_id}/publish",
        _package_action("plans", publish=False, body={"migrationType": "NEW_CUSTOMERS"}),
    ),
    Case("POST", "/api/v1/plans/{package_id}/entitlements", _package_grants("plans")),
    _update("/api/v1/plans/{package_id}/entitlements/{entitlement_id}", _package_grant("plans", delete=False)),
    Case("DELETE", "/api/v1/plans/{package_id}/entitlements/{entitlement_id}", _package_grant("plans", delete=True)),
    Case("POST", "/api/v1/addons", _addon_create),
    _update("/api/v1/addons/{addon_id}", _package_update("addons")),
    Case("POST", "/api/v1/addons/{package_id}/archive", _package_action("addons", publish=True)),
    Case("POST", "/api/v1/addons/{package_id}/draft", _package_action("addons", publish=True)),
    Case("DELETE", "/api/v1/addons/{package_id}/draft", _package_action("addons", publish=True, draft=True)),
    Case(
        "POST",
        "/api/v1/addons/{package_id}/publish",
        _package_action("addons", publish=False, body={"migrationType": "NEW_CUSTOMERS"}),
    ),
    Case("POST", "/api/v1/addons/{package_id}/entitlements", _package_grants("addons")),
    _update("/api/v1/addons/{package_id}/entitlements/{entitlement_id}", _package_grant("addons", delete=False)),
    Case("DELETE", "/api/v1/addons/{package_id}/entitlements/{entitlement_id}", _package_grant("addons", delete=True)),
    _update("/api/v1/coupons/{coupon_id}", _coupon_update),
    Case("POST", "/api/v1/coupons/{coupon_id}/archive", _coupon_archive),
    Case("POST", "/api/v1/customers/import", _customer_import),
    _update("/api/v1/customers/{customer_id}", _customer_update),
    Case("POST", "/api/v1/customers/{customer_id}/archive", _customer_archive),
    Case("POST", "/api/v1/customers/{customer_id}/unarchive", _customer_unarchive),
    Case("POST", "/api/v1/customers/{customer_id}/integrations", _customer_link),
    _update("/api/v1/customers/{customer_id}/integrations/{integration_id}", _customer_link_change(delete=False)),
    Case("DELETE", "/api/v1/customers/{customer_id}/integrations/{integration_id}", _customer_link_change(delete=True)),
    Case("POST", "/api/v1/customers/{customer_id}/payment-method", _payment_method(delete=False)),
    Case("DELETE", "/api/v1/customers/{customer_id}/payment-method", _payment_method(delete=True)),
    Case("POST", "/api/v1/customers/{customer_id}/portal-session", _portal_session),
    Case("POST", "/api/v1/customers/{customer_id}/promotional-entitlements", _promotion_grant),
    Case("DELETE", "/api/v1/customers/{customer_id}/promotional-entitlements/{feature_id}", _promotion_revoke),
    Case("POST", "/api/v1/subscriptions/preview", _subscription_preview, consumes=False),
    _update("/api/v1/subscriptions/{subscription_id}", _subscription_update),
    Case(
        "POST",
        "/api/v1/subscriptions/{subscription_id}/cancel",
        _subscription_action(
            {"cancellationTime": "SPECIFIC_DATE", "cancellationAction": "DEFAULT", "endDate": "2100-01-01T00:00:00Z"}
        ),
    ),
    Case(
        "POST",
        "/api/v1/subscriptions/{subscription_id}/migrate",
        _subscription_action({"subscriptionMigrationTime": "IMMEDIATE"}),
    ),
    Case(
        "POST",
        "/api/v1/subscriptions/{subscription_id}/delegate",
        _subscription_action({"targetCustomerId": "{other}"}),
    ),
    Case(
        "POST",
        "/api/v1/subscriptions/{subscription_id}/transfer",
        _subscription_action({"destinationResourceId": "site-2"}, plan="site", resourceId="site-1"),
    ),
    Case("DELETE", "/api/v1/subscriptions/{subscription_id}/future-update/schedule", _scheduled_update),
    Case("POST", "/api/v1/usage", _usage_v1),
    Case("POST", "/api/v1/jobs/{job_id}/retry", _job_retry),
    Case("POST", "/api/v1/integrations", _integration_connect),
    Case("DELETE", "/api/v1/integrations/{integration_id}", _integration_remove),
    Case("POST", "/api/v1/integrations/{integration_id}/webhooks/stripe", _stripe_event),
    Case("POST", "/api/v1/webhooks", _webhook_create),
    _update("/api/v1/webhooks/{webhook_id}", _webhook_change(delete=False)),
    Case("DELETE", "/api/v1/webhooks/{webhook_id}", _webhook_change(delete=True)),
    Case("POST", "/api/v1/webhooks/deliveries/{delivery_id}/redeliver", _redeliver),
    Case("POST", "/api/v1/keys/{key_id}/revoke", _key_revoke),
    Case("POST", "/api/v1/subscriptions", _subscription_create),
]

# Raw path segments (already percent-encoded as sent): ids a hostile caller puts in a path.
HOSTILE_IDS: dict[str, str] = {
    "slash": "a%2Fb",
    "dots": "..",
    "encoded-dots": "%2E%2E",
    "nul": "a%00b",
    "control": "a%01%1Fb",
    "long": "x" * 5000,
    "bad-utf8": "%C3%28",
    "space": "%20",
    "emoji": quote("\U0001f600\u202e", safe=""),
    "question": "a%3Fb",
    "huge-number": "9" * 400,
}


def _write_routes() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.update((m, route.path) for m in route.methods if m in ("POST", "PUT", "PATCH", "DELETE"))
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)
            elif hasattr(route, "routes"):
                walk(route.routes)

    walk(create_app().router.routes)
    return found


def test_every_write_route_is_in_a_hostile_table() -> None:
    """A new write route must be added to CASES (or WRITES): this fails until it is."""
    covered = {(c.method, c.template) for c in CASES} | {("POST", w.path) for w in WRITES}
    missing = _write_routes() - covered
    assert not missing, f"write routes with no hostile-input case: {sorted(missing)}"
    assert not covered - _write_routes(), "cases name routes the app does not serve"


def _state(api: httpx.Client, reads: list[str]) -> list[tuple[int, Any]]:
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


def _url(case: Case, target: Target, hostile: tuple[str, str] | None = None) -> str:
    params = {name: quote(value, safe="") for name, value in target.params.items()}
    if hostile is not None:
        params[hostile[0]] = hostile[1]
    return case.template.format(**params)


def _send(api: httpx.Client, method: str, url: str, content: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"} if content is not None else {}
    return api.request(method, url, content=content, headers=headers)


Build = Callable[[Target], tuple[str, str | None]]  # a request for the current target: (url, body text)


class Checker:
    """Sends hostile writes of one case and checks each answer: never a 5xx; a refusal is an error envelope
    and leaves the case's reads as they were.

    Requests go in batches (the values for one field or path parameter). A batch with no value accepted is
    checked once at its end: every read is as before it. A batch where some value was accepted (the state
    moved, legitimately) sends its refused values again as a batch of their own; should one of those be
    accepted now, each is sent once more alone, checked against the reads just before it. An accepted
    write of a case that uses up its target (an archive, a create) gets a new one.
    """

    def __init__(self, api: httpx.Client, make: Make, case: Case) -> None:
        self.api, self.make, self.case = api, make, case
        self.targets: list[Target] = []
        self.target = self._new_target()

    def _new_target(self) -> Target:
        target = self.case.make(self.make)
        self.targets.append(target)
        self.before = _state(self.api, target.reads)
        return target

    def _send(self, build: Build, where: str) -> bool:
        """Whether the write was refused (after checking the answer is not a 5xx)."""
        url, content = build(self.target)
        response = _send(self.api, self.case.method, url, content)
        assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
        if response.status_code < 400:
            if self.case.consumes:
                self.target = self._new_target()
            return False
        if response.headers.get("content-type") == "application/json":
            assert response.json()["error"]["code"], where
        else:  # only the router's own answers (an unroutable path) are not JSON
            assert response.status_code in (404, 405), f"{where} -> {response.status_code}: {response.text[:300]}"
        return True

    def batch(self, requests: list[tuple[str, Build]], *, again: bool = False) -> None:
        self.before = _state(self.api, self.target.reads)
        refused = [(where, build) for where, build in requests if self._send(build, where)]
        if len(refused) == len(requests):
            after = _state(self.api, self.target.reads)
            wheres = [where for where, _ in refused]
            assert after == self.before, f"one of {wheres} was refused but changed {self.target.reads}"
            return
        if not again:  # the refused values once more, on the state the accepted ones left
            self.batch(refused, again=True)
            return
        for where, build in refused:
            self.before = _state(self.api, self.target.reads)
            if self._send(build, where):
                after = _state(self.api, self.target.reads)
                assert after == self.before, f"{where} was refused but changed {self.target.reads}"

    def cleanup(self) -> None:
        for target in self.targets:
            if target.cleanup is not None:
                target.cleanup()


def _values_for(node: Any, path: tuple[Any, ...]) -> list[str]:
    """The hostile values (names in HOSTILE) for one node of a body: those its kind can meet, and a few of
    other kinds (a number where text goes, text where a number goes, an object, null). Every value of
    HOSTILE reaches the fields that can take it; the creating writes above get all of them everywhere."""
    numbers = ["huge", "huge-int", "tiny", "negative-huge", "nan", "infinity", "long-decimal"]
    texts = ["nul", "control", "slash-id", "long-text", "empty", "emoji"]
    dates = ["date-min", "date-max", "date-offset-overflow"]
    if not path:
        return ["nan", "list", "null", "empty"]
    if isinstance(node, dict | list):
        return ["null", "huge", "nul", "list" if isinstance(node, dict) else "object"]
    if isinstance(node, bool):
        return ["nan", "nul", "object", "null"]
    if isinstance(node, int | float):
        return [*numbers, "nul", "object", "null"]
    if isinstance(node, str):
        looks_like_a_date = node[:2] in ("19", "20") and "T" in node
        return [*texts, "dots", "huge", "object", "null", *(dates if looks_like_a_date else [])]
    return list(HOSTILE)


@pytest.fixture(scope="module")
def make(seeded: httpx.Client, module_server: LiveServer) -> Make:
    return Make(seeded, module_server)


def _body_request(path: tuple[Any, ...], raw: str, case: Case) -> Build:
    def build(target: Target) -> tuple[str, str | None]:
        return _url(case, target), (raw if not path else _with_raw(target.body, path, raw))

    return build


def _path_request(param: str, raw: str, case: Case) -> Build:
    def build(target: Target) -> tuple[str, str | None]:
        return _url(case, target, (param, raw)), (json.dumps(target.body) if target.body is not None else None)

    return build


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_hostile_value_in_a_body_or_a_path_is_a_server_error_or_a_partial_write(
    seeded: httpx.Client, make: Make, case: Case
) -> None:
    api = seeded
    check = Checker(api, make, case)
    try:
        body = check.target.body
        if body is not None:
            for path in _nodes(body):
                node = _node_at(body, path)
                where = f"{case.name} with {'.'.join(map(str, path)) or 'the body'} = "
                check.batch(
                    [(where + name, _body_request(path, HOSTILE[name], case)) for name in _values_for(node, path)]
                )
        for param in check.target.params:
            where = f"{case.name} with {param} = "
            check.batch([(where + name, _path_request(param, raw, case)) for name, raw in HOSTILE_IDS.items()])
        # The valid write itself answers as the table says (the table's bodies are meaningful).
        target = check.target
        content = json.dumps(target.body) if target.body is not None else None
        response = _send(api, case.method, _url(case, target), content)
        if target.expect == -1:
            assert 400 <= response.status_code < 500 or response.status_code == 200, response.text[:300]
        else:
            assert response.status_code == target.expect, f"{case.name}: {response.status_code} {response.text[:500]}"
    finally:
        check.cleanup()


def _node_at(body: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        body = body[key]
    return body


def _nodes(body: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every node's path in the body, the body itself (()) first, then containers before their items."""
    found = [prefix]
    if isinstance(body, dict):
        found += [p for key, value in body.items() for p in _nodes(value, (*prefix, key))]
    elif isinstance(body, list):
        found += [p for i, value in enumerate(body) for p in _nodes(value, (*prefix, i))]
    return found


# -- arbitrary JSON ---------------------------------------------------------------------------------------

_texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["", "\x00", "a/b", "..", "x" * 5000, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "NaN", "1e400"]
)
_numbers = (
    st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2**53 + 1, 2**63, -(2**63) - 1, 10**400])
)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | _numbers | _texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def _hostile_bodies(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """Arbitrary JSON, or the valid body with some of its nodes (at any depth) replaced by arbitrary JSON."""
    if draw(st.integers(0, 4)) == 0:
        return draw(_json)
    body = copy.deepcopy(valid)
    paths = [p for p in _nodes(body) if p]
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        try:
            parent = _node_at(body, path[:-1])
            parent[path[-1]] = draw(_json)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this node
    return body


REPRESENTATIVE = [
    "PATCH /api/v1/customers/{customer_id}",
    "PATCH /api/v1/subscriptions/{subscription_id}",
    "POST /api/v1/plans/{package_id}/entitlements",
    "POST /api/v1/usage",
]


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_arbitrary_json_is_never_a_server_error_and_a_refusal_writes_nothing(
    seeded: httpx.Client, make: Make, name: str
) -> None:
    case = next(c for c in CASES if c.name == name)
    target = case.make(make)
    assert target.body is not None

    # The reads after each example are the next one's "before" (one read per example, not two).
    state = {"before": _state(seeded, target.reads)}

    @given(body=_hostile_bodies(target.body))
    def check(body: Any) -> None:
        content = json.dumps(body, allow_nan=True)
        response = _send(seeded, case.method, _url(case, target), content)
        assert response.status_code < 500, f"{content[:300]} -> {response.status_code}: {response.text[:300]}"
        after = _state(seeded, target.reads)
        before, state["before"] = state["before"], after
        if response.status_code >= 400:
            assert response.json()["error"]["code"]
            assert after == before, f"{content[:300]} was refused but changed the state"

    check()


# -- regressions: what the sweep found --------------------------------------------------------------------


def test_a_trial_is_whole_days_or_months_and_at_most_a_century(seeded: httpx.Client, make: Make) -> None:
    """A trial of 10^9 days was stored and then failed every subscription to the plan with a 500."""
    api = seeded
    plan = make.package("plans", publish=False)
    before = _state(api, _package_reads("plans", plan))
    for duration, units in [(10**9, "DAY"), (36_501, "DAY"), (1_201, "MONTH"), (1e15, "DAY"), (0.5, "DAY")]:
        response = api.patch(
            f"/api/v1/plans/{plan}", json={"defaultTrialConfig": {"duration": duration, "units": units}}
        )
        assert (response.status_code, response.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), response.text
        assert _state(api, _package_reads("plans", plan)) == before
    for duration, units in [(36_500, "DAY"), (1_200, "MONTH")]:
        _ok(api.patch(f"/api/v1/plans/{plan}", json={"defaultTrialConfig": {"duration": duration, "units": units}}))


def test_a_trial_that_would_end_after_year_9999_is_refused_and_nothing_is_written(
    seeded: httpx.Client, make: Make
) -> None:
    api = seeded
    plan = make.package("plans", publish=False)
    _ok(api.patch(f"/api/v1/plans/{plan}", json={"defaultTrialConfig": {"duration": 30, "units": "DAY"}}))
    _ok(api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    customer = make.customer()
    late = "9999-12-20T00:00:00Z"
    refused = api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": plan, "startDate": late})
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), refused.text
    assert "after year 9999" in refused.json()["error"]["message"]
    assert _ok(api.get("/api/v1/subscriptions", params={"customerId": customer})) == []
    # Provisioned with the customer: neither is written.
    newcomer = make.uid("cust")
    body = {"id": newcomer, "subscriptionParams": {"planId": plan, "startDate": late}}
    assert api.post("/api/v1/customers", json=body).status_code == 400
    assert api.get(f"/api/v1/customers/{newcomer}").status_code == 404
    # The same plan still subscribes from an ordinary date.
    _ok(api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": plan}))


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
    before = _state(api, reads)
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
    assert _state(api, reads) == before


def test_a_reused_key_counts_once_or_is_refused_and_a_reused_id_is_a_conflict(seeded: httpx.Client, make: Make) -> None:
    api = seeded
    customer = make.customer(subscriptionParams={"planId": "basic"})
    key = make.uid("key")

    def usage() -> Any:
        entitlements = _ok(api.get(f"/api/v1/customers/{customer}/entitlements"))["entitlements"]
        return next(e["currentUsage"] for e in entitlements if e["feature"]["id"] == "calls")

    report = {"customerId": customer, "featureId": "calls", "value": 3, "idempotencyKey": key}
    _ok(api.post("/api/v1/usage", json={"usages": [report]}))
    _ok(api.post("/api/v2/usage", json={"usages": [report]}))  # the same report again, through v2: once
    _ok(api.post("/api/v1/usage", json={"usages": [report, report]}))  # twice in one batch: once
    assert usage() == 3
    other = api.post("/api/v1/usage", json={"usages": [{**report, "value": 4}]})  # the key, another value
    assert (other.status_code, other.json()["error"]["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    mixed = api.post(
        "/api/v1/usage", json={"usages": [{**report, "idempotencyKey": make.uid("k")}, {**report, "value": 4}]}
    )
    assert mixed.status_code == 409 and usage() == 3, "a refused batch counts none of its reports"
    event = {"customerId": customer, "eventName": "call", "idempotencyKey": key, "dimensions": {"n": 1}}
    assert _ok(api.post("/api/v1/events", json={"events": [event, event]})) == {"new": 1, "duplicates": 1}
    assert _ok(api.post("/api/v1/events", json={"events": [event]})) == {"new": 0, "duplicates": 1}
    # Ids: a second entity with a taken id is a conflict, and the first is untouched.
    for path, body in [
        ("/api/v1/customers", {"id": customer, "name": "Other"}),
        ("/api/v1/plans", {"id": "basic", "displayName": "Other", "productId": "base"}),
        ("/api/v1/features", {"id": "calls", "displayName": "Other", "featureType": "BOOLEAN"}),
        ("/api/v1/coupons", {"id": "c10", "name": "Other", "type": "PERCENTAGE", "percentOff": 50}),
    ]:
        before = _state(api, [f"{path}/{body['id']}"])
        response = api.post(path, json=body)
        assert response.status_code == 409, (path, response.text)
        assert _state(api, [f"{path}/{body['id']}"]) == before
