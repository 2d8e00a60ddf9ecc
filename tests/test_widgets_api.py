"""The widgets' routes (issue 15) on both databases: each answers for the one customer of the token and
refuses any other; a customer's page cannot buy a custom-priced plan, name fields only a backend may
set, nor touch another customer's subscription; nothing is written when refused. Also: the ES module,
the OpenAPI schema and the `/demo` page. (The browser flows are in billing/test_widgets_browser.py.)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from entitle.app import create_app
from entitle.catalog import demo as demo_catalog
from entitle.catalog.demo import PRODUCT_ID as DEMO_PRODUCT
from entitle.catalog.demo import load_catalog
from entitle.catalog.products import service as products
from entitle.catalog.products.schemas import ProductCreate
from entitle.config import Settings, load_settings
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.environments import access
from entitle.environments.models import ApiKey, KeyKind
from entitle.environments.service import ensure_environment
from entitle.sdk.tokens import CUSTOMER_TOKEN_HEADER
from entitle.secrets import secret_box
from entitle.widgets import demo as widgets_demo
from entitle.widgets.demo import DEMO_CUSTOMER
from tests.conftest import LiveServer
from tests.support.tokens import token_for

_ids = itertools.count()
BASE = "/api/v1/widgets/customers"


@pytest.fixture(scope="module")
def shop(module_server: LiveServer) -> LiveServer:
    load_catalog(module_server.db, ensure_environment(module_server.db, "development").pk)
    return module_server


@pytest.fixture(scope="module")
def client_key(shop: LiveServer) -> str:
    return shop.key("development", KeyKind.CLIENT)


@pytest.fixture
def api(shop: LiveServer) -> Iterator[httpx.Client]:
    with shop.http() as client:
        yield client


def new_customer(api: httpx.Client) -> str:
    """A customer as a sign-up makes it: on the demo product's start plan (Free)."""
    ref = f"w-{next(_ids)}"
    answer = api.post("/api/v1/customers", json={"id": ref, "name": ref, "email": f"{ref}@example.com"})
    assert answer.status_code == 200, answer.text
    return ref


def page_of(shop: LiveServer, client_key: str, customer: str) -> httpx.Client:
    """What the customer's browser holds: the public client key and its own token."""
    client = shop.http(client_key)
    client.headers[CUSTOMER_TOKEN_HEADER] = token_for(shop, customer)
    return client


def subscriptions_of(api: httpx.Client, customer: str) -> list[dict[str, Any]]:
    answer = api.get("/api/v1/subscriptions", params={"customerId": customer})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def plans_of(api: httpx.Client, customer: str) -> list[tuple[str, str]]:
    return [(s["planId"], s["status"]) for s in subscriptions_of(api, customer)]


def routes(customer: str, subscription: str = "sub-x") -> list[tuple[str, str, dict[str, Any] | None]]:
    path = f"{BASE}/{customer}"
    return [
        ("GET", path, None),
        ("GET", f"{path}/subscriptions", None),
        ("GET", f"{path}/invoices", None),
        ("POST", f"{path}/preview", {"planId": "pro"}),
        ("POST", f"{path}/setup-intent", None),
        ("POST", f"{path}/payment-method", {"paymentMethodId": "pm_x"}),
        ("POST", f"{path}/subscriptions", {"planId": "pro"}),
        ("POST", f"{path}/subscriptions/{subscription}/cancel", None),
        ("DELETE", f"{path}/subscriptions/{subscription}/future-update/schedule", None),
        ("POST", f"{path}/portal-session", {"returnUrl": "https://app.example.com/account"}),
    ]


def test_every_route_refuses_another_customers_token_and_a_missing_one(
    shop: LiveServer, client_key: str, api: httpx.Client
) -> None:
    alice, bob = new_customer(api), new_customer(api)
    with page_of(shop, client_key, alice) as alices_page, shop.http(client_key) as no_token:
        for method, path, body in routes(bob):
            for client in (alices_page, no_token):
                answer = client.request(method, path, json=body)
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.json()["error"]["code"] == "UNAUTHENTICATED"
        assert alices_page.get(f"{BASE}/{alice}/subscriptions").status_code == 200
    assert plans_of(api, bob) == [("free", "ACTIVE")]  # the start plan only: nothing was bought for bob


