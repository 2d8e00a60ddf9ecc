"""Credit charges (a plan's CREDIT_BASED price of no feature, with a grant cadence: each unit grants
`creditRate.amount` credits per grant period and costs the price) at the billing provider, on SQLite and
PostgreSQL: the charge is synced to Stripe as a per-unit price, a subscription buying N units with
`charges [{type: CREDIT}]` is billed N units (Stripe's first invoice equals Entitle's preview) and granted
N x the rate's credits; a credit rate (a feature's usage paid in credits) and a free credit charge stay
out of the provider, each with its reason. Stripe is the local emulator (tests/support/stripe_emulator.py)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from entitle.billing import rules
from entitle.billing.models import NO_SYNC_REQUIRED, PACKAGE_CHARGE, SUBSCRIPTION, SUCCESS
from entitle.jobs.service import Worker
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_catalog_sync import flat, link_of, version
from tests.billing.test_stripe_charge_kinds import _invoice_total, _plan, _setup
from tests.billing.test_stripe_subscription_sync import (
    paying_customer,
    provision,
    stripe_subscriptions,
    subscription_row,
)
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

CREDIT_PACK = {
    "billingModel": "CREDIT_BASED",
    "pricePeriods": [
        flat("MONTHLY", 0.5) | {"creditRate": {"amount": 100, "currencyId": "credits"}, "creditGrantCadence": "MONTHLY"}
    ],
}
TOKENS_IN_CREDITS = {
    "billingModel": "CREDIT_BASED",
    "featureId": "f-tokens",
    "pricePeriods": [{"billingPeriod": "MONTHLY", "creditRate": {"amount": 2, "currencyId": "credits"}}],
}


def test_a_credit_charge_is_billed_per_unit_and_grants_per_unit(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    _setup(api)
    currency = api.post("/api/v1/credits/custom-currencies", json={"id": "credits", "displayName": "Credits"})
    assert currency.status_code == 200, currency.text
    free_pack = {
        "billingModel": "CREDIT_BASED",
        "pricePeriods": [
            {
                "billingPeriod": "MONTHLY",
                "creditRate": {"amount": 5, "currencyId": "bonus"},
                "creditGrantCadence": "MONTHLY",
            }
        ],
    }
    _plan(api, "plan-packs", {"pricingModels": [CREDIT_PACK, TOKENS_IN_CREDITS]})
    _plan(
        api,
        "plan-free-pack",
        {"pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": [flat("MONTHLY", 1)]}, free_pack]},
    )
    Worker(server.db).drain()

    _, charges = version(server, "plan-packs", 1)
    _, free_charges = version(server, "plan-free-pack", 1)
    by = {(c.feature_ref, c.credit_rate_currency_ref): c for c in charges + free_charges}
    pack_link = link_of(server, PACKAGE_CHARGE, by[(None, "credits")].pk)
    assert pack_link is not None and pack_link.sync_state == SUCCESS and pack_link.billing_id, pack_link
    price = stripe_emulator.client().v1.prices.retrieve(pack_link.billing_id)
    assert (price.billing_scheme, price.unit_amount, price.recurring.usage_type) == ("per_unit", 50, "licensed")
    for key, reason in (
        (("f-tokens", "credits"), rules.CREDIT_RATE_NOT_BILLED),
        ((None, "bonus"), rules.FREE_CREDITS_NOT_BILLED),
    ):
        link = link_of(server, PACKAGE_CHARGE, by[key].pk)
        assert link is not None and (link.sync_state, link.reason) == (NO_SYNC_REQUIRED, reason)

    paying_customer(api, stripe_emulator)
    bought = [{"id": "credits", "quantity": 3, "type": "CREDIT"}]
    preview = api.post(
        "/api/v1/subscriptions/preview",
        json={"customerId": "cust-ada", "planId": "plan-packs", "billingPeriod": "MONTHLY", "charges": bought},
    )
    assert preview.status_code == 200, preview.text
    lines = preview.json()["data"]["recurringInvoice"]["lines"]
    assert [(line["quantity"], line["unitPrice"]) for line in lines] == [(3, 0.5)]
    provision(api, "cust-ada", "plan-packs", billingPeriod="MONTHLY", charges=bought)
    Worker(server.db).drain()

    sub = subscription_row(server, "sub-cust-ada-plan-packs")
    link = link_of(server, SUBSCRIPTION, sub.pk)
    assert link is not None and link.sync_state == SUCCESS, link and link.reason
    (stripe_sub,) = [s for s in stripe_subscriptions(stripe_emulator) if s.id == sub.billing_id]
    (item,) = stripe_sub["items"].data
    assert (item.plan.id, item.quantity) == (pack_link.billing_id, 3)
    assert _invoice_total(stripe_emulator, str(sub.billing_id)) == 150
    assert Decimal(str(preview.json()["data"]["recurringInvoice"]["total"])) == Decimal("1.5")

    def balance(currency_id: str) -> Decimal:
        params = {"currencyId": currency_id}
        check = api.get("/api/v1/customers/cust-ada/entitlements/check", params=params).json()["data"]
        return Decimal(str(check["usageLimit"])) - Decimal(str(check["currentUsage"]))

    assert balance("credits") == 300  # 3 units of 100 credits

    # Buying more units mid-period grants the difference at once and bills the new quantity.
    more = api.patch(
        "/api/v1/subscriptions/sub-cust-ada-plan-packs",
        json={"charges": [{"id": "credits", "quantity": 5, "type": "CREDIT"}]},
    )
    assert more.status_code == 200, more.text
    Worker(server.db).drain()
    assert balance("credits") == 500
    (stripe_sub,) = [s for s in stripe_subscriptions(stripe_emulator) if s.id == sub.billing_id]
    assert [i.quantity for i in stripe_sub["items"].data] == [5]


def test_credit_charges_a_plan_does_not_have_or_in_parts_of_a_unit_are_refused(
    server: LiveServer, api: httpx.Client
) -> None:
    _setup(api)
    assert api.post("/api/v1/credits/custom-currencies", json={"id": "credits", "displayName": "C"}).is_success
    _plan(api, "plan-packs", {"pricingModels": [CREDIT_PACK]})
    api.post("/api/v1/customers", json={"id": "cust-ada"})
    for charges, words in (
        ([{"id": "other", "quantity": 1, "type": "CREDIT"}], "no credit charge in currency 'other'"),
        ([{"id": "credits", "quantity": 1.5, "type": "CREDIT"}], "whole units"),
    ):
        for path in ("/api/v1/subscriptions", "/api/v1/subscriptions/preview"):
            body = {"customerId": "cust-ada", "planId": "plan-packs", "billingPeriod": "MONTHLY", "charges": charges}
            refused = api.post(path, json=body)
            assert refused.status_code == 400, refused.text
            assert words in refused.json()["error"]["message"]
    listed = api.get("/api/v1/subscriptions", params={"customerId": "cust-ada"})
    assert listed.json()["data"] == []
