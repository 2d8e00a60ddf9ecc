"""Rules of the subscription sync that had no test: a subscription keeps the Stripe price it was created
with when a later plan version changes the price; custom-priced subscriptions are not synced;
`syncCustomers=false` creates no Stripe customer; an add-on is one more Stripe subscription item. Against
the local Stripe (or real Stripe test mode, see tests/billing/conftest.py), on SQLite and PostgreSQL.

Endpoints and who emulates them (tests/support/stripe_emulator.py): Products, Customers, Payment Methods and
Subscriptions are localstripe's (with several items: the emulator's boot patch adds what localstripe lacks);
Prices the stand-in's, mirrored as localstripe Plans. The add-on test checks the items Entitle *sent* in its
`POST /v1/subscriptions`, from the stand-in's request log (`writes()`, each with its decoded form), and the
subscription Stripe made of them; it runs against the emulator only.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from entitle.billing import subscription_sync
from entitle.billing.models import CUSTOMER, NO_SYNC_REQUIRED, PACKAGE_CHARGE, SUBSCRIPTION, SUCCESS
from entitle.jobs.service import Worker
from tests.billing.conftest import card_customer, card_payment_method, connect_stripe
from tests.billing.test_stripe_catalog_sync import (
    by_period,
    flat,
    link_of,
    make_plan,
    publish_plan,
    set_prices,
    version,
)
from tests.billing.test_stripe_subscription_sync import customer_row, emulated, jobs_of, provision, subscription_row
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator


def stripe_items(emulator: StripeEmulator, billing_id: str | None) -> list[tuple[str, int | None]]:
    """(price id, quantity) of each item of a Stripe subscription (localstripe's items name the plan)."""
    assert billing_id is not None
    found = emulator.client().v1.subscriptions.retrieve(billing_id)
    items = []
    for item in found.to_dict()["items"]["data"]:
        price = item.get("price") or item.get("plan")
        items.append((str(price["id"]), item.get("quantity")))
    return items


def customers_with(emulator: StripeEmulator, email: str) -> list[Any]:
    return list(emulator.client().v1.customers.list(params={"email": email, "limit": 100}).data)


def price_of(server: LiveServer, plan: str, number: int, period: str = "MONTHLY", kind: str = "PLAN") -> str:
    _, charges = version(server, plan, number, kind)
    link = link_of(server, PACKAGE_CHARGE, by_period(charges)[period].pk)
    assert link is not None and link.billing_id is not None
    return link.billing_id


def test_a_subscription_keeps_its_stripe_price_when_a_new_version_changes_the_price(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    make_plan(api)
    Worker(server.db).drain()
    card_customer(api, stripe_emulator, "cust-early")
    early = provision(api, "cust-early", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    v1_price = price_of(server, "plan-pro", 1)
    early_billing = subscription_row(server, early).billing_id
    assert stripe_items(stripe_emulator, early_billing) == [(v1_price, 1)]

    # Version 2 costs more, for new customers.
    assert api.post("/api/v1/plans/plan-pro/draft").status_code == 200
    set_prices(api, "plan-pro", [flat("MONTHLY", "39.99"), flat("ANNUALLY", 299)])
    publish_plan(api, "plan-pro")
    Worker(server.db).drain()
    v2_price = price_of(server, "plan-pro", 2)
    assert v2_price != v1_price
    client = stripe_emulator.client()
    assert client.v1.prices.retrieve(v2_price).unit_amount == 3999

    # The existing subscription still bills the price it was created with (no update was sent to it) ...
    assert stripe_items(stripe_emulator, early_billing) == [(v1_price, 1)]
    assert subscription_row(server, early).plan_pk == version(server, "plan-pro", 1)[0].pk
    assert jobs_of(server, subscription_sync.UPDATE_SUBSCRIPTION_JOB) == []
    # ... while a new subscription gets the new one.
    card_customer(api, stripe_emulator, "cust-late")
    late = provision(api, "cust-late", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    assert stripe_items(stripe_emulator, subscription_row(server, late).billing_id) == [(v2_price, 1)]
    assert subscription_row(server, late).status == "ACTIVE"


def test_a_custom_priced_subscription_is_not_synced(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    body = {"id": "plan-enterprise", "displayName": "Enterprise", "productId": "acme"}
    assert api.post("/api/v1/plans", json=body).status_code == 200
    resp = api.patch("/api/v1/plans/plan-enterprise", json={"charges": {"pricingType": "CUSTOM"}})
    assert resp.status_code == 200, resp.text
    publish_plan(api, "plan-enterprise")
    Worker(server.db).drain()
    card_customer(api, stripe_emulator, "cust-big")
    resp = api.post(
        "/api/v1/subscriptions", json={"customerId": "cust-big", "planId": "plan-enterprise", "id": "sub-big"}
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert (data["status"], data["subscription"]["status"]) == ("SUCCESS", "ACTIVE")  # nothing waits for Stripe

    assert Worker(server.db).drain() == 0
    sub = subscription_row(server, "sub-big")
    link = link_of(server, SUBSCRIPTION, sub.pk)
    assert link is not None and link.sync_state == NO_SYNC_REQUIRED
    assert link.reason == "custom-priced subscription: billed outside the provider"
    assert sub.billing_id is None and jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB) == []
    assert customer_row(server, "cust-big").billing_id is None
    if emulated(stripe_emulator):  # real Stripe test mode keeps earlier runs' customers
        assert customers_with(stripe_emulator, "cust-big@example.com") == []


def test_sync_customers_off_creates_no_stripe_customer(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator, syncCustomers=False)
    make_plan(api)
    Worker(server.db).drain()
    # Billing information passed: with customer sync on it would sync the customer on its own; off, the
    # integration cannot take it (it is forwarded, never kept), so it is refused.
    card_customer(api, stripe_emulator, "cust-ada")
    passthrough = {"passthrough": {"stripe": {}}}
    refused = api.patch("/api/v1/customers/cust-ada", json=passthrough)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "BILLING_INTEGRATION_REQUIRED"
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    assert Worker(server.db).drain() == 0  # no customer sync, no subscription sync
    if emulated(stripe_emulator):
        assert customers_with(stripe_emulator, "cust-ada@example.com") == []
    ada = customer_row(server, "cust-ada")
    assert ada.billing_id is None
    sub_link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert sub_link is not None and sub_link.sync_state == NO_SYNC_REQUIRED
    assert sub_link.reason == "customer sync is turned off and the customer has no billingId"
    assert subscription_row(server, ref).status == "ACTIVE"  # not billed by Stripe: nothing to wait for
    customer_link = link_of(server, CUSTOMER, ada.pk)
    assert customer_link is None or customer_link.sync_state == NO_SYNC_REQUIRED

    # A customer the application linked to its own Stripe customer (billingId) is billed on that one.
    method = card_payment_method(stripe_emulator)
    own: Any = stripe_emulator.client().v1.customers.create(
        params={
            "email": "cust-bob@example.com",
            "payment_method": method,
            "invoice_settings": {"default_payment_method": method},
        }
    )
    body = {
        "id": "cust-bob",
        "email": "cust-bob@example.com",
        "billingId": own.id,
        "defaultPaymentMethod": {"billingId": method, "type": "CARD"},
    }
    assert api.post("/api/v1/customers", json=body).status_code == 200
    bob = provision(api, "cust-bob", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    bob_sub = subscription_row(server, bob)
    assert bob_sub.billing_id is not None
    assert stripe_emulator.client().v1.subscriptions.retrieve(bob_sub.billing_id).customer == own.id
    assert customer_row(server, "cust-bob").billing_id == own.id
    if emulated(stripe_emulator):
        assert [c.id for c in customers_with(stripe_emulator, "cust-bob@example.com")] == [own.id]  # none made


@pytest.mark.emulator_only  # the request log is the emulator's
def test_an_add_on_becomes_one_more_subscription_item(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    make_plan(api, publish=False)
    body = {"id": "addon-seats", "displayName": "Seats", "productId": "acme"}
    assert api.post("/api/v1/addons", json=body).status_code == 200
    set_prices(api, "addon-seats", [flat("MONTHLY", 5), flat("ANNUALLY", 50)], path="addons")
    publish_plan(api, "addon-seats", path="addons")
    resp = api.patch("/api/v1/plans/plan-pro", json={"compatibleAddonIds": ["addon-seats"]})
    assert resp.status_code == 200, resp.text
    publish_plan(api, "plan-pro")
    Worker(server.db).drain()
    plan_price = price_of(server, "plan-pro", 1)
    addon_price = price_of(server, "addon-seats", 1, "MONTHLY", "ADDON")
    card_customer(api, stripe_emulator, "cust-ada")
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY", addons=[{"id": "addon-seats", "quantity": 3}])
    Worker(server.db).drain()

    (create,) = [w for w in stripe_emulator.standin.writes() if w.path == "/v1/subscriptions"]
    assert create.params is not None
    sent = sorted((item["price"], int(item["quantity"])) for item in create.params["items"])
    assert sent == sorted([(plan_price, 1), (addon_price, 3)])  # the plan's monthly fee, the add-on times 3
    assert create.params["metadata"]["entitleSubscriptionId"] == ref
    # Stripe made one subscription of both items, charged the first invoice for both, and it is ACTIVE.
    assert create.status == 200
    row = subscription_row(server, ref)
    link = link_of(server, SUBSCRIPTION, row.pk)
    assert link is not None and link.sync_state == SUCCESS and row.status == "ACTIVE"
    stripe_sub = stripe_emulator.client().v1.subscriptions.retrieve(str(row.billing_id))
    held = sorted((item["plan"]["id"], item["quantity"]) for item in stripe_sub["items"]["data"])
    assert held == sorted([(plan_price, 1), (addon_price, 3)])
    invoice = stripe_emulator.client().v1.invoices.retrieve(str(stripe_sub.latest_invoice))
    assert (invoice.status, invoice.amount_paid) == ("paid", 2999 + 3 * 500)


@pytest.mark.emulator_only  # the request log is the emulator's
def test_a_countrys_own_price_replaces_only_the_price_it_stands_for(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """Stripe bills what the preview priced (one rule, `subscriptions.preview.charges_for_country`): a
    German flat fee replaces the default one; the seat price, which has no German price, is billed still."""
    connect_stripe(api, stripe_emulator)
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    body = {"id": "seats", "displayName": "Seats", "featureType": "NUMBER", "meterType": "FLUCTUATING"}
    assert api.post("/api/v1/features", json=body).status_code == 200
    assert (
        api.post("/api/v1/plans", json={"id": "plan-de", "displayName": "De", "productId": "acme"}).status_code == 200
    )
    fees = [flat("MONTHLY", 30), flat("MONTHLY", 27) | {"billingCountryCode": "DE"}]
    seats = {"billingModel": "PER_UNIT", "featureId": "seats", "pricePeriods": [flat("MONTHLY", 8)]}
    charges = {"pricingType": "PAID", "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": fees}, seats]}
    assert api.patch("/api/v1/plans/plan-de", json={"charges": charges}).status_code == 200
    publish_plan(api, "plan-de")
    Worker(server.db).drain()
    _, rows = version(server, "plan-de", 1)
    billing_ids = {}
    for row in rows:
        link = link_of(server, PACKAGE_CHARGE, row.pk)
        assert link is not None and link.billing_id is not None
        billing_ids[(row.billing_model, row.billing_country_code)] = link.billing_id
    card_customer(api, stripe_emulator, "cust-ada")
    choice = {"billingPeriod": "MONTHLY", "billingCountryCode": "DE", "unitQuantity": 3}
    preview = api.post("/api/v1/subscriptions/preview", json={"customerId": "cust-ada", "planId": "plan-de", **choice})
    assert preview.status_code == 200, preview.text
    assert preview.json()["data"]["recurringInvoice"]["subTotal"] == 27 + 3 * 8
    provision(api, "cust-ada", "plan-de", **choice)
    Worker(server.db).drain()

    (create,) = [w for w in stripe_emulator.standin.writes() if w.path == "/v1/subscriptions"]
    assert create.params is not None
    sent = sorted((item["price"], int(item["quantity"])) for item in create.params["items"])
    assert sent == sorted([(billing_ids[("FLAT_FEE", "DE")], 1), (billing_ids[("PER_UNIT", None)], 3)])
