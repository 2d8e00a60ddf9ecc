"""`invoice.payment_failed` from Stripe, end to end: a declined first payment keeps the subscription
PAYMENT_PENDING with no entitlements, and the application's webhook endpoint (`/api/v1/webhooks`) gets
`customer.payment_failed` with the invoice's id, amount due, currency, attempt count and failure reason,
signed (Standard Webhooks), on SQLite and PostgreSQL.

Who does what: localstripe declines the card after 3-D Secure (test card 4000008260003178, authenticated
with its `POST /v1/payment_intents/{id}/_authenticate`) and itself signs and posts `invoice.payment_failed`
to Entitle's inbound endpoint (see tests/billing/test_stripe_webhooks.py); customers, subscriptions,
invoices and payment intents are localstripe's, prices the stand-in's. The outbound receiver is a small
HTTP server on 127.0.0.1 (tests/test_webhooks.py's). Emulator only: real Stripe cannot post to 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from entitle.billing.inbound import payment_failure
from entitle.billing.models import PROCESSED
from entitle.jobs.service import Worker
from tests import test_webhooks
from tests.billing import test_stripe_webhooks as stripe_webhooks
from tests.billing.test_stripe_subscription_sync import provision, stripe_subscriptions, subscription_row
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator
from tests.test_webhooks import create_hook

# Fixtures of the modules this one builds on: the outbound receiver, and localstripe's webhook settings.
receivers = test_webhooks.receivers
webhook_secret = stripe_webhooks.webhook_secret
localstripe_webhooks = stripe_webhooks.localstripe_webhooks


@pytest.fixture(autouse=True)
def private_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbound receiver listens on 127.0.0.1 over http: allowed only with the local-development setting."""
    monkeypatch.setenv("ENTITLE_WEBHOOKS_ALLOW_PRIVATE", "true")


@pytest.mark.emulator_only
def test_a_declined_payment_keeps_the_subscription_pending_and_tells_the_application_why(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    webhook_secret: str,
    localstripe_webhooks: None,
    receivers: Any,
) -> None:
    stripe_webhooks.setup(server, api, stripe_emulator, webhook_secret)
    receiver = receivers()
    hook = create_hook(api, receiver.url, ["customer.payment_failed"])
    stripe_webhooks.customer_with_card(api, stripe_emulator, "cust-declined", stripe_webhooks.DECLINED_AFTER_3DS)
    ref = provision(api, "cust-declined", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    (stripe_sub,) = [
        s for s in stripe_subscriptions(stripe_emulator) if s.metadata.to_dict().get("entitleSubscriptionId") == ref
    ]
    assert stripe_webhooks.authenticate(stripe_emulator, stripe_sub.id) == 402  # authenticated, then declined

    stripe_webhooks.wait_for_event(server, "invoice.payment_failed")
    Worker(server.db).drain()  # processes the event, then delivers the outbound webhook it enqueued
    (failed,) = stripe_webhooks.events_of(server, "invoice.payment_failed")
    assert failed.status == PROCESSED
    row = subscription_row(server, ref)
    assert (row.status, row.payment_collection) == ("PAYMENT_PENDING", "FAILED")
    assert not stripe_webhooks.granted(server, "cust-declined")

    (request,) = receiver.requests
    event = Webhook(hook["secret"]).verify(request.body, request.headers)  # raises unless signed with it
    assert event["type"] == "customer.payment_failed"
    invoice = stripe_emulator.client().v1.invoices.retrieve(str(stripe_sub.latest_invoice))
    assert invoice.status == "open" and invoice.amount_due == 2999
    data = event["data"]
    assert (data["customerId"], data["subscriptionId"], data["planId"]) == ("cust-declined", ref, "plan-pro")
    assert (data["status"], data["paymentCollection"]) == ("PAYMENT_PENDING", "FAILED")
    assert data["details"] == {
        "invoiceId": invoice.id,
        "amountDue": 29.99,
        "currency": "usd",
        "attemptCount": invoice.attempt_count,
        "reason": "Your card was declined.",
        "failureCode": "card_declined",
    }


# -- what the details are read from, across Stripe's invoice shapes -------------------------------------


@pytest.mark.parametrize(
    ("invoice", "details"),
    [
        pytest.param(  # older API versions: the charge, expanded in the event
            {
                "id": "in_1",
                "amount_due": 2999,
                "currency": "USD",
                "attempt_count": 2,
                "charge": {
                    "id": "ch_1",
                    "failure_message": "Your card has insufficient funds.",
                    "failure_code": "card_declined",
                },
                "payment_intent": "pi_1",
            },
            {
                "invoiceId": "in_1",
                "amountDue": 29.99,
                "currency": "usd",
                "attemptCount": 2,
                "reason": "Your card has insufficient funds.",
                "failureCode": "card_declined",
            },
            id="charge",
        ),
        pytest.param(  # the payment intent's last error wins over the charge; a decline code over its code
            {
                "id": "in_2",
                "amount_due": 500,
                "currency": "jpy",
                "attempt_count": 1,
                "charge": {"failure_message": "Declined", "failure_code": "card_declined"},
                "payment_intent": {
                    "id": "pi_2",
                    "last_payment_error": {
                        "message": "Your card was declined.",
                        "code": "card_declined",
                        "decline_code": "insufficient_funds",
                    },
                },
            },
            {
                "invoiceId": "in_2",
                "amountDue": 500,  # a zero-decimal currency: minor units are major units
                "currency": "jpy",
                "attemptCount": 1,
                "reason": "Your card was declined.",
                "failureCode": "insufficient_funds",
            },
            id="payment-intent",
        ),
        pytest.param(  # 2025+ API versions carry neither: what is there is sent, nothing is made up
            {"id": "in_3", "amount_due": 1000, "currency": "eur", "attempt_count": 3, "charge": None},
            {"invoiceId": "in_3", "amountDue": 10, "currency": "eur", "attemptCount": 3},
            id="no-error-in-the-event",
        ),
        pytest.param(
            {
                "id": "in_4",
                "last_finalization_error": {"message": "No tax location", "code": "customer_tax_location_invalid"},
            },
            {"invoiceId": "in_4", "reason": "No tax location", "failureCode": "customer_tax_location_invalid"},
            id="finalization-error",
        ),
    ],
)
def test_the_failure_details_come_from_the_invoice(invoice: dict[str, Any], details: dict[str, Any]) -> None:
    assert payment_failure({"object": "invoice", **invoice}) == details