def test_another_customers_subscription_is_not_found_and_left_alone(
    shop: LiveServer, client_key: str, api: httpx.Client
) -> None:
    alice, bob = new_customer(api), new_customer(api)
    answer = api.post("/api/v1/subscriptions", json={"customerId": bob, "planId": "pro"})
    assert answer.status_code == 200, answer.text
    bobs = answer.json()["data"]["id"]
    with page_of(shop, client_key, alice) as page:
        for path, method in (
            (f"{BASE}/{alice}/subscriptions/{bobs}/cancel", "POST"),
            (f"{BASE}/{alice}/subscriptions/{bobs}/future-update/schedule", "DELETE"),
            (f"{BASE}/{alice}/subscriptions/no-such-subscription/cancel", "POST"),
        ):
            answer = page.request(method, path)
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "NOT_FOUND"
    (sub,) = [s for s in subscriptions_of(api, bob) if s["id"] == bobs]
    assert sub["cancellationDate"] is None


def test_a_custom_priced_plan_cannot_be_bought_from_a_page(
    shop: LiveServer, client_key: str, api: httpx.Client
) -> None:
    customer = new_customer(api)
    with page_of(shop, client_key, customer) as page:
        answer = page.post(f"{BASE}/{customer}/subscriptions", json={"planId": "enterprise"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "CUSTOM_PRICED_PLAN"
    assert plans_of(api, customer) == [("free", "ACTIVE")]


@pytest.mark.parametrize(
    "extra",
    [
        {"customerId": "someone-else"},
        {"payingCustomerId": "someone-else"},
        {"entitlements": [{"type": "FEATURE", "id": "seats", "usageLimit": 10_000}]},
        {"trialOverrideConfiguration": {"isTrial": True}},
        {"startDate": "2020-01-01T00:00:00Z"},
        {"billingPeriod": "WEEKLY"},
        {"addons": [{"id": "extra-seats", "quantity": -1}]},
    ],
)
def test_fields_a_page_may_not_set_are_refused_and_nothing_is_written(
    shop: LiveServer, client_key: str, api: httpx.Client, extra: dict[str, Any]
) -> None:
    customer = new_customer(api)
    with page_of(shop, client_key, customer) as page:
        answer = page.post(f"{BASE}/{customer}/subscriptions", json={"planId": "pro", **extra})
    assert answer.status_code == 400, answer.text
    # A field a page may not send at all is unknown to the widget's request; a bad value is invalid.
    settable = {"billingPeriod", "addons"}
    assert answer.json()["error"]["code"] == ("INVALID_ARGUMENT" if extra.keys() <= settable else "UNKNOWN_FIELD")
    assert plans_of(api, customer) == [("free", "ACTIVE")]


def test_a_page_previews_subscribes_lists_and_cancels_at_period_end_without_a_provider(
    shop: LiveServer, client_key: str, api: httpx.Client
) -> None:
    customer = new_customer(api)
    choice = {"planId": "pro", "billingPeriod": "ANNUALLY", "addons": [{"id": "extra-seats", "quantity": 2}]}
    with page_of(shop, client_key, customer) as page:
        preview = page.post(f"{BASE}/{customer}/preview", json=choice)
        assert preview.status_code == 200, preview.text
        # The demo's Pro starts with a 14-day trial: nothing due today, then 290 + 2 x 150 a year (dollars).
        assert preview.json()["data"]["immediateInvoice"]["total"] == 0
        assert preview.json()["data"]["recurringInvoice"]["total"] == 590
        assert preview.json()["data"]["scheduledFor"] is None  # a first subscription waits for nothing
        # A promotion code is the billing provider's: with none connected it is refused, not ignored.
        coded = page.post(f"{BASE}/{customer}/preview", json={**choice, "promotionCode": "SPRING"})
        assert coded.status_code == 400 and coded.json()["error"]["code"] == "BILLING_INTEGRATION_REQUIRED"
        # No Stripe connected: no card can be saved (the checkout then says so), and there are no invoices.
        intent = page.post(f"{BASE}/{customer}/setup-intent")
        assert intent.status_code == 409
        assert intent.json()["error"]["code"] == "FAILED_PRECONDITION"
        assert page.get(f"{BASE}/{customer}/invoices").json()["data"] == []

        bought = page.post(f"{BASE}/{customer}/subscriptions", json={**choice, "promotionCode": None})
        assert bought.status_code == 200, bought.text
        data = bought.json()["data"]
        assert data["status"] == "SUCCESS"
        # The demo's Pro has a 14-day trial for a customer that never had one.
        assert (data["subscription"]["planId"], data["subscription"]["status"]) == ("pro", "IN_TRIAL")
        listed = page.get(f"{BASE}/{customer}/subscriptions").json()["data"]
        assert [(s["id"], s["billingPeriod"]) for s in listed] == [(data["id"], "ANNUALLY")]  # Free ended
        assert listed[0]["addons"] == [{"id": "extra-seats", "quantity": 2}]
        # What a year of it costs is the plan's price and its add-ons', as the recurring invoice adds them up.
        assert listed[0]["recurringPrice"] == {"amount": 590, "currency": "usd"}

        canceled = page.post(f"{BASE}/{customer}/subscriptions/{data['id']}/cancel")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["data"]["cancellationDate"] is not None
        assert canceled.json()["data"]["status"] == "IN_TRIAL"  # until the period ends, not at once


# A second product: a flat fee and a per-seat price, each with a German price in euros.
TEAM = {
    "create": {"id": "portal-team", "displayName": "Team", "productId": "portal-team-saas"},
    "entitlements": [{"type": "FEATURE", "id": "seats", "usageLimit": 500}],
    "update": {
        "charges": {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "pricePeriods": [
                        {"billingPeriod": "MONTHLY", "price": {"amount": 12, "currency": "usd"}},
                        {
                            "billingPeriod": "MONTHLY",
                            "billingCountryCode": "DE",
                            "price": {"amount": 11, "currency": "eur"},
                        },
                    ],
                },
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "seats",
                    "pricePeriods": [
                        {"billingPeriod": "MONTHLY", "price": {"amount": 8, "currency": "usd"}},
                        {
                            "billingPeriod": "MONTHLY",
                            "billingCountryCode": "DE",
                            "price": {"amount": 7, "currency": "eur"},
                        },
                    ],
                },
            ],
        }
    },
}


