"""PAYMENT_REQUIRED without `checkoutOptions`: a paid plan Stripe must charge, for a customer with no payment
method, answers with a Stripe Checkout URL (the default success/cancel URLs are settings), and everything
that needs no new card is provisioned as before. Against the local Stripe (or real Stripe test mode, see
tests/billing/conftest.py), on SQLite and PostgreSQL.

Endpoints and who emulates them (see tests/support/stripe_emulator.py): Checkout Sessions (POST
/v1/checkout/sessions, GET /v1/checkout/sessions[/{id}]) are the stand-in's; Customers, Payment Methods
and Subscriptions are localstripe's; Prices the stand-in's, mirrored as localstripe Plans. Objects are
found by id or by their customer, never as "the only one in the account".
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from entitle.billing import subscription_sync
from entitle.billing.checkout import DEFAULT_SUCCESS_PATH
from entitle.jobs.service import Worker
from tests.billing.conftest import card_customer
from tests.billing.test_stripe_catalog_sync import make_plan, publish_plan
from tests.billing.test_stripe_checkout import connected, customer_subscriptions, new_customer, sub_link
from tests.billing.test_stripe_subscription_sync import customer_row, jobs_of, subscription_row
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator


@pytest.fixture(autouse=True)
def checkout_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A known public address, and no default checkout URLs unless a test sets them."""
    monkeypatch.setenv("ENTITLE_CONSOLE_URL", "https://entitle.example.com")
    monkeypatch.delenv("ENTITLE_CHECKOUT_SUCCESS_URL", raising=False)
    monkeypatch.delenv("ENTITLE_CHECKOUT_CANCEL_URL", raising=False)


def sessions_of(emulator: StripeEmulator, customer_id: str | None) -> list[Any]:
    assert customer_id is not None
    found = emulator.client().v1.checkout.sessions.list(params={"customer": customer_id, "limit": 100}).data
    return [s for s in found if s.customer == customer_id]


