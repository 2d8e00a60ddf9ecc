"""Stripe Checkout on provisioning, the Billing Portal, the Elements flow and Stripe Tax, against the local
Stripe (or real Stripe test mode, see tests/billing/conftest.py), on SQLite and PostgreSQL.

Endpoints and who emulates them (see tests/support/stripe_emulator.py): Checkout Sessions (POST
/v1/checkout/sessions, GET /v1/checkout/sessions) and Billing Portal sessions (POST
/v1/billing_portal/sessions) are the stand-in's; Customers, Payment Methods, Setup Intents and
Subscriptions are localstripe's (the stand-in keeps the `automatic_tax` localstripe's subscriptions lack);
Prices are the stand-in's, mirrored as localstripe Plans. Completing a Checkout Session (which at Stripe
creates the subscription and sends `checkout.session.completed`) is not emulated: the activation is the
inbound webhook handler's, tested with it.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.billing import subscription_sync
from entitle.billing.models import CUSTOMER, ERROR, PACKAGE_CHARGE, PENDING, SUBSCRIPTION, SUCCESS, BillingLink
from entitle.jobs.service import Worker
from entitle.subscriptions.models import Subscription
from tests.billing.conftest import card_customer, card_payment_method, connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of, make_plan, version
from tests.billing.test_stripe_coupon_sync import coupon_row, create_coupon
from tests.billing.test_stripe_subscription_sync import (
    customer_row,
    jobs_of,
    stripe_customers,
    stripe_subscriptions,
    subscription_row,
)
from tests.billing.test_stripe_webhooks import granted, setup, signed_post, stripe_event
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator

CHECKOUT = {
    "successUrl": "https://app.example.com/welcome",
    "cancelUrl": "https://app.example.com/pricing",
    "allowPromoCodes": True,
    "collectBillingAddress": True,
    "referenceId": "cart-42",
}


def connected(server: LiveServer, api: httpx.Client, emulator: StripeEmulator, **extra: Any) -> dict[str, Any]:
    integration = connect_stripe(api, emulator, **extra)
    make_plan(api)
    assert Worker(server.db).drain() == 1  # the plan's catalog sync
    return integration


def new_customer(api: httpx.Client, ref: str = "cust-ada", **extra: Any) -> None:
    resp = api.post("/api/v1/customers", json={"id": ref, "name": "Ada", "email": "ada@example.com", **extra})
    assert resp.status_code == 200, resp.text


def sub_link(server: LiveServer, ref: str) -> BillingLink:
    link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert link is not None
    return link


def test_provisioning_with_checkout_options_answers_payment_required_with_a_checkout_url(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    integration = connected(server, api, stripe_emulator)
    new_customer(api)
    # Through the official client: the answer is the contract's PAYMENT_REQUIRED shape.
    result = server.stigg().v1.subscriptions.provision(
        customer_id="cust-ada",
        plan_id="plan-pro",
        id="sub-ada",
        billing_period="MONTHLY",
        checkout_options={
            "success_url": CHECKOUT["successUrl"],
            "cancel_url": CHECKOUT["cancelUrl"],
            "allow_promo_codes": True,
            "collect_billing_address": True,
            "reference_id": "cart-42",
        },
    )
    data = result.data
    assert (data.id, data.status) == ("sub-ada", "PAYMENT_REQUIRED")
    assert data.checkout_url and data.checkout_billing_id
    assert data.subscription is not None and data.subscription.status == "PAYMENT_PENDING"

    client = stripe_emulator.client()
    session = client.v1.checkout.sessions.retrieve(data.checkout_billing_id)
    assert session.url == data.checkout_url and session.status == "open" and session.mode == "subscription"
    stripe_id = customer_row(server, "cust-ada").billing_id
    assert stripe_id is not None
    customer = client.v1.customers.retrieve(stripe_id)
    assert session.customer == customer.id and customer.metadata["entitleCustomerId"] == "cust-ada"
    assert (session.success_url, session.cancel_url) == (CHECKOUT["successUrl"], CHECKOUT["cancelUrl"])
    assert session.allow_promotion_codes is True and session.billing_address_collection == "required"
    assert session.client_reference_id == "cart-42"
    assert session.metadata["entitleSubscriptionId"] == "sub-ada"  # how checkout.session.completed finds it
    assert session.metadata["entitlePlanId"] == "plan-pro"
    assert (session.amount_total, session.currency) == (2999, "usd")  # the plan's monthly price, once
    assert session.automatic_tax.enabled is False  # Stripe Tax is off for this integration

    sub = subscription_row(server, "sub-ada")
    assert (sub.status, sub.payment_collection, sub.billing_id) == ("PAYMENT_PENDING", "ACTION_REQUIRED", None)
    link = sub_link(server, "sub-ada")
    assert link.sync_state == PENDING
    assert link.details["checkout"] == {
        "state": "OPEN",
        "sessionId": session.id,
        "url": session.url,
        "successUrl": CHECKOUT["successUrl"],
    }
    assert customer_row(server, "cust-ada").billing_id == customer.id
    cust_link = link_of(server, CUSTOMER, customer_row(server, "cust-ada").pk)
    assert cust_link is not None and (cust_link.sync_state, cust_link.billing_id) == (SUCCESS, customer.id)
    # The session makes the Stripe subscription: no sync job, and the worker creates none.
    assert jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB) == []
    Worker(server.db).drain()
    assert customer_subscriptions(stripe_emulator, customer.id) == []
    # Both Stripe writes carried keys derived from the integration and the subscription.
    if isinstance(stripe_emulator, StripeEmulator):
        keys = [w.idempotency_key for w in stripe_emulator.standin.writes() if w.path != "/v1/products"]
        prefix = f"entitle-checkout-{integration['id']}-{sub.pk}"
        assert keys[-2:] == [f"{prefix}:customer", f"{prefix}:checkout"]


@pytest.mark.emulator_only  # completing a Checkout needs a browser at real Stripe
def test_completing_the_checkout_activates_the_subscription_end_to_end(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """Provisioning opens the session; Stripe's side of completing it is played here (the customer pays,
    Stripe creates the subscription with the session's `subscription_data.metadata` and sends the signed
    `checkout.session.completed`); Entitle's webhook handler then links and activates the subscription."""
    secret = f"whsec_{secrets.token_hex(16)}"
    integration = setup(server, api, stripe_emulator, secret, localstripe=False)  # plan-pro grants `sso`
    new_customer(api)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    data = api.post("/api/v1/subscriptions", json=body).json()["data"]
    assert data["status"] == "PAYMENT_REQUIRED" and not granted(server, "cust-ada")

    client = stripe_emulator.client()
    session = stripe_emulator.standin.checkout_sessions[data["checkoutBillingId"]]
    price = subscription_sync_price(server)
    method = client.v1.payment_methods.retrieve(card_payment_method(stripe_emulator))
    client.v1.payment_methods.attach(method.id, params={"customer": session["customer"]})
    default: Any = {"invoice_settings": {"default_payment_method": method.id}}
    client.v1.customers.update(session["customer"], params=default)
    params: Any = {"customer": session["customer"], "items": [{"price": price}], "metadata": session["metadata"]}
    stripe_sub = client.v1.subscriptions.create(params=params)
    completed = {**session, "status": "complete", "payment_status": "paid", "subscription": stripe_sub.id}
    resp = signed_post(api, integration, stripe_event("checkout.session.completed", completed), secret)
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()

    sub = subscription_row(server, "sub-ada")
    assert (sub.status, sub.billing_id) == ("ACTIVE", stripe_sub.id)
    link = sub_link(server, "sub-ada")
    assert (link.sync_state, link.billing_id) == (SUCCESS, stripe_sub.id)
    assert link.details["checkout"]["state"] == "COMPLETED" and link.details["checkout"]["sessionId"] == session["id"]
    assert granted(server, "cust-ada")
    # The checkout's subscription is the only one at Stripe: Entitle's sync made none of its own.
    assert [s.id for s in customer_subscriptions(stripe_emulator, session["customer"])] == [stripe_sub.id]