def priced(subscription: dict[str, Any]) -> tuple[str, list[tuple[Any, ...]]]:
    plan = subscription["plan"]
    prices = [
        (p["billingModel"], p["amount"], p["currency"], p["featureUnits"], p["featureUnitsPlural"], p["quantity"])
        for p in plan["prices"]
    ]
    return plan["displayName"], sorted(prices)


def test_the_portal_names_and_prices_every_subscription_whatever_its_product(
    shop: LiveServer, client_key: str, api: httpx.Client
) -> None:
    env_pk = ensure_environment(shop.db, "development").pk
    products.create_product(
        shop.db, env_pk, ProductCreate.model_validate({"id": "portal-team-saas", "displayName": "Team"})
    )
    demo_catalog._package(shop.db, env_pk, "PLAN", TEAM)
    german, overridden = new_customer(api), new_customer(api)
    bodies = [
        (german, {"planId": "pro", "billingPeriod": "MONTHLY", "billingCountryCode": "DE"}),
        (german, {"planId": "portal-team", "billingCountryCode": "DE", "unitQuantity": 3}),
        (overridden, {"planId": "pro", "billingPeriod": "ANNUALLY"}),
        # The subscription's own price replaces its plan's base price; its seat price stays the plan's.
        (
            overridden,
            {"planId": "portal-team", "unitQuantity": 2, "priceOverrides": [{"baseCharge": True, "amount": 9}]},
        ),
    ]
    for customer, body in bodies:
        answer = api.post("/api/v1/subscriptions", json={"customerId": customer, **body})
        assert answer.status_code == 200, answer.text

    expected = {
        german: {
            "pro": ("Pro", [("FLAT_FEE", 27, "eur", None, None, None)]),
            # A per-unit price says how many units the subscription pays for: the portal shows the seats.
            "portal-team": (
                "Team",
                [("FLAT_FEE", 11, "eur", None, None, None), ("PER_UNIT", 7, "eur", "seat", "seats", 3)],
            ),
        },
        overridden: {
            "pro": ("Pro", [("FLAT_FEE", 290, "usd", None, None, None)]),
            "portal-team": (
                "Team",
                [("FLAT_FEE", 9, "usd", None, None, None), ("PER_UNIT", 8, "usd", "seat", "seats", 2)],
            ),
        },
    }
    for customer, plans in expected.items():
        with page_of(shop, client_key, customer) as page:
            listed = page.get(f"{BASE}/{customer}/subscriptions")
        assert listed.status_code == 200, listed.text
        assert {s["planId"]: priced(s) for s in listed.json()["data"]} == plans
        assert all(p["billingPeriod"] == s["billingPeriod"] for s in listed.json()["data"] for p in s["plan"]["prices"])


