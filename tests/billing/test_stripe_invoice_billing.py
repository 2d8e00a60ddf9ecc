"""Invoice billing of a sales-led deal (issue 17), against the local Stripe, on SQLite and PostgreSQL:
`paymentCollectionMethod: INVOICE` makes Stripe send the first invoice (open, due after the invoice days,
to the customer's email) instead of charging a card; `POST /api/v1/subscriptions/{id}/invoice/paid` records
it paid out of band; a customer without an email cannot be invoiced (400, nothing written).

Endpoints and who emulates them (tests/support/stripe_emulator.py): Subscriptions and Invoices are
localstripe's, whose boot patch invoices a `send_invoice` subscription instead of charging it and pays an
invoice `paid_out_of_band` without a charge (tests/support/stripe_emulator.py, localstripe.py)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from entitle.jobs.service import Worker
from tests.billing.test_stripe_checkout import new_customer
from tests.billing.test_stripe_subscription_sync import connected_with_pro, paying_customer, provision, subscription_row
from tests.billing.test_stripe_update_sync import stripe_sub
from tests.billing.test_stripe_webhooks import granted, setup, signed_post, stripe_event, webhook_secret
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

_ = webhook_secret  # a fixture


def test_an_invoiced_subscription_is_sent_its_invoice_and_marked_paid_out_of_band(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    new_customer(api, "cust-corp")  # an email, no card: it pays by bank transfer
    ref = provision(
        api,
        "cust-corp",
        "plan-pro",
        billingPeriod="MONTHLY",
        paymentCollectionMethod="INVOICE",
        billingInformation={"invoiceDaysUntilDue": 14},
    )
    Worker(server.db).drain()
    at_stripe = stripe_sub(server, stripe_emulator, ref)
    assert (at_stripe.status, at_stripe.collection_method, at_stripe.days_until_due) == ("active", "send_invoice", 14)
    invoice = stripe_emulator.client().v1.invoices.retrieve(str(at_stripe.latest_invoice))
    assert (invoice.status, invoice.collection_method, invoice.customer_email) == (
        "open",
        "send_invoice",
        "ada@example.com",
    )
    assert invoice.amount_due == 2999 and invoice.due_date == invoice.created + 14 * 86400
    # Service starts on invoice terms, as at Stripe: the subscription does not wait for the transfer.
    sub = api.get(f"/api/v1/subscriptions/{ref}").json()["data"]
    assert (sub["status"], sub["paymentCollectionMethod"]) == ("ACTIVE", "INVOICE")
    (listed,) = server.stigg().v1.customers.list_invoices("cust-corp")
    assert listed.state == "OPEN" and listed.due_date is not None and listed.issue_date is not None
    assert listed.due_date - listed.issue_date == timedelta(days=14)

    resp = api.post(f"/api/v1/subscriptions/{ref}/invoice/paid")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"data": {"id": ref}}
    paid = stripe_emulator.client().v1.invoices.retrieve(invoice.id)
    assert paid.status == "paid" and paid.paid_out_of_band
    assert paid.payment_intent is None  # no card was charged
    (listed,) = server.stigg().v1.customers.list_invoices("cust-corp")
    assert listed.state == "PAID"
    # Nothing open is left to mark: a conflict, not a second payment.
    again = api.post(f"/api/v1/subscriptions/{ref}/invoice/paid")
    assert again.status_code == 409 and again.json()["error"]["code"] == "FAILED_PRECONDITION", again.text
    assert subscription_row(server, ref).status == "ACTIVE"


def test_invoice_billing_needs_the_customers_email_and_an_invoiced_subscription(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    assert api.post("/api/v1/customers", json={"id": "cust-anon"}).status_code == 200
    body = {"customerId": "cust-anon", "planId": "plan-pro", "id": "sub-anon", "paymentCollectionMethod": "INVOICE"}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "CUSTOMER_EMAIL_REQUIRED", resp.text
    assert api.get("/api/v1/subscriptions/sub-anon").status_code == 404
    nested = {"id": "cust-anon-2", "subscriptionParams": {"planId": "plan-pro", "paymentCollectionMethod": "INVOICE"}}
    resp = api.post("/api/v1/customers", json=nested)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "CUSTOMER_EMAIL_REQUIRED", resp.text
    assert api.get("/api/v1/customers/cust-anon-2").status_code == 404  # the customer was not written either

    paying_customer(api, stripe_emulator)
    charged = provision(api, "cust-ada", "plan-pro")
    Worker(server.db).drain()
    resp = api.post(f"/api/v1/subscriptions/{charged}/invoice/paid")
    assert resp.status_code == 409 and "paymentCollectionMethod CHARGE" in resp.text
    assert api.post("/api/v1/subscriptions/nope/invoice/paid").status_code == 404


def test_an_invoice_overdue_fails_the_payment_until_it_is_paid_out_of_band(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    """The documented failure path (docs/stripe.md, "Sales-led deals"): Stripe's `invoice.overdue` marks the
    payment FAILED (entitlements kept); the invoice paid out of band clears it."""
    integration = setup(server, api, stripe_emulator, webhook_secret, localstripe=False)
    new_customer(api, "cust-corp")
    ref = provision(api, "cust-corp", "plan-pro", billingPeriod="MONTHLY", paymentCollectionMethod="INVOICE")
    Worker(server.db).drain()
    invoice_id = str(stripe_sub(server, stripe_emulator, ref).latest_invoice)
    invoice = stripe_emulator.client().v1.invoices.retrieve(invoice_id).to_dict()
    resp = signed_post(api, integration, stripe_event("invoice.overdue", invoice), webhook_secret)
    assert resp.status_code == 200 and resp.json()["data"]["handled"], resp.text
    Worker(server.db).drain()
    sub = api.get(f"/api/v1/subscriptions/{ref}").json()["data"]
    assert (sub["status"], sub["paymentCollection"]) == ("ACTIVE", "FAILED")
    assert granted(server, "cust-corp")

    assert api.post(f"/api/v1/subscriptions/{ref}/invoice/paid").status_code == 200
    sub = api.get(f"/api/v1/subscriptions/{ref}").json()["data"]
    assert (sub["status"], sub["paymentCollection"]) == ("ACTIVE", "NOT_REQUIRED")