def subscription_sync_price(server: LiveServer) -> str:
    """The Stripe price of plan-pro's monthly charge, as the catalog sync recorded it."""
    _, charges = version(server, "plan-pro", 1)
    (monthly,) = [c for c in charges if c.billing_period == "MONTHLY"]
    link = link_of(server, PACKAGE_CHARGE, monthly.pk)
    assert link is not None and link.billing_id is not None
    return link.billing_id


def test_an_abandoned_checkout_expires_and_the_settlement_window_cancels_the_subscription(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connected(server, api, stripe_emulator, paymentSettlementHours=2)
    new_customer(api)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    opened_at = test_clock.now()
    data = api.post("/api/v1/subscriptions", json=body).json()["data"]
    session = stripe_emulator.client().v1.checkout.sessions.retrieve(data["checkoutBillingId"])
    # The session stops taking payment a minute before the window closes (Stripe's minimum is 30 minutes).
    assert session.expires_at == int((opened_at + timedelta(hours=2, minutes=-1)).timestamp())

    test_clock.advance(timedelta(hours=1, minutes=59))
    Worker(server.db).drain()
    assert subscription_row(server, "sub-ada").status == "PAYMENT_PENDING"
    test_clock.advance(timedelta(minutes=2))
    Worker(server.db).drain()
    sub = subscription_row(server, "sub-ada")
    assert (sub.status, sub.cancel_reason) == ("CANCELED", "PENDING_PAYMENT_EXPIRED")


def test_the_subscriptions_coupon_is_the_checkouts_discount(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected(server, api, stripe_emulator)
    create_coupon(api, "launch-20", percentOff=20)
    Worker(server.db).drain()  # the coupon's sync
    coupon_id = coupon_row(server, "launch-20").billing_id
    assert coupon_id is not None
    new_customer(api)
    body = {
        "customerId": "cust-ada",
        "planId": "plan-pro",
        "checkoutOptions": CHECKOUT,  # allowPromoCodes too: Stripe takes one or the other, the coupon wins
        "appliedCoupon": {"couponId": "launch-20"},
    }
    data = api.post("/api/v1/subscriptions", json=body).json()["data"]
    assert data["status"] == "PAYMENT_REQUIRED"
    session = stripe_emulator.client().v1.checkout.sessions.retrieve(data["checkoutBillingId"])
    assert [d.coupon for d in session.discounts] == [coupon_id]
    assert not session.allow_promotion_codes


def test_checkout_options_are_ignored_when_no_payment_is_needed_at_checkout(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """As Stigg: a payment method on file is charged; free plans and trials need no payment."""
    connected(server, api, stripe_emulator)
    card_customer(api, stripe_emulator, "cust-card")
    body = {"customerId": "cust-card", "planId": "plan-pro", "id": "sub-card", "checkoutOptions": CHECKOUT}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["status"] == "SUCCESS" and data.get("checkoutUrl") is None
    # Stripe charges the card on file (the subscription waits for that invoice, not for a checkout).
    assert data["subscription"]["paymentCollection"] != "ACTION_REQUIRED"
    assert len(jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB)) == 1  # the ordinary sync

    new_customer(api, "cust-trial")
    body = {
        "customerId": "cust-trial",
        "planId": "plan-pro",
        "id": "sub-trial",
        "checkoutOptions": CHECKOUT,
        "trialOverrideConfiguration": {"isTrial": True, "trialEndDate": "2099-01-01T00:00:00Z"},
    }
    data = api.post("/api/v1/subscriptions", json=body).json()["data"]
    assert (data["status"], data["subscription"]["status"]) == ("SUCCESS", "IN_TRIAL")
    if isinstance(stripe_emulator, StripeEmulator):
        assert stripe_emulator.standin.checkout_sessions == {}


def test_checkout_is_for_new_subscriptions_not_for_changing_a_paid_one(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected(server, api, stripe_emulator)
    new_customer(api)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    assert api.post("/api/v1/subscriptions", json=body).json()["data"]["status"] == "PAYMENT_REQUIRED"
    make_plan(api, "plan-team", monthly=99)
    Worker(server.db).drain()
    body = {"customerId": "cust-ada", "planId": "plan-team", "id": "sub-team", "checkoutOptions": CHECKOUT}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 409 and "starts new subscriptions only" in resp.json()["error"]["message"]
    assert [s.ref_id for s in _subscriptions(server)] == ["sub-ada"]
    assert subscription_row(server, "sub-ada").status == "PAYMENT_PENDING"  # untouched


def test_checkout_is_refused_inside_customer_provisioning(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """`subscriptionParams` provisions in the customer's transaction, where no checkout can be opened."""
    connected(server, api, stripe_emulator)
    params = {"planId": "plan-pro", "checkoutOptions": CHECKOUT}
    resp = api.post("/api/v1/customers", json={"id": "cust-ada", "subscriptionParams": params})
    assert resp.status_code == 400 and "POST /api/v1/subscriptions" in resp.json()["error"]["message"]
    assert api.get("/api/v1/customers/cust-ada").status_code == 404  # nothing written
    assert _subscriptions(server) == []


def test_checkout_without_a_provider_is_an_ordinary_provisioning(server: LiveServer, api: httpx.Client) -> None:
    make_plan(api)
    new_customer(api)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    data = api.post("/api/v1/subscriptions", json=body).json()["data"]
    assert (data["status"], data["subscription"]["status"]) == ("SUCCESS", "ACTIVE")


@pytest.mark.emulator_only
def test_a_stripe_failure_answers_502_and_leaves_no_open_subscription(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected(server, api, stripe_emulator)
    new_customer(api)
    stripe_emulator.fail_next(1, path_prefix="/v1/checkout/sessions", status=503)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 502, resp.text
    error = resp.json()["error"]
    assert error["code"] == "BILLING_PROVIDER_ERROR" and "sub-ada" in error["message"]
    sub = subscription_row(server, "sub-ada")
    assert (sub.status, sub.cancel_reason) == ("CANCELED", "CANCELLED_BY_BILLING")
    link = sub_link(server, "sub-ada")
    assert link.sync_state == ERROR and link.details["checkout"]["state"] == "FAILED"
    assert stripe_emulator.standin.checkout_sessions == {}
    Worker(server.db).drain()
    assert stripe_subscriptions(stripe_emulator) == []

    # Provisioning again (a new id) opens a checkout, reusing the Stripe customer made the first time.
    body["id"] = "sub-ada-2"
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200 and resp.json()["data"]["status"] == "PAYMENT_REQUIRED", resp.text
    assert len(stripe_customers(stripe_emulator)) == 1
    open_subs = [
        s.ref_id for s in _subscriptions(server) if s.status in ("ACTIVE", "PAYMENT_PENDING", "IN_TRIAL", "NOT_STARTED")
    ]
    assert open_subs == ["sub-ada-2"]


def test_checkout_before_the_prices_reach_stripe_is_refused_and_writes_nothing(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    make_plan(api)  # published, its catalog sync job not run yet
    new_customer(api)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 409, resp.text
    assert "no provider price yet" in resp.json()["error"]["message"]
    assert _subscriptions(server) == []
    assert customer_row(server, "cust-ada").billing_id is None
    if isinstance(stripe_emulator, StripeEmulator):
        assert stripe_customers(stripe_emulator) == []


def test_stripe_tax_sets_automatic_tax_on_checkout_sessions_and_subscriptions(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    integration = connected(server, api, stripe_emulator, taxEnabled=True)
    assert integration["taxEnabled"] is True
    new_customer(api)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    data = api.post("/api/v1/subscriptions", json=body).json()["data"]
    session = stripe_emulator.client().v1.checkout.sessions.retrieve(data["checkoutBillingId"])
    assert session.automatic_tax.enabled is True

    card_customer(api, stripe_emulator, "cust-card")
    assert api.post("/api/v1/subscriptions", json={"customerId": "cust-card", "planId": "plan-pro"}).status_code == 200
    Worker(server.db).drain()
    (stripe_sub,) = customer_subscriptions(stripe_emulator, customer_row(server, "cust-card").billing_id)
    assert stripe_sub.automatic_tax.enabled is True


# -- billing portal ------------------------------------------------------------------------------------


def test_portal_session_for_a_customer_at_stripe(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected(server, api, stripe_emulator)
    new_customer(api)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "checkoutOptions": CHECKOUT}
    assert api.post("/api/v1/subscriptions", json=body).status_code == 200  # creates the Stripe customer
    stripe_id = api.get("/api/v1/customers/cust-ada").json()["data"]["billingId"]
    assert stripe_id and stripe_id.startswith("cus_")

    resp = api.post("/api/v1/customers/cust-ada/portal-session", json={"returnUrl": "https://app.example.com/acct"})
    assert resp.status_code == 200, resp.text
    url = resp.json()["data"]["url"]
    assert url.startswith("http")
    if isinstance(stripe_emulator, StripeEmulator):
        (portal,) = stripe_emulator.standin.portal_sessions.values()
        assert (portal["url"], portal["customer"], portal["return_url"]) == (
            url,
            stripe_id,
            "https://app.example.com/acct",
        )


def test_portal_session_without_a_stripe_customer_is_a_failed_precondition(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    new_customer(api)
    body = {"returnUrl": "https://app.example.com/acct"}
    resp = api.post("/api/v1/customers/cust-ada/portal-session", json=body)
    assert resp.status_code == 409 and "billing provider" in resp.json()["error"]["message"]
    connect_stripe(api, stripe_emulator)
    resp = api.post("/api/v1/customers/cust-ada/portal-session", json=body)
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert error["code"] == "FAILED_PRECONDITION" and "no Stripe customer" in error["message"]
    assert api.post("/api/v1/customers/nobody/portal-session", json=body).status_code == 404
    assert api.post("/api/v1/customers/cust-ada/portal-session", json={"returnUrl": "x"}).status_code == 400


# -- Elements: the application collects the card itself ------------------------------------------------


def test_elements_flow_setup_intent_then_provisioning_charges_the_card(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    integration = connected(server, api, stripe_emulator)
    # 1. Billing information for Stripe (here none but the intent) makes the customer a Stripe customer (a
    #    customer-sync job).
    new_customer(api, passthrough={"stripe": {}})
    Worker(server.db).drain()
    stripe_id = api.get("/api/v1/customers/cust-ada").json()["data"]["billingId"]
    assert stripe_id and stripe_id.startswith("cus_")
    stripe_client = stripe_emulator.client()
    assert stripe_client.v1.customers.retrieve(stripe_id).metadata["entitleCustomerId"] == "cust-ada"

    # 2. The application creates a SetupIntent for that customer; the card is confirmed on it (Stripe.js
    #    does this in a browser; the SDK stands in for it here).
    intent = stripe_client.v1.setup_intents.create(params={"customer": stripe_id, "usage": "off_session"})
    method = stripe_client.v1.payment_methods.retrieve(card_payment_method(stripe_emulator))
    confirmed = stripe_client.v1.setup_intents.confirm(intent.id, params={"payment_method": method.id})
    assert confirmed.status == "succeeded"
    if stripe_client.v1.payment_methods.retrieve(method.id).customer != stripe_id:
        # Stripe attaches on confirmation; localstripe's SetupIntent does not, so attach as Stripe would.
        stripe_client.v1.payment_methods.attach(method.id, params={"customer": stripe_id})

    # 3. The application tells Entitle the payment method (the contract's attach call).
    attached = server.stigg().v1.customers.payment_method.attach(
        "cust-ada", integration_id=integration["id"], payment_method_id=method.id, vendor_identifier="STRIPE"
    )
    assert attached.data.default_payment_method is not None
    assert attached.data.default_payment_method.billing_id == method.id

    # 4. Provisioning (checkoutOptions or not) charges it: no checkout, an active Stripe subscription.
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    data = api.post("/api/v1/subscriptions", json=body).json()["data"]
    assert data["status"] == "SUCCESS"
    Worker(server.db).drain()
    (stripe_sub,) = customer_subscriptions(stripe_emulator, stripe_id)
    assert stripe_sub.status == "active"
    invoices = stripe_client.v1.invoices.list(params={"customer": stripe_id}).data
    assert [i.status for i in invoices] == ["paid"] and invoices[0].amount_paid == 2999
    assert customer_row(server, "cust-ada").billing_id == stripe_id  # the customer made in step 1, reused
    if isinstance(stripe_emulator, StripeEmulator):
        assert len(stripe_customers(stripe_emulator)) == 1
    assert sub_link(server, "sub-ada").billing_id == stripe_sub.id


def customer_subscriptions(emulator: StripeEmulator, customer_id: str | None) -> list[Any]:
    assert customer_id is not None
    params: Any = {"customer": customer_id, "status": "all", "limit": 100}
    return list(emulator.client().v1.subscriptions.list(params=params).data)


def test_attaching_a_payment_method_makes_it_the_default_here_and_at_stripe(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    new_customer(api)
    method = card_payment_method(stripe_emulator)
    body = {"integrationId": "STRIPE", "paymentMethodId": method, "vendorIdentifier": "STRIPE"}
    resp = api.post("/api/v1/customers/cust-ada/payment-method", json=body)
    assert resp.status_code == 404, resp.text  # no integration to attach it through
    integration = connect_stripe(api, stripe_emulator)
    wrong = api.post("/api/v1/customers/cust-ada/payment-method", json={**body, "vendorIdentifier": "ZUORA"})
    assert wrong.status_code == 400, wrong.text

    attached = server.stigg().v1.customers.payment_method.attach(
        "cust-ada", integration_id=integration["id"], payment_method_id=method, vendor_identifier="STRIPE"
    )
    assert attached.data.default_payment_method is not None
    assert attached.data.default_payment_method.billing_id == method
    assert Worker(server.db).drain() == 1  # billing.sync_customer: the customer is made at Stripe now
    stripe_id = customer_row(server, "cust-ada").billing_id
    assert stripe_id is not None
    customer = stripe_emulator.client().v1.customers.retrieve(stripe_id)
    assert customer.invoice_settings.default_payment_method == method
    assert customer.metadata["entitleCustomerId"] == "cust-ada"

    detached = server.stigg().v1.customers.payment_method.detach("cust-ada")
    assert detached.data.default_payment_method is None


def _subscriptions(server: LiveServer) -> list[Subscription]:
    with server.db.read() as s:
        return list(s.scalars(select(Subscription).order_by(Subscription.pk)))
