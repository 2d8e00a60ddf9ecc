"""GET /api/v1/paywall against the demo-like catalog: plans cheapest first, prices per period and
country, inherited entitlements, add-ons, and the customer's current plan."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stigg
from hypothesis import given
from hypothesis import strategies as st

from entitle.catalog.packages.models import PackageCharge
from entitle.environments.models import KeyKind
from entitle.paywall import rules
from entitle.subscriptions.preview import charges_for_country
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.tokens import browser
from tests.test_core_path import build_catalog


def extend_catalog(client: stigg.Stigg) -> None:
    """build_catalog's free and pro, plus: business (based on pro, monthly, annual and a German
    price, a trial), enterprise (custom), an add-on for pro and business, a second product."""
    plans = client.v1.plans
    addons = client.v1.addons
    addons.create(id="extra-seats", display_name="Extra seats", product_id="main", max_quantity=10)
    addons.entitlements.create("extra-seats", entitlements=[{"type": "FEATURE", "id": "seats", "usage_limit": 5}])
    addons.update(
        "extra-seats",
        charges={  # type: ignore[arg-type]
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 5, "currency": "usd"}}],
                }
            ],
        },
    )
    addons.publish("extra-seats", migration_type="NEW_CUSTOMERS")
    plans.create(
        id="business",
        display_name="Business",
        product_id="main",
        parent_plan_id="pro",
        description="For teams",
        default_trial_config={"duration": 14, "units": "DAY"},
    )
    plans.entitlements.create(
        "business",
        entitlements=[
            {"type": "FEATURE", "id": "seats", "usage_limit": 50, "display_name_override": "50 seats"},
            {"type": "FEATURE", "id": "api-calls", "has_unlimited_usage": True},
        ],
    )
    plans.update(
        "business",
        compatible_addon_ids=["extra-seats"],
        charges={
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [
                        {"billing_period": "MONTHLY", "price": {"amount": 49.5, "currency": "usd"}},
                        {"billing_period": "ANNUALLY", "price": {"amount": 490, "currency": "usd"}},
                        {
                            "billing_period": "MONTHLY",
                            "billing_country_code": "DE",
                            "price": {"amount": 45, "currency": "eur"},
                        },
                    ],
                }
            ],
        },
    )
    plans.publish("business", migration_type="NEW_CUSTOMERS")
    plans.create(id="enterprise", display_name="Enterprise", product_id="main", pricing_type="CUSTOM")
    plans.entitlements.create(
        "enterprise",
        entitlements=[
            {"type": "FEATURE", "id": "sso"},
            {"type": "FEATURE", "id": "seats", "usage_limit": 1000, "hidden_from_widgets": ["PAYWALL"]},
        ],
    )
    plans.publish("enterprise", migration_type="NEW_CUSTOMERS")

    plans.create_draft("pro")
    plans.update("pro", compatible_addon_ids=["extra-seats"])
    plans.publish("pro", migration_type="NEW_CUSTOMERS")

    client.v1.products.create_product(id="other", display_name="Other")
    plans.create(id="other-free", display_name="Other free", product_id="other", pricing_type="FREE")
    plans.publish("other-free", migration_type="NEW_CUSTOMERS")
    plans.create(id="draft-only", display_name="Never published", product_id="main")


def paywall(api: httpx.Client, **params: str) -> dict[str, Any]:
    response = api.get("/api/v1/paywall", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


def test_paywall_of_a_product(server: LiveServer, client: stigg.Stigg, api: httpx.Client) -> None:
    build_catalog(client)
    extend_catalog(client)
    data = paywall(api, productId="main")

    assert [(p["id"], p["order"], p["pricingType"]) for p in data["plans"]] == [
        ("free", 0, "FREE"),
        ("pro", 1, "PAID"),
        ("business", 2, "PAID"),
        ("enterprise", 3, "CUSTOM"),
    ]
    assert data["customer"] is None
    plans = by_id(data["plans"])
    assert plans["pro"]["versionNumber"] == 2  # the latest published version

    business = plans["business"]
    assert (business["basePlanId"], business["description"], business["productId"]) == ("pro", "For teams", "main")
    assert business["trial"] == {"duration": 14, "units": "DAY"}
    assert sorted(
        (p["billingPeriod"], p["amount"], p["currency"], p["billingCountryCode"]) for p in business["prices"]
    ) == [
        ("ANNUALLY", 490, "usd", None),
        ("MONTHLY", 49.5, "usd", None),
    ]
    assert business["compatibleAddonIds"] == ["extra-seats"]

    ents = {e["featureId"]: e for e in business["entitlements"]}
    assert set(ents) == {"seats", "api-calls", "sso", "tokens"}
    assert (ents["seats"]["usageLimit"], ents["seats"]["isInherited"], ents["seats"]["displayNameOverride"]) == (
        50,
        False,
        "50 seats",
    )
    assert ents["api-calls"]["hasUnlimitedUsage"] is True and ents["api-calls"]["isInherited"] is False
    assert (ents["sso"]["isInherited"], ents["sso"]["featureType"], ents["sso"]["displayName"]) == (
        True,
        "BOOLEAN",
        "SSO",
    )
    assert (ents["tokens"]["usageLimit"], ents["tokens"]["resetPeriod"], ents["tokens"]["isInherited"]) == (
        500,
        "MONTH",
        True,
    )

    free = plans["free"]
    assert free["prices"] == [] and free["trial"] is None and free["basePlanId"] is None
    assert {e["featureId"]: e["usageLimit"] for e in free["entitlements"]} == {"seats": 1, "api-calls": 100}

    # Hidden from the paywall widget: not listed.
    assert [e["featureId"] for e in plans["enterprise"]["entitlements"]] == ["sso"]

    [addon] = data["addons"]
    assert (addon["id"], addon["maxQuantity"], addon["pricingType"]) == ("extra-seats", 10, "PAID")
    assert addon["compatiblePlanIds"] == ["pro", "business"]
    assert [(p["billingPeriod"], p["amount"]) for p in addon["prices"]] == [("MONTHLY", 5)]
    assert [(e["featureId"], e["usageLimit"], e["isInherited"]) for e in addon["entitlements"]] == [("seats", 5, False)]


def test_country_prices(server: LiveServer, client: stigg.Stigg, api: httpx.Client) -> None:
    build_catalog(client)
    extend_catalog(client)
    business = by_id(paywall(api, productId="main", billingCountryCode="DE")["plans"])["business"]
    assert sorted(
        (p["billingPeriod"], p["amount"], p["currency"], p["billingCountryCode"]) for p in business["prices"]
    ) == [
        ("ANNUALLY", 490, "usd", None),  # no German annual price: the default one
        ("MONTHLY", 45, "eur", "DE"),
    ]
    pro = by_id(paywall(api, productId="main", billingCountryCode="FR")["plans"])["pro"]
    assert [(p["billingPeriod"], p["amount"], p["currency"]) for p in pro["prices"]] == [("MONTHLY", 10, "usd")]
    # Which country the prices are for (no French price: the default ones); none asked, none.
    assert paywall(api, productId="main", billingCountryCode="FR")["billingCountryCode"] == "FR"
    assert paywall(api, productId="main")["billingCountryCode"] is None


def test_every_product_without_a_product_id(server: LiveServer, client: stigg.Stigg, api: httpx.Client) -> None:
    build_catalog(client)
    extend_catalog(client)
    data = paywall(api)
    assert sorted((p["productId"], p["order"], p["id"]) for p in data["plans"]) == [
        ("main", 0, "free"),
        ("main", 1, "pro"),
        ("main", 2, "business"),
        ("main", 3, "enterprise"),
        ("other", 0, "other-free"),
    ]


def test_the_customers_current_plan(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, test_clock: TestClock
) -> None:
    build_catalog(client)
    extend_catalog(client)
    client.v1.customers.provision(id="acme")
    assert paywall(api, productId="main", customerId="acme")["customer"] == {
        "id": "acme",
        "currentPlanId": None,
        "currentSubscriptionId": None,
        "billingPeriod": None,
        "status": None,
        "trialEndDate": None,
        "addonIds": [],
    }
    sub = client.v1.subscriptions.provision(customer_id="acme", plan_id="business", billing_period="MONTHLY").data
    assert sub.subscription is not None
    customer = paywall(api, productId="main", customerId="acme")["customer"]
    assert (customer["currentPlanId"], customer["currentSubscriptionId"], customer["billingPeriod"]) == (
        "business",
        sub.subscription.id,
        "MONTHLY",
    )
    assert customer["status"] == "IN_TRIAL"
    assert customer["trialEndDate"].startswith((test_clock.now() + timedelta(days=14)).date().isoformat())

    # Another product: the customer has no plan there.
    assert paywall(api, productId="other", customerId="acme")["customer"]["currentPlanId"] is None

    # A client key (the one in the browser) may read the paywall too: the customer's part with that
    # customer's token only; the plans without any.
    with browser(server, "acme") as page:
        response = page.get("/api/v1/paywall", params={"productId": "main", "customerId": "acme"})
        assert response.status_code == 200
        assert response.json()["data"]["customer"]["currentPlanId"] == "business"
    with server.http(server.key(kind=KeyKind.CLIENT)) as anonymous_page:
        response = anonymous_page.get("/api/v1/paywall", params={"productId": "main", "customerId": "acme"})
        assert (response.status_code, response.json()["error"]["code"]) == (401, "UNAUTHENTICATED")
        response = anonymous_page.get("/api/v1/paywall", params={"productId": "main"})
        assert response.status_code == 200 and response.json()["data"]["customer"] is None


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"productId": "nope"}, 404, "NOT_FOUND"),
        ({"productId": "main", "customerId": "nobody"}, 404, "NOT_FOUND"),
        ({"productId": ""}, 400, None),
    ],
)
def test_bad_queries(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, params: dict[str, str], status: int, code: str | None
) -> None:
    build_catalog(client)
    response = api.get("/api/v1/paywall", params=params)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"]["code"] == code


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["FLAT_FEE", "PER_UNIT"]),
            st.sampled_from(["MONTHLY", "ANNUALLY"]),
            st.sampled_from([None, "DE", "de", "FR"]),
            st.booleans(),
        ),
        max_size=12,
    ),
    st.sampled_from([None, "DE", "FR", "US"]),
)
def test_country_rule(prices: list[tuple[str, str, str | None, bool]], country: str | None) -> None:
    """The subscriptions' rule the paywall, the preview and the billing sync share."""
    charges = [
        PackageCharge(billing_model=model, billing_period=period, billing_country_code=c, is_overage=overage)
        for model, period, c, overage in prices
    ]
    chosen = [
        (c.billing_model, c.billing_period, c.billing_country_code, c.is_overage)
        for c in charges_for_country(charges, country)
    ]

    def same(c: str | None) -> bool:
        return c is not None and country is not None and c.upper() == country.upper()

    own = {(m, p, o) for m, p, c, o in prices if same(c)}
    defaults = {(m, p, o) for m, p, c, o in prices if c is None}
    # One price per default price or price of that country; the country's own wins; no other country's.
    assert sorted((m, p, o) for m, p, _, o in chosen) == sorted(defaults | own)
    for model, period, c, overage in chosen:
        assert same(c) if (model, period, overage) in own else c is None


def test_plan_order_rule() -> None:
    keys = {
        "custom": rules.plan_sort_key("CUSTOM", None, 1, 1),
        "annual": rules.plan_sort_key("PAID", rules.monthly_equivalent([("ANNUALLY", Decimal(120))]), 1, 2),
        "monthly": rules.plan_sort_key("PAID", rules.monthly_equivalent([("MONTHLY", Decimal(11))]), 1, 3),
        "free": rules.plan_sort_key("FREE", None, 1, 4),
    }
    assert sorted(keys, key=keys.__getitem__) == ["free", "annual", "monthly", "custom"]
