"""A subscription's price override at Stripe (issue 17), against the local Stripe, on SQLite and PostgreSQL:
the subscription is billed at a Price of its own (the catalog price's product, currency and interval at the
deal's amount), its first invoice bills that amount, an update moves it to a new price, and re-sending it
unchanged creates no second price.

Endpoints and who emulates them (tests/support/stripe_emulator.py): Prices (create, retrieve) are the
stand-in's, mirrored as localstripe Plans; Subscriptions and Invoices are localstripe's (one item per
subscription, so the plan bills one charge)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from entitle.jobs.service import Worker
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_charge_kinds import _invoice_total, _plan, _setup
from tests.billing.test_stripe_subscription_sync import connected_with_pro, paying_customer, provision, subscription_row
from tests.billing.test_stripe_update_sync import price_of, stripe_sub
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator


def test_an_overridden_base_charge_is_a_subscription_price_at_stripe_and_on_the_invoice(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)  # plan-pro: 29.99 a month
    paying_customer(api, stripe_emulator)
    ref = provision(
        api, "cust-ada", "plan-pro", billingPeriod="MONTHLY", priceOverrides=[{"baseCharge": True, "amount": 19.5}]
    )
    shown = api.get(f"/api/v1/subscriptions/{ref}").json()["data"]["prices"]
    money = {"baseCharge": True, "amount": 19.5, "currency": "usd", "featureId": None, "addonId": None}
    assert shown == [money | {"creditRate": None}]
    preview = {"customerId": "cust-ada", "planId": "plan-pro", "priceOverrides": [{"baseCharge": True, "amount": 19.5}]}
    previewed = api.post("/api/v1/subscriptions/preview", json=preview).json()["data"]
    assert previewed["recurringInvoice"]["total"] == 19.5
    writes_before = len(stripe_emulator.standin.writes())
    Worker(server.db).drain()

    catalog_price = price_of(server, "plan-pro", 1, "MONTHLY")
    (item,) = stripe_sub(server, stripe_emulator, ref)["items"].data
    assert item.plan.id != catalog_price and item.plan.amount == 1950
    own = stripe_emulator.client().v1.prices.retrieve(item.plan.id)
    base = stripe_emulator.client().v1.prices.retrieve(catalog_price)
    assert (own.unit_amount, own.currency, own.product) == (1950, "usd", base.product)
    assert own.recurring is not None and base.recurring is not None
    assert own.recurring.interval == base.recurring.interval == "month"
    assert own.metadata["entitleBasePrice"] == catalog_price and own.metadata["entitleSubscriptionId"] == ref
    created = [w for w in stripe_emulator.standin.writes()[writes_before:] if w.path == "/v1/prices"]
    assert len(created) == 1
    # The invoice Stripe made for the first period bills the deal's price, as the preview said.
    invoices = list(server.stigg().v1.customers.list_invoices("cust-ada"))
    assert [Decimal(str(i.total)) for i in invoices if i.state == "PAID"] == [Decimal("19.5")]

    # A new override moves the item to a new price of its own; re-sending it unchanged changes nothing.
    assert (
        api.patch(
            f"/api/v1/subscriptions/{ref}", json={"priceOverrides": [{"baseCharge": True, "amount": 25}]}
        ).status_code
        == 200
    )
    Worker(server.db).drain()
    (item,) = stripe_sub(server, stripe_emulator, ref)["items"].data
    assert item.plan.amount == 2500 and item.plan.id not in (catalog_price, own.id)
    prices_before = len([w for w in stripe_emulator.standin.writes() if w.path == "/v1/prices"])
    body = {"priceOverrides": [{"baseCharge": True, "amount": 25}], "metadata": {"deal": "opp-1"}}
    assert api.patch(f"/api/v1/subscriptions/{ref}", json=body).status_code == 200
    Worker(server.db).drain()
    assert len([w for w in stripe_emulator.standin.writes() if w.path == "/v1/prices"]) == prices_before
    (same,) = stripe_sub(server, stripe_emulator, ref)["items"].data
    assert same.plan.id == item.plan.id

    # Back to the list price: the catalog's own price again.
    assert api.patch(f"/api/v1/subscriptions/{ref}", json={"priceOverrides": []}).status_code == 200
    Worker(server.db).drain()
    (item,) = stripe_sub(server, stripe_emulator, ref)["items"].data
    assert (item.plan.id, item.plan.amount) == (catalog_price, 2999)


def test_a_deals_feature_and_base_prices_bill_at_stripe_what_the_preview_says(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """A plan of two prices (a flat fee and a per-seat price), both overridden: two subscription prices at
    Stripe, and its first invoice totals what Entitle's preview of the deal does."""
    connect_stripe(api, stripe_emulator)
    _setup(api)
    seats = {
        "billingModel": "PER_UNIT",
        "featureId": "f-seats",
        "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 5, "currency": "usd"}}],
    }
    base = {"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 100}}]}
    _plan(api, "plan-deal", {"pricingModels": [base, seats]})
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    deal = {
        "billingPeriod": "MONTHLY",
        "charges": [{"id": "f-seats", "quantity": 10, "type": "FEATURE"}],
        "priceOverrides": [{"baseCharge": True, "amount": 80}, {"featureId": "f-seats", "amount": 3.25}],
    }
    preview = api.post("/api/v1/subscriptions/preview", json={"customerId": "cust-ada", "planId": "plan-deal", **deal})
    assert preview.status_code == 200, preview.text
    expected = Decimal(str(preview.json()["data"]["recurringInvoice"]["total"]))
    assert expected == Decimal("112.5")  # 80 + 10 x 3.25, not 100 + 10 x 5
    ref = provision(api, "cust-ada", "plan-deal", **deal)
    Worker(server.db).drain()

    items = stripe_sub(server, stripe_emulator, ref)["items"].data
    assert sorted((item.plan.amount, item.quantity) for item in items) == [(325, 10), (8000, 1)]
    for item in items:
        assert stripe_emulator.client().v1.prices.retrieve(item.plan.id).metadata["entitleSubscriptionId"] == ref
    billing_id = subscription_row(server, ref).billing_id
    assert billing_id is not None and _invoice_total(stripe_emulator, billing_id) == int(expected * 100)