# A third product, of plans and an add-on the demo product's paywall (the portal page's) does not know.
NAMES_EXTRA = {
    "create": {"id": "names-extra", "displayName": "Extra storage", "productId": "names-saas", "maxQuantity": 5},
    "entitlements": [{"type": "FEATURE", "id": "seats", "usageLimit": 1}],
    "update": {"charges": {"pricingType": "PAID", "pricingModels": [demo_catalog._flat(3, 30)]}},
}


def names_plan(ref: str, name: str, monthly: int) -> dict[str, Any]:
    return {
        "create": {"id": ref, "displayName": name, "productId": "names-saas"},
        "entitlements": [{"type": "FEATURE", "id": "seats", "usageLimit": monthly}],
        "update": {
            "charges": {"pricingType": "PAID", "pricingModels": [demo_catalog._flat(monthly, monthly * 10)]},
            "compatibleAddonIds": ["names-extra"],
        },
    }


@pytest.fixture(scope="module")
def names_product(shop: LiveServer) -> str:
    env_pk = ensure_environment(shop.db, "development").pk
    products.create_product(shop.db, env_pk, ProductCreate.model_validate({"id": "names-saas", "displayName": "N"}))
    demo_catalog._package(shop.db, env_pk, "ADDON", NAMES_EXTRA)
    demo_catalog._package(shop.db, env_pk, "PLAN", names_plan("names-big", "Big", 50))
    demo_catalog._package(shop.db, env_pk, "PLAN", names_plan("names-small", "Small", 20))
    return "names-saas"