def provision(api: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def test_a_paid_plan_and_no_payment_method_answer_payment_required_with_a_checkout_url(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected(server, api, stripe_emulator)
    new_customer(api)
    # No checkoutOptions: through the official client, the contract's PAYMENT_REQUIRED shape all the same.
    data = (
        server.stigg()
        .v1.subscriptions.provision(customer_id="cust-ada", plan_id="plan-pro", id="sub-ada", billing_period="MONTHLY")
        .data
    )
    assert (data.id, data.status) == ("sub-ada", "PAYMENT_REQUIRED")
    assert data.checkout_url and data.checkout_billing_id
    assert data.subscription is not None
    assert (data.subscription.status, data.subscription.payment_collection) == ("PAYMENT_PENDING", "ACTION_REQUIRED")

    stripe_customer = customer_row(server, "cust-ada").billing_id
    session = stripe_emulator.client().v1.checkout.sessions.retrieve(data.checkout_billing_id)
    assert (session.url, session.customer, session.mode) == (data.checkout_url, stripe_customer, "subscription")
    # Stripe requires a success URL: the default one, on Entitle's public address, with Stripe's placeholder.
    assert session.success_url == "https://entitle.example.com" + DEFAULT_SUCCESS_PATH
    assert "{CHECKOUT_SESSION_ID}" in session.success_url and session.cancel_url is None
    assert (session.amount_total, session.currency) == (2999, "usd")
    assert session.metadata["entitleSubscriptionId"] == "sub-ada"
    assert session.allow_promotion_codes is False and session.billing_address_collection == "auto"

    sub = subscription_row(server, "sub-ada")
    assert (sub.status, sub.payment_collection, sub.billing_id) == ("PAYMENT_PENDING", "ACTION_REQUIRED", None)
    assert sub_link(server, "sub-ada").details["checkout"]["sessionId"] == session.id
    # The session makes the Stripe subscription: no sync job; the settlement window is running.
    assert jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB) == []
    assert len(jobs_of(server, subscription_sync.SETTLE_PAYMENT_JOB)) == 1
    Worker(server.db).drain()
    assert customer_subscriptions(stripe_emulator, stripe_customer) == []
    assert sessions_of(stripe_emulator, stripe_customer) == [session]  # one checkout, no second one


def test_the_default_checkout_urls_are_settings(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTITLE_CHECKOUT_SUCCESS_URL", "https://app.example.com/thanks?s={CHECKOUT_SESSION_ID}")
    monkeypatch.setenv("ENTITLE_CHECKOUT_CANCEL_URL", "https://app.example.com/pricing")
    connected(server, api, stripe_emulator)
    new_customer(api)
    data = provision(api, customerId="cust-ada", planId="plan-pro", id="sub-ada")
    assert data["status"] == "PAYMENT_REQUIRED"
    session = stripe_emulator.client().v1.checkout.sessions.retrieve(data["checkoutBillingId"])
    assert session.success_url == "https://app.example.com/thanks?s={CHECKOUT_SESSION_ID}"
    assert session.cancel_url == "https://app.example.com/pricing"
    # checkoutOptions, when given, win over the settings.
    new_customer(api, "cust-bob")
    options = {"successUrl": "https://app.example.com/welcome", "cancelUrl": "https://app.example.com/back"}
    data = provision(api, customerId="cust-bob", planId="plan-pro", id="sub-bob", checkoutOptions=options)
    session = stripe_emulator.client().v1.checkout.sessions.retrieve(data["checkoutBillingId"])
    assert (session.success_url, session.cancel_url) == (options["successUrl"], options["cancelUrl"])


def test_no_checkout_when_stripe_has_no_new_card_to_collect(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """Invoice collection, a card on file, a trial, a free plan, customer provisioning (which cannot wait
    for Stripe): no Checkout, provisioned as before."""
    connected(server, api, stripe_emulator)
    body = {"id": "plan-free", "displayName": "Free", "productId": "acme"}
    assert api.post("/api/v1/plans", json=body).status_code == 200
    publish_plan(api, "plan-free")
    Worker(server.db).drain()

    def synced_and_waiting(ref: str, data: dict[str, Any]) -> None:
        assert data["status"] == "SUCCESS" and data.get("checkoutUrl") is None, data
        sub = subscription_row(server, ref)
        assert (sub.status, sub.payment_collection) == ("PAYMENT_PENDING", "PROCESSING")  # Stripe will bill it
        assert "checkout" not in sub_link(server, ref).details

    new_customer(api, "cust-invoice")
    data = provision(api, customerId="cust-invoice", planId="plan-pro", id="sub-inv", paymentCollectionMethod="INVOICE")
    synced_and_waiting("sub-inv", data)

    card_customer(api, stripe_emulator, "cust-card")
    synced_and_waiting("sub-card", provision(api, customerId="cust-card", planId="plan-pro", id="sub-card"))

    new_customer(api, "cust-trial")
    trial = {"isTrial": True, "trialEndDate": "2099-01-01T00:00:00Z"}
    data = provision(api, customerId="cust-trial", planId="plan-pro", id="sub-trial", trialOverrideConfiguration=trial)
    assert (data["status"], data["subscription"]["status"]) == ("SUCCESS", "IN_TRIAL")

    new_customer(api, "cust-free")
    data = provision(api, customerId="cust-free", planId="plan-free", id="sub-free")
    assert (data["status"], data["subscription"]["status"]) == ("SUCCESS", "ACTIVE")

    params = {"planId": "plan-pro", "id": "sub-nested"}
    resp = api.post("/api/v1/customers", json={"id": "cust-nested", "subscriptionParams": params})
    assert resp.status_code == 200, resp.text  # (with checkoutOptions this is a 400: see test_stripe_checkout)
    sub = subscription_row(server, "sub-nested")
    assert (sub.status, sub.payment_collection) == ("PAYMENT_PENDING", "PROCESSING")

    syncs = {j.payload["subscriptionPk"] for j in jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB)}
    expected = {subscription_row(server, ref).pk for ref in ("sub-inv", "sub-card", "sub-nested")}
    assert syncs == expected  # the ordinary sync for the three paid ones
    for ref in ("cust-invoice", "cust-card", "cust-trial", "cust-free", "cust-nested"):
        stripe_id = customer_row(server, ref).billing_id
        assert stripe_id is None or sessions_of(stripe_emulator, stripe_id) == []


def test_changing_a_paid_subscription_opens_no_checkout(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """A Stripe Checkout starts new subscriptions only: an upgrade of a paid one is provisioned as before."""
    connected(server, api, stripe_emulator)
    new_customer(api)
    data = provision(api, customerId="cust-ada", planId="plan-pro", id="sub-ada", paymentCollectionMethod="INVOICE")
    assert data["status"] == "SUCCESS"
    make_plan(api, "plan-team", monthly=99)
    Worker(server.db).drain()
    data = provision(api, customerId="cust-ada", planId="plan-team", id="sub-team")
    assert data["status"] == "SUCCESS" and data.get("checkoutUrl") is None
    assert subscription_row(server, "sub-team").payment_collection == "PROCESSING"
    assert sessions_of(stripe_emulator, customer_row(server, "cust-ada").billing_id) == []
