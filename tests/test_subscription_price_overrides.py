"""`priceOverrides` of a sales-led deal (issue 17), through the official client on both databases: the
subscription's `prices`, the preview and the price rules agree; overrides that name no price of the
subscription are refused with a 400 and write nothing.
(The Stripe side: tests/billing/test_stripe_price_overrides.py; credit rates: tests/test_credit_rate_overrides.py.)"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import stigg
from hypothesis import given
from hypothesis import strategies as st

from entitle.console.overview import overview
from entitle.environments.service import ensure_environment
from entitle.subscriptions import price_rules, pricing
from entitle.subscriptions.schemas import PriceOverride
from tests.conftest import LiveServer


def catalog(client: stigg.Stigg) -> None:
    """Plan `deal`: 100/month (1000/year) flat plus 5 per seat a month; add-on `support` at 30/month."""
    c = client.v1
    c.features.create_feature(id="seats", display_name="Seats", feature_type="NUMBER", meter_type="FLUCTUATING")
    c.products.create_product(id="app", display_name="App")
    c.addons.create(id="support", display_name="Support", product_id="app")
    c.addons.update(
        "support",
        charges={  # type: ignore[arg-type]
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 30, "currency": "usd"}}],
                }
            ],
        },
    )
    c.addons.publish("support", migration_type="NEW_CUSTOMERS")
    c.plans.create(id="deal", display_name="Deal", product_id="app")
    c.plans.update(
        "deal",
        compatible_addon_ids=["support"],
        charges={  # type: ignore[arg-type]
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [
                        {"billing_period": "MONTHLY", "price": {"amount": 100, "currency": "usd"}},
                        {"billing_period": "ANNUALLY", "price": {"amount": 1000, "currency": "usd"}},
                    ],
                },
                {
                    "billing_model": "PER_UNIT",
                    "feature_id": "seats",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 5, "currency": "usd"}}],
                },
            ],
        },
    )
    c.plans.publish("deal", migration_type="NEW_CUSTOMERS")


DEAL = [
    {"base_charge": True, "amount": 80},
    {"feature_id": "seats", "amount": 3.5, "currency": "usd"},
    {"addon_id": "support", "amount": 0},
]


def test_overrides_set_the_subscriptions_prices_and_its_preview(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client
) -> None:
    catalog(client)
    c = client.v1
    c.customers.provision(id="acme")
    seats = [{"id": "seats", "quantity": 10, "type": "FEATURE"}]
    support = [{"id": "support", "quantity": 1}]

    listed = c.subscriptions.preview(customer_id="acme", plan_id="deal", charges=seats, addons=support).data  # type: ignore[arg-type]
    assert listed.recurring_invoice is not None and listed.recurring_invoice.total == 100 + 10 * 5 + 30
    # The preview takes the deal's prices too (our extension), and bills what provisioning will.
    body = {
        "customerId": "acme",
        "planId": "deal",
        "charges": [{"id": "seats", "quantity": 10, "type": "FEATURE"}],
        "addons": support,
        "priceOverrides": [
            {"baseCharge": True, "amount": 80},
            {"featureId": "seats", "amount": 3.5},
            {"addonId": "support", "amount": 0},
        ],
    }
    resp = api.post("/api/v1/subscriptions/preview", json=body)
    assert resp.status_code == 200, resp.text
    previewed = resp.json()["data"]
    assert previewed["recurringInvoice"]["total"] == 80 + 35 + 0
    assert previewed["immediateInvoice"]["total"] == 115
    lines = {
        line["description"]: (line["unitPrice"], line["subTotal"]) for line in previewed["recurringInvoice"]["lines"]
    }
    assert lines == {"Deal": (80, 80), "Deal (seats)": (3.5, 35), "Support": (0, 0)}

    made = c.subscriptions.provision(
        customer_id="acme",
        plan_id="deal",
        id="sub-deal",
        charges=seats,
        addons=support,
        price_overrides=DEAL,  # type: ignore[arg-type]
    ).data
    assert made.subscription is not None
    prices = {(p.base_charge, p.feature_id, p.addon_id): (p.amount, p.currency) for p in made.subscription.prices or []}
    assert prices == {
        (True, None, None): (80, "usd"),
        (None, "seats", None): (3.5, "usd"),
        (None, None, "support"): (0, "usd"),
    }
    again = c.subscriptions.retrieve("sub-deal").data.prices or []
    assert [p.to_dict() for p in again] == [p.to_dict() for p in made.subscription.prices or []]
    # The console's MRR counts what the deal costs, not the list prices (180).
    env_id = ensure_environment(server.db, "development").pk
    assert overview(server.db, env_id).mrr == {"usd": Decimal(115)}

    # An upgrade preview credits the unused part of what the deal costs, not of the list prices.
    c.plans.create(id="bigger", display_name="Bigger", product_id="app")
    c.plans.update(
        "bigger",
        charges={  # type: ignore[arg-type]
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 500, "currency": "usd"}}],
                }
            ],
        },
    )
    c.plans.publish("bigger", migration_type="NEW_CUSTOMERS")
    upgrade = c.subscriptions.preview(customer_id="acme", plan_id="bigger", schedule_strategy="IMMEDIATE").data
    unused = {
        line.description: Decimal(str(line.sub_total))
        for line in upgrade.immediate_invoice.lines or []
        if line.description.startswith("Unused")
    }
    assert set(unused) == {"Unused time on Deal", "Unused time on Deal (seats)", "Unused time on Support"}
    assert unused["Unused time on Support"] == 0 and unused["Unused time on Deal"] < 0
    # Both credits are one share of the same period: of the deal's 80 and 35, not of the list's 100 and 50.
    assert abs(unused["Unused time on Deal"] * 35 - unused["Unused time on Deal (seats)"] * 80) < Decimal("0.5")

    # An update replaces them wholesale; an empty list goes back to the list prices.
    updated = c.subscriptions.update("sub-deal", price_overrides=[{"base_charge": True, "amount": 90}]).data
    assert [(p.base_charge, p.amount) for p in updated.prices or []] == [(True, 90)]
    assert c.subscriptions.update("sub-deal", price_overrides=[]).data.prices is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"featureId": "nope", "amount": 1}, "featureId 'nope'"),
        ({"addonId": "support", "amount": 1}, "addonId 'support'"),  # the subscription has no such add-on
        ({"baseCharge": True, "amount": 1, "currency": "eur"}, "currency eur"),
        ({"baseCharge": True, "amount": 1.001}, "at most 2 decimals"),
        ({"baseCharge": True, "featureId": "seats", "amount": 1}, "exactly one of"),
        ({"amount": 1}, "exactly one of"),
        ({"baseCharge": True, "amount": -1}, "amount"),
    ],
)
def test_an_override_of_no_price_of_the_subscription_is_refused(
    client: stigg.Stigg, api: httpx.Client, override: dict[str, object], field: str
) -> None:
    catalog(client)
    client.v1.customers.provision(id="acme")
    body = {"customerId": "acme", "planId": "deal", "id": "sub-x", "priceOverrides": [override]}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 400, resp.text
    assert field in resp.text
    assert api.get("/api/v1/subscriptions/sub-x").status_code == 404  # nothing written


def test_refused_override_fields_and_duplicates(client: stigg.Stigg, api: httpx.Client) -> None:
    catalog(client)
    client.v1.customers.provision(id="acme")
    base = {"customerId": "acme", "planId": "deal"}
    for extra, code in (
        ({"tiers": [{"upTo": 5}]}, "UNSUPPORTED_FIELD"),
        ({"creditGrantCadence": "MONTHLY"}, "UNSUPPORTED_FIELD"),
        # A credit rate is a featureId's (tests/test_credit_rate_overrides.py), never a base charge's.
        ({"creditRate": {"amount": 1, "currencyId": "tokens"}}, "INVALID_ARGUMENT"),
        ({"billingCountryCode": "de"}, "UNSUPPORTED_FIELD"),
        ({"blockSize": 10}, "UNSUPPORTED_FIELD"),
    ):
        resp = api.post(
            "/api/v1/subscriptions", json=base | {"priceOverrides": [{"baseCharge": True, "amount": 1} | extra]}
        )
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code, resp.text
    twice = [{"baseCharge": True, "amount": 1}, {"baseCharge": True, "amount": 2}]
    resp = api.post("/api/v1/subscriptions", json=base | {"priceOverrides": twice})
    assert resp.status_code == 400 and "overridden twice" in resp.text
    assert client.v1.subscriptions.list(customer_id="acme").data == []

    # A scheduled billing-period change would apply a monthly override to another period: refused.
    sub = client.v1.subscriptions.provision(
        customer_id="acme", plan_id="deal", id="sub-m", price_overrides=[{"base_charge": True, "amount": 80}]
    ).data
    assert sub.subscription is not None
    resp = api.patch("/api/v1/subscriptions/sub-m", json={"billingPeriod": "ANNUALLY"})
    assert resp.status_code == 400 and "IMMEDIATE" in resp.text
    # At once, with the new period's price: honoured.
    yearly = client.v1.subscriptions.update(
        "sub-m",
        billing_period="ANNUALLY",
        schedule_strategy="IMMEDIATE",
        price_overrides=[{"base_charge": True, "amount": 800}],
    ).data
    assert [p.amount for p in yearly.prices or []] == [800]
    assert api.get("/api/v1/subscriptions/sub-m").json()["data"]["billingPeriod"] == "ANNUALLY"
    client.v1.subscriptions.update("sub-m", billing_period="MONTHLY", schedule_strategy="IMMEDIATE", price_overrides=[])
    # Removing the add-on an override prices is refused while the override stays.
    client.v1.subscriptions.update("sub-m", addons=[{"id": "support", "quantity": 1}])
    client.v1.subscriptions.update(
        "sub-m", price_overrides=[{"base_charge": True, "amount": 80}, {"addon_id": "support", "amount": 10}]
    )
    resp = api.patch("/api/v1/subscriptions/sub-m", json={"addons": []})
    assert resp.status_code == 400 and "addonId 'support'" in resp.text
    assert [a.id for a in client.v1.subscriptions.retrieve("sub-m").data.addons or []] == ["support"]


amounts = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False)


@given(base=amounts, unit=st.decimals(min_value=0, max_value=100, places=4), quantity=st.integers(0, 1000))
def test_applied_overrides_price_what_the_invoice_bills(base: Decimal, unit: Decimal, quantity: int) -> None:
    flat = pricing.Price("Deal", "FLAT_FEE", "usd", amount=Decimal(100))
    seats = pricing.Price("Deal (seats)", "PER_UNIT", "usd", amount=Decimal(5), feature_ref="seats")
    tiered = pricing.Price(
        "Deal (calls)", "PER_UNIT", "usd", tiers=(pricing.Tier(None, Decimal(1)),), feature_ref="calls"
    )
    overrides = [
        PriceOverride(base_charge=True, amount=base),
        PriceOverride(feature_id="seats", amount=unit),
    ]
    stored = price_rules.check(overrides, [flat, seats, tiered], {}, "MONTHLY")
    kept = price_rules.amounts(stored)
    lines = [
        line
        for price, qty in ((flat, 1), (seats, quantity), (tiered, quantity))
        if (line := pricing.line_for(price_rules.applied(price, kept), Decimal(qty))) is not None
    ]
    bill = pricing.invoice("usd", lines)
    assert bill.sub_total == pricing.round_money(base + unit * quantity + quantity, "usd")
    # The tiered price keeps its tiers; an override of it is refused.
    with pytest.raises(Exception, match="tiered"):
        price_rules.check([PriceOverride(feature_id="calls", amount=unit)], [tiered], {}, "MONTHLY")
