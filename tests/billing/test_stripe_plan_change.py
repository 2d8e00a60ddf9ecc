"""A plan change made now to a subscription synced to Stripe bills what the preview says, against the local
Stripe, on SQLite and PostgreSQL: the Stripe subscription is changed in place (its items move to the new
plan's prices), prorated at the change's instant, instead of being cancelled and made again.

The story: a customer on Basic (10 a month) from Jan 15 upgrades to Pro (30 a month) on Jan 25. The
preview says 13.55 is due now (21/31 of Pro less 21/31 of Basic, to Feb 15) for the period Jan 25 -> Feb
15; Stripe charges exactly that on an invoice of proration lines, the same Stripe subscription now bills
Pro's price, and Entitle's Pro subscription keeps Basic's billing cycle (its period ends on Feb 15).

The emulator runs on the tests' clock (`StandIn.clock`, set by the `stripe_emulator` fixture, as a Stripe
test clock would): the Stripe period starts when Entitle's sync creates the subscription at the clock's
now, so both sides prorate the same period. Emulator only: it needs that clock, a card that declines, and
the stand-in's request log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from entitle.jobs.service import Worker
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_catalog_sync import flat, publish_plan, set_prices
from tests.billing.test_stripe_checkout import new_customer
from tests.billing.test_stripe_subscription_sync import paying_customer, subscription_row
from tests.billing.test_stripe_update_sync import price_of
from tests.billing.test_stripe_webhooks import signed_post, stripe_event
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.emulator_only

JAN_15 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
JAN_25 = datetime(2026, 1, 25, 12, 0, tzinfo=UTC)
FEB_15 = datetime(2026, 2, 15, 12, 0, tzinfo=UTC)


def catalog(server: LiveServer, api: httpx.Client, emulator: StripeEmulator, clock: TestClock, **settings: Any) -> str:
    """Stripe connected on the tests' clock, and Basic (10 a month, 100 a year) and Pro (30, 300) synced.
    The integration's id."""
    assert clock.now() == JAN_15
    assert emulator.standin.clock is not None  # the fixture runs the emulator on Entitle's clock
    integration = str(connect_stripe(api, emulator, **settings)["id"])
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    for ref, monthly, annual in (("plan-basic", 10, 100), ("plan-pro", 30, 300)):
        body = {"id": ref, "displayName": ref.removeprefix("plan-").title(), "productId": "acme"}
        assert api.post("/api/v1/plans", json=body).status_code == 200
        set_prices(api, ref, [flat("MONTHLY", monthly), flat("ANNUALLY", annual)])
        publish_plan(api, ref)
    Worker(server.db).drain()
    return integration


def on_plan(server: LiveServer, api: httpx.Client, ref: str, plan: str, **extra: Any) -> dict[str, Any]:
    body = {"customerId": "cust-ada", "planId": plan, "id": ref, "billingPeriod": "MONTHLY", **extra}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    got = api.get(f"/api/v1/subscriptions/{ref}")
    assert got.status_code == 200, got.text
    data: dict[str, Any] = got.json()["data"]
    return data


