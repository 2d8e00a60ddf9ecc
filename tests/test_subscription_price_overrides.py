"""`priceOverrides` of a sales-led deal (issue 17), through the official client on both databases: the
subscription's `prices`, the preview and the price rules agree; overrides that name no price of the
subscription are refused with a 400 and write nothing.
(The Stripe side: tests/billing/test_stripe_price_overrides.py; credit rates: tests/test_credit_rate_overrides.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import stigg
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.catalog.packages.models import Package
from entitle.console.overview import overview
from entitle.environments.service import ensure_environment
from entitle.jobs.service import Worker
from entitle.subscriptions import price_rules, pricing
from entitle.subscriptions.models import FutureUpdate, Subscription
from entitle.subscriptions.schemas import PriceOverride
from tests.conftest import LiveServer
from tests.support.clock import TestClock


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


def _flat_only(client: stigg.Stigg, amount: int) -> None:
    """A new version of `deal` without the per-seat price: a seats override has nothing left to replace."""
    client.v1.plans.create_draft("deal")
    client.v1.plans.update(
        "deal",
        charges={  # type: ignore[arg-type]
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": amount, "currency": "usd"}}],
                }
            ],
        },
    )


def _version(server: LiveServer, ref: str) -> int:
    with server.db.read() as s:
        sub = s.scalars(select(Subscription).where(Subscription.ref_id == ref)).one()
        plan = s.get(Package, sub.plan_pk)
        assert plan is not None
        return plan.version_number


def test_a_migration_never_drops_a_price_override_the_new_version_cannot_take(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, test_clock: TestClock
) -> None:
    """Refused (409 naming the override) when asked for one subscription, now or at the period's end; an
    ALL_CUSTOMERS publish leaves that subscription on its version at its price and moves the others; a
    scheduled migration that a later version makes impossible ends FAILED, the subscription unchanged."""
    test_clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    catalog(client)
    c = client.v1
    seats = [{"id": "seats", "quantity": 10, "type": "FEATURE"}]
    for customer, ref, overrides in (
        ("acme", "sub-seats", DEAL[:2]),
        ("globex", "sub-flat", DEAL[:1]),
        ("initech", "sub-later", DEAL[:2]),
    ):
        c.customers.provision(id=customer)
        c.subscriptions.provision(
            customer_id=customer,
            plan_id="deal",
            id=ref,
            charges=seats,  # type: ignore[arg-type]
            price_overrides=overrides,  # type: ignore[arg-type]
        )
    # sub-later asks to move at its period's end (April 1st), while the latest version still fits it.
    c.plans.create_draft("deal")
    c.plans.publish("deal", migration_type="NEW_CUSTOMERS")  # version 2: the same prices
    c.subscriptions.migrate("sub-later", subscription_migration_time="END_OF_BILLING_PERIOD")

    _flat_only(client, 120)
    c.plans.publish("deal", migration_type="NEW_CUSTOMERS")  # version 3: no seats price
    for when in ("IMMEDIATE", "END_OF_BILLING_PERIOD"):
        resp = api.post("/api/v1/subscriptions/sub-seats/migrate", json={"subscriptionMigrationTime": when})
        assert resp.status_code == 409, resp.text
        assert "version 3" in resp.text and "featureId 'seats'" in resp.text
    assert _version(server, "sub-seats") == 1
    assert api.get("/api/v1/subscriptions/sub-seats").json()["data"]["futureUpdates"] == []
    moved = c.subscriptions.migrate("sub-flat", subscription_migration_time="IMMEDIATE").data
    assert [(p.base_charge, p.amount) for p in moved.prices or []] == [(True, 80)]
    assert _version(server, "sub-flat") == 3

    # At the period's end the scheduled move finds version 3 cannot take the seats override: FAILED.
    test_clock.set(datetime(2026, 4, 1, 0, 1, tzinfo=UTC))
    Worker(server.db).drain()
    assert _version(server, "sub-later") == 1
    with server.db.read() as s:
        statuses = s.scalars(
            select(FutureUpdate.schedule_status).where(FutureUpdate.schedule_type == "MIGRATE_TO_LATEST")
        )
        assert list(statuses) == ["FAILED"]

    # Publishing to all customers moves what fits and leaves the deals it would reprice where they are.
    _flat_only(client, 130)
    c.plans.publish("deal", migration_type="ALL_CUSTOMERS")  # version 4
    Worker(server.db).drain()
    versions = {ref: _version(server, ref) for ref in ("sub-seats", "sub-flat", "sub-later")}
    assert versions == {"sub-seats": 1, "sub-flat": 4, "sub-later": 1}
    kept = c.subscriptions.retrieve("sub-seats").data.prices or []
    assert [(p.base_charge, p.feature_id, p.amount) for p in kept] == [(True, None, 80), (None, "seats", 3.5)]

    # Once its overrides fit, the deal moves.
    c.subscriptions.update("sub-seats", price_overrides=DEAL[:1])  # type: ignore[arg-type]
    c.subscriptions.migrate("sub-seats", subscription_migration_time="IMMEDIATE")
    assert _version(server, "sub-seats") == 4