def test_the_portal_names_the_plans_and_add_ons_of_scheduled_changes_whatever_their_product(
    shop: LiveServer, client_key: str, api: httpx.Client, names_product: str
) -> None:
    customer = new_customer(api)
    big = {"customerId": customer, "planId": "names-big", "billingPeriod": "MONTHLY"}
    answer = api.post("/api/v1/subscriptions", json={**big, "addons": [{"id": "names-extra", "quantity": 2}]})
    assert answer.status_code == 200, answer.text
    period_end = datetime.fromisoformat(answer.json()["data"]["subscription"]["currentBillingPeriodEnd"])
    # A cheaper plan, with the add-on kept: a downgrade, scheduled for the end of the period.
    small = {**big, "planId": "names-small", "addons": [{"id": "names-extra", "quantity": 1}]}
    # The checkout's preview says when a change that waits takes effect (a cheaper plan, or monthly to a
    # discounted annual price); a change that applies now (Pro, in the demo product) has no such date.
    with page_of(shop, client_key, customer) as page:
        previews = [
            page.post(f"{BASE}/{customer}/preview", json={"planId": plan, "billingPeriod": period})
            for plan, period in [("names-small", "MONTHLY"), ("names-big", "ANNUALLY"), ("pro", "MONTHLY")]
        ]
    assert all(p.status_code == 200 for p in previews), [p.text for p in previews]
    scheduled = [(p.json()["data"]["hasScheduledUpdates"], p.json()["data"]["scheduledFor"]) for p in previews]
    assert [(waits, when and datetime.fromisoformat(when)) for waits, when in scheduled] == [
        (True, period_end),
        (True, period_end),
        (False, None),
    ]
    # Bought from the checkout: the answer is the current subscription, which names the change and its
    # date (the checkout says when it takes effect).
    with page_of(shop, client_key, customer) as page:
        choice = {k: v for k, v in small.items() if k != "customerId"}
        answer = page.post(f"{BASE}/{customer}/subscriptions", json=choice)
    assert answer.status_code == 200 and answer.json()["data"]["isScheduled"], answer.text
    (update,) = answer.json()["data"]["subscription"]["futureUpdates"]
    assert update["targetPackage"]["id"] == "names-small"
    assert datetime.fromisoformat(update["scheduledExecutionTime"]) == period_end

    with page_of(shop, client_key, customer) as page:
        listed = page.get(f"{BASE}/{customer}/subscriptions").json()["data"]
        paywall = page.get("/api/v1/paywall", params={"productId": DEMO_PRODUCT, "customerId": customer})
    (held,) = [s for s in listed if s["planId"] == "names-big"]
    assert [u["targetPackage"]["id"] for u in held["futureUpdates"]] == ["names-small"]
    assert held["planNames"] == {"names-small": "Small"}
    assert held["addonNames"] == {"names-extra": "Extra storage"}
    (free,) = [s for s in listed if s["planId"] == "free"]
    assert (free["planNames"], free["addonNames"]) == ({}, {})
    # Which the page's paywall (of the demo product) could not have told it.
    known = {p["id"] for p in paywall.json()["data"]["plans"]} | {a["id"] for a in paywall.json()["data"]["addons"]}
    assert known.isdisjoint({"names-small", "names-extra"})

    # A draft's new name is not public until it is published.
    assert api.post("/api/v1/plans/names-small/draft").status_code == 200
    answer = api.patch("/api/v1/plans/names-small", json={"displayName": "Small (next year)"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["status"] == "DRAFT"
    with page_of(shop, client_key, customer) as page:
        listed = page.get(f"{BASE}/{customer}/subscriptions").json()["data"]
    assert [s["planNames"] for s in listed if s["planId"] == "names-big"] == [{"names-small": "Small"}]


def preview_total(page: httpx.Client, customer: str, **choice: Any) -> tuple[int, Any, str]:
    answer = page.post(f"{BASE}/{customer}/preview", json={"planId": "pro", "billingPeriod": "MONTHLY", **choice})
    if answer.status_code != 200:
        return answer.status_code, answer.json()["error"]["code"], ""
    recurring = answer.json()["data"]["recurringInvoice"]
    return 200, recurring["total"], recurring["currency"]


def pro_monthly(page: httpx.Client, customer: str, **query: str) -> tuple[Any, Any, Any]:
    data = page.get("/api/v1/paywall", params={"productId": DEMO_PRODUCT, "customerId": customer, **query}).json()
    (pro,) = [p for p in data["data"]["plans"] if p["id"] == "pro"]
    (price,) = [p for p in pro["prices"] if p["billingPeriod"] == "MONTHLY"]
    return data["data"]["billingCountryCode"], price["amount"], price["currency"]


def test_prices_are_those_of_the_customers_country_on_the_paywall_and_in_the_checkout(
    shop: LiveServer, client_key: str, api: httpx.Client, names_product: str
) -> None:
    newcomer, subscriber, elsewhere = new_customer(api), new_customer(api), new_customer(api)
    # A customer without a localized subscription: the country the page asks for, else the default prices.
    with page_of(shop, client_key, newcomer) as page:
        assert pro_monthly(page, newcomer) == (None, 29, "usd")
        assert pro_monthly(page, newcomer, billingCountryCode="DE") == ("DE", 27, "eur")
        assert preview_total(page, newcomer) == (200, 29, "usd")
        assert preview_total(page, newcomer, billingCountryCode="DE") == (200, 27, "eur")

    # Subscribed in Germany: German prices whatever the page asks (Stigg's rule: the subscribed country
    # wins), and a checkout asking for another country is refused rather than repriced.
    with page_of(shop, client_key, subscriber) as page:
        bought = page.post(
            f"{BASE}/{subscriber}/subscriptions",
            json={"planId": "pro", "billingPeriod": "MONTHLY", "billingCountryCode": "DE"},
        )
        assert bought.status_code == 200, bought.text
        assert bought.json()["data"]["subscription"]["billingCountryCode"] == "DE"
        assert pro_monthly(page, subscriber) == ("DE", 27, "eur")
        assert pro_monthly(page, subscriber, billingCountryCode="FR") == ("DE", 27, "eur")
        assert preview_total(page, subscriber, billingPeriod="ANNUALLY") == (200, 290, "usd")  # no German annual
        assert preview_total(page, subscriber) == (200, 27, "eur")
        assert preview_total(page, subscriber, billingCountryCode="de") == (200, 27, "eur")
        assert preview_total(page, subscriber, billingCountryCode="FR") == (400, "BILLING_COUNTRY_MISMATCH", "")
        refused = page.post(
            f"{BASE}/{subscriber}/subscriptions",
            json={"planId": "pro", "billingPeriod": "ANNUALLY", "billingCountryCode": "FR"},
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "BILLING_COUNTRY_MISMATCH"
    assert [s["billingPeriod"] for s in subscriptions_of(api, subscriber) if s["planId"] == "pro"] == ["MONTHLY"]

    # Known from a subscription to another product: that country's prices here too (one customer at the
    # billing provider, one currency).
    answer = api.post(
        "/api/v1/subscriptions",
        json={"customerId": elsewhere, "planId": "names-small", "billingPeriod": "MONTHLY", "billingCountryCode": "DE"},
    )
    assert answer.status_code == 200, answer.text
    with page_of(shop, client_key, elsewhere) as page:
        assert pro_monthly(page, elsewhere) == ("DE", 27, "eur")
        assert preview_total(page, elsewhere) == (200, 27, "eur")


def test_the_module_is_served_and_the_routes_are_in_the_openapi_schema(shop: LiveServer) -> None:
    # The schema of ~100 operations is built on its first request: seconds on a loaded machine.
    with httpx.Client(base_url=shop.base_url, timeout=120) as anyone:
        module = anyone.get("/widgets/v1/entitle.js")
        schema = anyone.get("/openapi.json").json()
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    for name in ("entitle-pricing-table", "entitle-checkout", "entitle-customer-portal"):
        assert f'["{name}",' in module.text
    # Nothing but Stripe.js comes from elsewhere: the module names no other host.
    assert "https://" not in module.text
    paths = {p for p in schema["paths"] if p.startswith(BASE)}
    assert paths == {
        f"{BASE}/{{customer_id}}",
        f"{BASE}/{{customer_id}}/subscriptions",
        f"{BASE}/{{customer_id}}/preview",
        f"{BASE}/{{customer_id}}/setup-intent",
        f"{BASE}/{{customer_id}}/payment-method",
        f"{BASE}/{{customer_id}}/subscriptions/{{subscription_id}}/cancel",
        f"{BASE}/{{customer_id}}/subscriptions/{{subscription_id}}/future-update/schedule",
        f"{BASE}/{{customer_id}}/invoices",
        f"{BASE}/{{customer_id}}/portal-session",
    }
    parameters = schema["paths"][f"{BASE}/{{customer_id}}/subscriptions"]["post"]["parameters"]
    assert "X-CUSTOMER-TOKEN" in {p["name"] for p in parameters}


def _rows(db: Database) -> tuple[int | None, int | None]:
    """Customers and API keys: what preparing the demo makes."""
    with db.read() as s:
        return tuple(s.scalar(select(func.count()).select_from(table)) for table in (Customer, ApiKey))  # type: ignore[return-value]


def test_the_demo_page_only_reads_and_shows_the_three_widgets_once_entitle_demo_prepared_it(
    shop: LiveServer, api: httpx.Client
) -> None:
    """`entitle demo` makes the demo customer, the client key file and the signing secret; the page's GET
    makes nothing (before: it says to run `entitle demo`; after: it shows the widgets)."""
    key_file = shop.data_dir / "demo-development-client-key"
    before = _rows(shop.db)
    with httpx.Client(base_url=shop.base_url, timeout=30) as anyone:
        unprepared = anyone.get("/demo")
        assert unprepared.status_code == 200
        assert "run <code>entitle demo</code>" in unprepared.text and "<entitle-checkout" not in unprepared.text
        assert _rows(shop.db) == before and not key_file.exists()

        widgets_demo.prepare(shop.db, secret_box(shop.data_dir), shop.data_dir, DEMO_PRODUCT)
        prepared = _rows(shop.db)
        assert prepared == (before[0] + 1, before[1] + 1)  # the demo customer and the client key
        widgets_demo.prepare(shop.db, secret_box(shop.data_dir), shop.data_dir, DEMO_PRODUCT)
        assert _rows(shop.db) == prepared  # a second `entitle demo` changes nothing
        page = anyone.get("/demo")
        assert anyone.get("/demo").status_code == 200
    assert _rows(shop.db) == prepared and key_file.read_text().strip()
    assert page.status_code == 200
    for tag in ("<entitle-pricing-table", "<entitle-checkout", "<entitle-customer-portal"):
        assert tag in page.text
    assert 'customer-id="demo-customer"' in page.text
    assert "No Stripe integration is connected" in page.text and "entitle-stripe-emulator" in page.text
    # The demo customer exists, on the product's start plan, and the page's token is good for it only.
    assert [s["planId"] for s in subscriptions_of(api, DEMO_CUSTOMER)] == ["free"]
    token = page.text.split('customer-token="')[1].split('"')[0]
    key = page.text.split('client-key="')[1].split('"')[0]
    assert key == key_file.read_text().strip()
    with httpx.Client(base_url=shop.base_url, headers={"X-API-KEY": key, CUSTOMER_TOKEN_HEADER: token}) as browser:
        assert browser.get(f"{BASE}/{DEMO_CUSTOMER}/subscriptions").status_code == 200
        assert browser.get(f"{BASE}/someone-else/subscriptions").status_code == 401


def test_a_listed_origin_may_post_to_the_widget_routes_only(
    shop: LiveServer, client_key: str, api: httpx.Client
) -> None:
    app = "https://app.example.com"
    customer = new_customer(api)
    access.update_settings(shop.db, "development", allowed_origins=[app])
    try:

        def preflight(path: str, method: str) -> httpx.Response:
            headers = {"Origin": app, "Access-Control-Request-Method": method}
            return httpx.options(f"{shop.base_url}{path}", headers=headers, timeout=30)

        for method in ("POST", "DELETE"):
            answer = preflight(f"{BASE}/{customer}/subscriptions", method)
            assert answer.status_code == 204, answer.text
            assert answer.headers["access-control-allow-origin"] == app
            assert answer.headers["access-control-allow-methods"] == "GET, POST, DELETE"
        assert preflight("/api/v1/subscriptions", "POST").status_code == 403  # elsewhere a client key only reads
        with page_of(shop, client_key, customer) as page:
            answer = page.post(f"{BASE}/{customer}/preview", json={"planId": "pro"}, headers={"Origin": app})
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == app
    finally:
        access.update_settings(shop.db, "development", allowed_origins=[])


def test_a_deployment_serves_the_demo_page_only_when_asked(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/demo` hands any visitor a client key and a customer's token: `entitle serve` serves it only with
    ENTITLE_DEMO_PAGE=on (`make run` sets it); otherwise a 404 that says why, and nothing is made."""
    monkeypatch.delenv("ENTITLE_DEMO_PAGE", raising=False)
    assert load_settings().demo_page is False
    monkeypatch.setenv("ENTITLE_DEMO_PAGE", "on")
    assert load_settings().demo_page is True
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    settings = Settings(database_url=db.url, data_dir=data_dir, console_base_url="http://test", demo_page=False)
    page = TestClient(create_app(settings, db=db)).get("/demo")
    assert page.status_code == 404 and "ENTITLE_DEMO_PAGE=on" in page.text
    assert not list(data_dir.iterdir())  # no client key file written
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Customer)) == 0