def preview(api: httpx.Client, plan: str, **extra: Any) -> dict[str, Any]:
    body = {"customerId": "cust-ada", "planId": plan, "billingPeriod": "MONTHLY", **extra}
    resp = api.post("/api/v1/subscriptions/preview", json=body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def stripe_writes(emulator: StripeEmulator, billing_id: str) -> list[Any]:
    """What Entitle asked of the Stripe subscription (updates) and whether it cancelled it."""
    return [
        w
        for w in emulator.standin.log
        if w.path == f"/v1/subscriptions/{billing_id}" and w.method in ("POST", "DELETE") and not w.injected
    ]


def item_prices(emulator: StripeEmulator, billing_id: str) -> list[tuple[str, int]]:
    sub = emulator.client().v1.subscriptions.retrieve(billing_id)
    return [(item.plan.id, item.quantity) for item in sub["items"].data]


def invoices_of(emulator: StripeEmulator, billing_id: str) -> list[Any]:
    listed = emulator.client().v1.invoices.list(params={"subscription": billing_id, "limit": 100})
    return sorted(listed.data, key=lambda invoice: (invoice.date, invoice.created))


def basic_from_jan_15(
    server: LiveServer, api: httpx.Client, emulator: StripeEmulator, clock: TestClock, **settings: Any
) -> str:
    """Basic, paid at Stripe on Jan 15; the clock then moves to Jan 25. Its Stripe subscription id."""
    catalog(server, api, emulator, clock, **settings)
    paying_customer(api, emulator)
    basic = on_plan(server, api, "sub-basic", "plan-basic")
    assert basic["status"] == "ACTIVE"
    billing_id = subscription_row(server, "sub-basic").billing_id
    assert billing_id is not None
    stripe_sub = emulator.client().v1.subscriptions.retrieve(billing_id)
    assert (stripe_sub.current_period_start, stripe_sub.current_period_end) == (
        int(JAN_15.timestamp()),
        int(FEB_15.timestamp()),
    )  # the emulator's period is Entitle's
    clock.set(JAN_25)
    return billing_id


def test_an_upgrade_charges_the_previewed_proration_on_the_same_stripe_subscription(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    billing_id = basic_from_jan_15(server, api, stripe_emulator, test_clock)

    # The preview: 13.55 now, for the rest of Basic's period, and Pro's price from Feb 15.
    seen = preview(api, "plan-pro")
    assert Decimal(str(seen["immediateInvoice"]["total"])) == Decimal("13.55")
    period = seen["billingPeriodRange"]
    assert (instant(period["start"]), instant(period["end"])) == (JAN_25, FEB_15)
    renewal = seen["recurringInvoice"]
    assert Decimal(str(renewal["total"])) == Decimal(30)
    assert instant(renewal["billingPeriodRange"]["start"]) == FEB_15

    pro = on_plan(server, api, "sub-pro", "plan-pro")

    # Entitle: Pro is paid and active for the rest of Basic's period; Basic ended by the change.
    assert pro["status"] == "ACTIVE"
    assert (instant(pro["currentBillingPeriodStart"]), instant(pro["currentBillingPeriodEnd"])) == (JAN_25, FEB_15)
    basic = api.get("/api/v1/subscriptions/sub-basic").json()["data"]
    assert (basic["status"], basic["cancelReason"]) == ("CANCELED", "UPGRADE_OR_DOWNGRADE")

    # Stripe: the same subscription, now on Pro's price, never cancelled; the change's invoice charged 13.55.
    assert subscription_row(server, "sub-pro").billing_id == billing_id
    stripe_sub = stripe_emulator.client().v1.subscriptions.retrieve(billing_id)
    assert stripe_sub.status == "active"
    assert stripe_sub.current_period_end == int(FEB_15.timestamp())  # the next renewal, at Pro's 30.00
    assert item_prices(stripe_emulator, billing_id) == [(price_of(server, "plan-pro", 1, "MONTHLY"), 1)]
    customer = stripe_sub.customer
    listed = stripe_emulator.client().v1.subscriptions.list(params={"customer": customer, "status": "all"})
    assert [s.id for s in listed.data] == [billing_id]
    # The renewal: Pro's price in full, on Feb 15 (nothing left pending from the change).
    params: Any = {"customer": customer, "subscription": billing_id}
    upcoming = stripe_emulator.client().v1.invoices.create_preview(params=params)
    assert (upcoming.total, upcoming.date) == (3000, int(FEB_15.timestamp()))
    first, change = invoices_of(stripe_emulator, billing_id)
    assert (first.total, first.status) == (1000, "paid")
    assert (change.total, change.amount_paid, change.status) == (1355, 1355, "paid")
    lines = sorted((line.amount, bool(line.proration)) for line in change.lines.data)
    assert lines == [(-677, True), (2032, True)]  # 21/31 of 10.00 credited, 21/31 of 30.00 charged
    (update,) = [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "POST" and "items" in w.params]
    assert update.params["proration_behavior"] == "always_invoice"
    assert int(update.params["proration_date"]) == int(JAN_25.timestamp())
    assert update.params["payment_behavior"] == "pending_if_incomplete"
    assert not [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "DELETE"]
    # The metadata follows the change: the Stripe subscription now names Pro's Entitle subscription.
    assert stripe_sub.metadata["entitleSubscriptionId"] == "sub-pro"
    assert stripe_sub.metadata["entitlePlanId"] == "plan-pro"


def card_on_file(emulator: StripeEmulator, billing_id: str, number: str) -> None:
    """The Stripe customer's default card becomes a new one (4000000000000341 declines every charge)."""
    client = emulator.client()
    card: Any = {"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"}
    method = client.v1.payment_methods.create(params={"type": "card", "card": card})
    customer = client.v1.subscriptions.retrieve(billing_id).customer
    client.v1.payment_methods.attach(method.id, params={"customer": customer})
    client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": method.id}})


DECLINES = "4000000000000341"


def test_a_declined_upgrade_leaves_basic_and_its_stripe_items_in_place(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    billing_id = basic_from_jan_15(server, api, stripe_emulator, test_clock)
    basic_price = price_of(server, "plan-basic", 1, "MONTHLY")
    card_on_file(stripe_emulator, billing_id, DECLINES)
    client = stripe_emulator.client()

    pro = on_plan(server, api, "sub-pro", "plan-pro")

    assert pro["status"] == "PAYMENT_PENDING"
    basic = api.get("/api/v1/subscriptions/sub-basic").json()["data"]
    assert basic["status"] == "ACTIVE"
    stripe_sub = client.v1.subscriptions.retrieve(billing_id).to_dict()
    assert stripe_sub["status"] == "active"
    assert item_prices(stripe_emulator, billing_id) == [(basic_price, 1)]  # Stripe's pending update waits
    assert stripe_sub["pending_update"] is not None
    change = invoices_of(stripe_emulator, billing_id)[-1]
    assert (change.total, change.status) == (1355, "open")

    # Never paid: the settlement window ends Pro; Basic and its Stripe subscription carry on.
    test_clock.advance(timedelta(hours=25))
    Worker(server.db).drain()
    pro = api.get("/api/v1/subscriptions/sub-pro").json()["data"]
    assert (pro["status"], pro["cancelReason"]) == ("CANCELED", "PENDING_PAYMENT_EXPIRED")
    assert api.get("/api/v1/subscriptions/sub-basic").json()["data"]["status"] == "ACTIVE"
    assert client.v1.subscriptions.retrieve(billing_id).status == "active"
    assert item_prices(stripe_emulator, billing_id) == [(basic_price, 1)]
    assert not [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "DELETE"]
    # Its change invoice is voided, so paying it later cannot move Stripe to Pro while Entitle keeps Basic.
    assert client.v1.invoices.retrieve(change.id).status == "void"
    assert client.v1.subscriptions.retrieve(billing_id).to_dict()["pending_update"] is None
    assert item_prices(stripe_emulator, billing_id) == [(basic_price, 1)]


def test_an_immediate_downgrade_asks_stripe_for_a_prorated_credit_in_place(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    catalog(server, api, stripe_emulator, test_clock)
    paying_customer(api, stripe_emulator)
    on_plan(server, api, "sub-pro", "plan-pro")
    billing_id = subscription_row(server, "sub-pro").billing_id
    assert billing_id is not None
    test_clock.set(JAN_25)

    seen = preview(api, "plan-basic", scheduleStrategy="IMMEDIATE")
    assert Decimal(str(seen["immediateInvoice"]["total"])) == Decimal("-13.55")  # a credit: 21/31 of the difference
    basic = on_plan(server, api, "sub-basic", "plan-basic", scheduleStrategy="IMMEDIATE")

    assert basic["status"] == "ACTIVE"
    assert instant(basic["currentBillingPeriodEnd"]) == FEB_15
    assert api.get("/api/v1/subscriptions/sub-pro").json()["data"]["status"] == "CANCELED"
    assert subscription_row(server, "sub-basic").billing_id == billing_id
    (update,) = [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "POST" and "items" in w.params]
    (item,) = update.params["items"]
    assert item["price"] == price_of(server, "plan-basic", 1, "MONTHLY") and item["id"].startswith("si_")
    assert (update.params["proration_behavior"], int(update.params["proration_date"])) == (
        "always_invoice",
        int(JAN_25.timestamp()),
    )
    assert item_prices(stripe_emulator, billing_id) == [(price_of(server, "plan-basic", 1, "MONTHLY"), 1)]
    change = invoices_of(stripe_emulator, billing_id)[-1]
    assert sorted(line.amount for line in change.lines.data) == [-2032, 677]
    assert change.status == "paid"
    assert not [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "DELETE"]


def test_a_billing_period_change_restarts_the_cycle_now_on_both_sides(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    billing_id = basic_from_jan_15(server, api, stripe_emulator, test_clock)
    yearly_pro = price_of(server, "plan-pro", 1, "ANNUALLY")

    seen = preview(api, "plan-pro", billingPeriod="ANNUALLY")
    period = seen["billingPeriodRange"]
    next_year = datetime(2027, 1, 25, 12, 0, tzinfo=UTC)
    assert (instant(period["start"]), instant(period["end"])) == (JAN_25, next_year)
    # The whole year of Pro less the unused 21/31 of Basic's month.
    assert Decimal(str(seen["immediateInvoice"]["total"])) == Decimal("293.23")
    pro = on_plan(server, api, "sub-pro", "plan-pro", billingPeriod="ANNUALLY")

    assert pro["status"] == "ACTIVE"
    assert (instant(pro["currentBillingPeriodStart"]), instant(pro["currentBillingPeriodEnd"])) == (JAN_25, next_year)
    (update,) = [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "POST" and "items" in w.params]
    (item,) = update.params["items"]
    assert item["price"] == yearly_pro
    assert (update.params["proration_behavior"], int(update.params["proration_date"])) == (
        "always_invoice",
        int(JAN_25.timestamp()),
    )
    stripe_sub = stripe_emulator.client().v1.subscriptions.retrieve(billing_id)
    assert (stripe_sub.current_period_start, stripe_sub.current_period_end) == (
        int(JAN_25.timestamp()),
        int(next_year.timestamp()),
    )
    change = invoices_of(stripe_emulator, billing_id)[-1]
    assert (change.total, change.status) == (30000 - 677, "paid")


def test_a_plan_change_honours_the_proration_behavior_it_is_given(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    billing_id = basic_from_jan_15(server, api, stripe_emulator, test_clock)
    information = {"prorationBehavior": "CREATE_PRORATIONS"}
    # The preview prices the immediate proration; another behaviour is not something it can price.
    body = {"customerId": "cust-ada", "planId": "plan-pro", "billingInformation": information}
    assert api.post("/api/v1/subscriptions/preview", json=body).status_code == 400
    refused = {"customerId": "cust-ada", "planId": "plan-pro", "billingInformation": {"prorationBehavior": "LATER"}}
    assert api.post("/api/v1/subscriptions", json=refused).status_code == 400

    pro = on_plan(server, api, "sub-pro", "plan-pro", billingInformation=information)

    # Nothing is charged now (the prorations wait for the next invoice): nothing to wait for either.
    assert pro["status"] == "ACTIVE"
    assert instant(pro["currentBillingPeriodEnd"]) == FEB_15
    (update,) = [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "POST" and "items" in w.params]
    assert update.params["proration_behavior"] == "create_prorations"
    assert "payment_behavior" not in update.params
    assert len(invoices_of(stripe_emulator, billing_id)) == 1  # the first one only
    customer = stripe_emulator.client().v1.subscriptions.retrieve(billing_id).customer
    pending = stripe_emulator.client().v1.invoice_items.list(params={"customer": customer})
    assert sorted(item.amount for item in pending.data) == [-677, 2032]
    params: Any = {"customer": customer, "subscription": billing_id}
    upcoming = stripe_emulator.client().v1.invoices.create_preview(params=params)
    assert (upcoming.total, upcoming.date) == (3000 - 677 + 2032, int(FEB_15.timestamp()))  # on the renewal
    assert item_prices(stripe_emulator, billing_id) == [(price_of(server, "plan-pro", 1, "MONTHLY"), 1)]


def test_a_change_that_does_not_wait_for_the_payment_hands_the_stripe_subscription_over_at_once(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    """awaitPaymentConfirmation false: Basic ends in the provisioning transaction, before Pro's sync exists;
    the cancellation queued for Basic's Stripe subscription finds it handed over and sends nothing."""
    billing_id = basic_from_jan_15(server, api, stripe_emulator, test_clock)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-pro", "awaitPaymentConfirmation": False}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200, resp.text
    assert api.get("/api/v1/subscriptions/sub-basic").json()["data"]["status"] == "CANCELED"
    assert api.get("/api/v1/subscriptions/sub-pro").json()["data"]["status"] == "ACTIVE"
    Worker(server.db).drain()

    stripe_sub = stripe_emulator.client().v1.subscriptions.retrieve(billing_id)
    assert stripe_sub.status == "active" and stripe_sub.metadata["entitleSubscriptionId"] == "sub-pro"
    assert item_prices(stripe_emulator, billing_id) == [(price_of(server, "plan-pro", 1, "MONTHLY"), 1)]
    assert invoices_of(stripe_emulator, billing_id)[-1].total == 1355
    assert not [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "DELETE"]
    assert subscription_row(server, "sub-pro").billing_id == billing_id


def test_an_invoiced_subscription_is_sent_the_change_and_goes_on_on_invoice_terms(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    """paymentCollectionMethod INVOICE: the change's invoice is sent (not charged), so nothing waits on a card;
    the service goes on, as for a new invoiced subscription, and the invoice is paid later."""
    catalog(server, api, stripe_emulator, test_clock)
    new_customer(api)  # an email, no card
    invoiced = {"paymentCollectionMethod": "INVOICE", "billingInformation": {"invoiceDaysUntilDue": 14}}
    assert on_plan(server, api, "sub-basic", "plan-basic", **invoiced)["status"] == "ACTIVE"
    billing_id = subscription_row(server, "sub-basic").billing_id
    assert billing_id is not None
    test_clock.set(JAN_25)

    pro = on_plan(server, api, "sub-pro", "plan-pro", paymentCollectionMethod="INVOICE")

    assert pro["status"] == "ACTIVE"
    assert api.get("/api/v1/subscriptions/sub-basic").json()["data"]["status"] == "CANCELED"
    assert subscription_row(server, "sub-pro").billing_id == billing_id
    (update,) = [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "POST" and "items" in w.params]
    assert update.params["proration_behavior"] == "always_invoice" and "payment_behavior" not in update.params
    change = invoices_of(stripe_emulator, billing_id)[-1]
    assert (change.total, change.status, change.collection_method) == (1355, "open", "send_invoice")
    assert item_prices(stripe_emulator, billing_id) == [(price_of(server, "plan-pro", 1, "MONTHLY"), 1)]
    # Paid out of band later: the change's invoice is the subscription's latest.
    assert api.post("/api/v1/subscriptions/sub-pro/invoice/paid").status_code == 200
    assert stripe_emulator.client().v1.invoices.retrieve(change.id).status == "paid"


def test_the_change_invoices_webhooks_settle_the_upgrade_and_the_others_stay_with_basic(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    """Two Entitle subscriptions are linked to one Stripe subscription while the upgrade waits: the change's
    invoice's events are Pro's, the subscription's own events Basic's (it holds the Stripe subscription)."""
    secret = "whsec_" + "5" * 32
    billing_id = basic_from_jan_15(server, api, stripe_emulator, test_clock, webhookSecret=secret)
    integration = str(api.get("/api/v1/integrations").json()["data"][0]["id"])
    card_on_file(stripe_emulator, billing_id, DECLINES)
    assert on_plan(server, api, "sub-pro", "plan-pro")["status"] == "PAYMENT_PENDING"
    change = invoices_of(stripe_emulator, billing_id)[-1]

    def event(kind: str, obj: dict[str, Any]) -> None:
        assert signed_post(api, integration, stripe_event(kind, obj), secret).status_code == 200
        Worker(server.db).drain()

    def state(ref: str) -> tuple[str, str]:
        data = api.get(f"/api/v1/subscriptions/{ref}").json()["data"]
        return data["status"], data["paymentCollection"]

    invoice = {"object": "invoice", "id": change.id, "subscription": billing_id, "amount_due": 1355, "currency": "usd"}
    event("invoice.payment_failed", invoice)
    assert state("sub-pro") == ("PAYMENT_PENDING", "FAILED")
    assert state("sub-basic") == ("ACTIVE", "NOT_REQUIRED")
    # The Stripe subscription is active (on Basic's items): that pays nothing Pro waits for.
    event("customer.subscription.updated", {"object": "subscription", "id": billing_id, "status": "active"})
    assert state("sub-pro") == ("PAYMENT_PENDING", "FAILED")

    # The customer pays the open invoice with another card: Stripe applies the change, its invoice.paid comes.
    card_on_file(stripe_emulator, billing_id, "4242424242424242")
    assert stripe_emulator.client().v1.invoices.pay(change.id).status == "paid"
    assert item_prices(stripe_emulator, billing_id) == [(price_of(server, "plan-pro", 1, "MONTHLY"), 1)]
    event("invoice.paid", {**invoice, "status": "paid"})
    assert state("sub-pro")[0] == "ACTIVE"
    basic = api.get("/api/v1/subscriptions/sub-basic").json()["data"]
    assert (basic["status"], basic["cancelReason"]) == ("CANCELED", "UPGRADE_OR_DOWNGRADE")
    stripe_sub = stripe_emulator.client().v1.subscriptions.retrieve(billing_id)
    assert stripe_sub.status == "active" and stripe_sub.metadata["entitleSubscriptionId"] == "sub-pro"
    assert not [w for w in stripe_writes(stripe_emulator, billing_id) if w.method == "DELETE"]
