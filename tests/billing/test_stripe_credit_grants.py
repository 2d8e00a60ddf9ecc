"""Paid credit grants invoiced through Stripe (docs/credits.md, "Paid grants"), against the local Stripe, on
SQLite and PostgreSQL: `paymentCollectionMethod: INVOICE` writes the grant PAYMENT_PENDING (no credits),
sends one invoice for its cost, and the invoice's webhooks decide — paid: ACTIVE with its ledger entry, once
however often Stripe delivers; voided: VOIDED, never having held a credit.

Who emulates what (tests/support/stripe_emulator.py): Invoices and invoice items are localstripe's, whose
boot patch (entitle_devtools/stripe_emulator/localstripe.py) makes a one-off draft with
`pending_invoice_items_behavior=exclude`, lets an item join it, and finalizes, voids and pays it out of band.
The webhooks are signed and posted by the test, with the invoice as Stripe holds it."""

from __future__ import annotations

import html
import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from entitle.billing.models import CUSTOMER, BillingLink
from entitle.credits.models import CreditGrant, LedgerEntry
from entitle.jobs.service import Worker
from entitle.push.models import PushEvent
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_checkout import new_customer
from tests.billing.test_stripe_webhooks import signed_post, stripe_event, webhook_secret
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.console import make_user, signed_in
from tests.support.stripe_emulator import StripeEmulator

_ = webhook_secret  # a fixture
_ids = itertools.count()


def _currency(api: httpx.Client) -> str:
    ref = f"credits-{next(_ids)}"
    resp = api.post("/api/v1/credits/custom-currencies", json={"id": ref, "displayName": "AI credits"})
    assert resp.status_code == 200, resp.text
    return ref


def _invoiced(api: httpx.Client, customer: str, currency: str, **extra: Any) -> httpx.Response:
    body = {
        "customerId": customer,
        "currencyId": currency,
        "amount": 1000,
        "displayName": "Top-up",
        "grantType": "PAID",
        "cost": {"amount": 12.5, "currency": "usd"},
        "paymentCollectionMethod": "INVOICE",
        **extra,
    }
    return api.post("/api/v1/credits/grants", json=body)


def _grant(api: httpx.Client, customer: str, ref: str) -> dict[str, Any]:
    listed = api.get("/api/v1/credits/grants", params={"customerId": customer, "limit": 100})
    assert listed.status_code == 200, listed.text
    (found,) = [g for g in listed.json()["data"] if g["id"] == ref]
    return dict(found)


def _balance(api: httpx.Client, customer: str, currency: str) -> tuple[Decimal, Decimal]:
    resp = api.get(f"/api/v1/customers/{customer}/entitlements/check", params={"currencyId": currency})
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    return Decimal(str(data["usageLimit"])), Decimal(str(data["currentUsage"]))


def _ledger(server: LiveServer, grant_ref: str) -> list[tuple[str, Decimal]]:
    with server.db.read() as s:
        grant = s.query(CreditGrant).filter(CreditGrant.ref_id == grant_ref).one()
        entries = s.query(LedgerEntry).filter(LedgerEntry.grant_pk == grant.pk).order_by(LedgerEntry.pk).all()
        return [(e.event_type, e.amount) for e in entries]


def _connected_with(api: httpx.Client, emulator: StripeEmulator, webhook_secret: str, customer: str) -> tuple[str, str]:
    """Stripe connected (its webhooks signed with `webhook_secret`), a new customer and a currency: the
    integration's id and the currency's."""
    integration: str = connect_stripe(api, emulator, webhookSecret=webhook_secret)["id"]
    new_customer(api, customer)
    return integration, _currency(api)


def _customer_at_stripe(server: LiveServer, customer: str) -> str | None:
    with server.db.read() as s:
        from entitle.customers.models import Customer

        row = s.query(Customer).filter(Customer.ref_id == customer).one()
        link = (
            s.query(BillingLink)
            .filter(BillingLink.entity_kind == CUSTOMER, BillingLink.entity_pk == row.pk)
            .one_or_none()
        )
        return link.billing_id if link is not None else None


def test_an_invoiced_grant_holds_no_credits_until_its_invoice_is_paid_once(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    integration, currency = _connected_with(api, stripe_emulator, webhook_secret, "cust-corp")

    # The customer is not at Stripe yet: the answer does not wait for its sync; the worker makes both, in order.
    resp = _invoiced(api, "cust-corp", currency, billingInformation={"invoiceDaysUntilDue": 14})
    assert resp.status_code == 200, resp.text
    first = resp.json()["data"]
    assert (first["status"], first["paymentCollection"], first["invoiceId"]) == ("PAYMENT_PENDING", "PROCESSING", None)
    assert _balance(api, "cust-corp", currency) == (0, 0)  # pending credits are not usable
    Worker(server.db).drain()
    assert _customer_at_stripe(server, "cust-corp") is not None
    first = _grant(api, "cust-corp", first["id"])
    assert first["status"] == "PAYMENT_PENDING" and first["invoiceId"] is not None
    invoice = stripe_emulator.client().v1.invoices.retrieve(first["invoiceId"])
    assert (invoice.status, invoice.collection_method, invoice.amount_due, invoice.currency) == (
        "open",
        "send_invoice",
        1250,
        "usd",
    )
    assert invoice.metadata["entitleCreditGrantId"] == first["id"]
    assert [line.description for line in invoice.lines.data] == ["Top-up: 1000 AI credits"]
    assert invoice.due_date == invoice.created + 14 * 86400
    latest = first["latestInvoice"]
    assert (latest["billingId"], latest["status"], latest["total"], latest["requiresAction"]) == (
        invoice.id,
        "OPEN",
        12.5,
        False,
    )
    assert latest["paymentUrl"] and latest["dueDate"]
    # Consumption never draws on a pending grant: it overdraws.
    consumed = api.post(
        "/api/v1/credits/consumption",
        json={"customerId": "cust-corp", "currencyId": currency, "amount": 30, "idempotencyKey": "use-1"},
    )
    assert consumed.status_code == 200, consumed.text
    assert _balance(api, "cust-corp", currency) == (0, 30)
    assert _ledger(server, first["id"]) == []

    # The customer pays (out of band here); Stripe's invoice.paid starts the grant, which first settles the debt.
    paid = stripe_emulator.client().v1.invoices.pay(invoice.id, params={"paid_out_of_band": True}).to_dict()
    event = stripe_event("invoice.paid", paid)
    for _ in range(2):  # Stripe delivers twice: stored once
        assert signed_post(api, integration, event, webhook_secret).status_code == 200
    again = stripe_event("invoice.payment_succeeded", paid)  # and its older twin, another event id
    assert signed_post(api, integration, again, webhook_secret).status_code == 200
    Worker(server.db).drain()
    first = _grant(api, "cust-corp", first["id"])
    assert (first["status"], first["paymentCollection"], first["latestInvoice"]["status"]) == (
        "ACTIVE",
        "NOT_REQUIRED",
        "PAID",
    )
    assert _balance(api, "cust-corp", currency) == (1000, 30)
    with server.db.read() as s:  # the stream heard the balance move when the grant started (and not before)
        pushed = [e.data for e in s.query(PushEvent).filter(PushEvent.kind == "credits.updated").order_by(PushEvent.id)]
    assert pushed[-1]["currencyId"] == currency and pushed[-1]["usageLimit"] == 1000, pushed[-1]
    assert all(p.get("usageLimit") == 0 for p in pushed[:-1])
    kinds = [kind for kind, _ in _ledger(server, first["id"])]
    assert kinds.count("CREDITS_GRANTED") == 1 and "CREDITS_CONSUMPTION_TRANSFER_TARGET" in kinds

    # The customer is at Stripe now: the next invoiced grant's invoice is made while the request waits.
    resp = _invoiced(api, "cust-corp", currency, cost={"amount": 20, "currency": "usd"})
    assert resp.status_code == 200, resp.text
    second = resp.json()["data"]
    assert second["status"] == "PAYMENT_PENDING" and second["latestInvoice"]["status"] == "OPEN"
    assert stripe_emulator.client().v1.invoices.retrieve(second["invoiceId"]).amount_due == 2000
    Worker(server.db).drain()  # the job finds the invoice made: no second one
    invoices = stripe_emulator.client().v1.invoices.list(params={"customer": _customer_at_stripe(server, "cust-corp")})
    assert sorted(i.id for i in invoices.data) == sorted([first["invoiceId"], second["invoiceId"]])

    # The console's credits page shows each grant's payment state and links its invoice's page.
    with signed_in(server.base_url, make_user(server.db, "ops@example.com", "viewer")) as web:
        page = web.get("/console/customers/cust-corp/credits", params={"currency": currency})
    assert page.status_code == 200
    row = page.text.split(f'data-testid="grant-{second["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert "PAYMENT_PENDING" in row and "payment processing" in row
    link = html.escape(second["latestInvoice"]["paymentUrl"])
    assert f'<a href="{link}" rel="noopener noreferrer" target="_blank">invoice open</a>' in row
    row = page.text.split(f'data-testid="grant-{first["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert "ACTIVE" in row and "invoice paid" in row and "payment " not in row


def test_an_invoice_paid_out_of_band_activates_at_once_and_a_voided_one_voids_the_grant(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    integration, currency = _connected_with(api, stripe_emulator, webhook_secret, "cust-corp")
    assert _invoiced(api, "cust-corp", currency, awaitPaymentConfirmation=False).status_code == 200
    Worker(server.db).drain()  # the customer is at Stripe

    resp = _invoiced(api, "cust-corp", currency, billingInformation={"isInvoicePaid": True})
    assert resp.status_code == 200, resp.text
    grant = resp.json()["data"]
    assert (grant["status"], grant["paymentCollection"], grant["latestInvoice"]["status"]) == (
        "ACTIVE",
        "NOT_REQUIRED",
        "PAID",
    )
    invoice = stripe_emulator.client().v1.invoices.retrieve(grant["invoiceId"])
    assert invoice.status == "paid" and invoice.payment_intent is None  # nothing was charged
    assert _ledger(server, grant["id"]) == [("CREDITS_GRANTED", Decimal(1000))]

    resp = _invoiced(api, "cust-corp", currency)
    pending = resp.json()["data"]
    voided = stripe_emulator.client().v1.invoices.void_invoice(pending["invoiceId"]).to_dict()
    assert signed_post(api, integration, stripe_event("invoice.voided", voided), webhook_secret).status_code == 200
    Worker(server.db).drain()
    pending = _grant(api, "cust-corp", pending["id"])
    assert (pending["status"], pending["latestInvoice"]["status"]) == ("VOIDED", "CANCELED")
    assert pending["voidedAt"] is not None and _ledger(server, pending["id"]) == []
    # A late invoice.paid for a voided grant grants nothing.
    late = stripe_event("invoice.paid", {**voided, "status": "paid"})
    assert signed_post(api, integration, late, webhook_secret).status_code == 200
    Worker(server.db).drain()
    assert _grant(api, "cust-corp", pending["id"])["status"] == "VOIDED"
    assert _balance(api, "cust-corp", currency) == (1000, 0)

    # A failed payment leaves the grant waiting (the invoice can still be paid), collection FAILED.
    waiting = _invoiced(api, "cust-corp", currency).json()["data"]
    open_invoice = stripe_emulator.client().v1.invoices.retrieve(waiting["invoiceId"]).to_dict()
    failure = {
        **open_invoice,
        "last_finalization_error": {"message": "Your card was declined.", "code": "card_declined"},
    }
    assert (
        signed_post(api, integration, stripe_event("invoice.payment_failed", failure), webhook_secret).status_code
        == 200
    )
    Worker(server.db).drain()
    waiting = _grant(api, "cust-corp", waiting["id"])
    assert (waiting["status"], waiting["paymentCollection"]) == ("PAYMENT_PENDING", "FAILED")
    assert waiting["latestInvoice"]["errorMessage"] == "Your card was declined."
    # Voided in Entitle while it waits: its invoice is voided at Stripe, so nobody pays for it.
    resp = api.post(f"/api/v1/credits/grants/{waiting['id']}/void")
    assert resp.status_code == 200 and resp.json()["data"]["status"] == "VOIDED", resp.text
    Worker(server.db).drain()
    assert stripe_emulator.client().v1.invoices.retrieve(waiting["invoiceId"]).status == "void"
    assert _grant(api, "cust-corp", waiting["id"])["latestInvoice"]["status"] == "CANCELED"
    assert _ledger(server, waiting["id"]) == [] and _balance(api, "cust-corp", currency) == (1000, 0)


def test_invoiced_grants_refuse_what_cannot_be_invoiced_exactly(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    currency = _currency(api)
    assert api.post("/api/v1/customers", json={"id": "cust-anon"}).status_code == 200
    resp = _invoiced(api, "cust-anon", currency)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "CUSTOMER_EMAIL_REQUIRED", resp.text
    new_customer(api, "cust-corp")
    for cost, message in (
        ({"amount": 12.345, "currency": "usd"}, "decimal places"),
        ({"amount": 12.5, "currency": "jpy"}, "decimal places"),
        ({"amount": 0, "currency": "usd"}, "greater than 0"),
    ):
        resp = _invoiced(api, "cust-corp", currency, cost=cost)
        assert resp.status_code == 400 and message in resp.json()["error"]["message"], resp.text
    resp = _invoiced(api, "cust-corp", currency, grantType="PROMOTIONAL")
    assert resp.status_code == 400, resp.text
    assert api.get("/api/v1/credits/grants", params={"customerId": "cust-corp"}).json()["data"] == []

    # A zero-decimal currency is invoiced in whole units: 1500 JPY is 1500 at Stripe, not 150000.
    resp = _invoiced(
        api, "cust-corp", currency, cost={"amount": 1500, "currency": "jpy"}, awaitPaymentConfirmation=False
    )
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    made = _grant(api, "cust-corp", resp.json()["data"]["id"])
    invoice = stripe_emulator.client().v1.invoices.retrieve(made["invoiceId"])
    assert (invoice.amount_due, invoice.currency) == (1500, "jpy")
    assert made["latestInvoice"]["total"] == 1500
    assert invoice.due_date is not None and timedelta(seconds=invoice.due_date - invoice.created) == timedelta(days=30)


@pytest.mark.emulator_only
def test_a_retried_invoicing_job_makes_one_invoice(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    """Stripe made the invoice's line but the answer was lost, while the request waited: the answer says
    PAYMENT_PENDING, and the job retries with the same keys, so the grant gets one invoice of one line."""
    connect_stripe(api, stripe_emulator)
    new_customer(api, "cust-corp")
    currency = _currency(api)
    assert _invoiced(api, "cust-corp", currency, awaitPaymentConfirmation=False).status_code == 200
    worker = Worker(server.db)
    worker.drain()
    stripe_emulator.fail_next(1, path_prefix="/v1/invoiceitems", status=500, after_execution=True)
    resp = _invoiced(api, "cust-corp", currency)
    assert resp.status_code == 200, resp.text
    grant = resp.json()["data"]
    assert grant["status"] == "PAYMENT_PENDING" and grant["invoiceId"] is None  # the job will make it
    worker.drain()
    assert _grant(api, "cust-corp", grant["id"])["invoiceId"] is None  # not due yet: the request might still run
    test_clock.advance(timedelta(minutes=2))
    worker.drain()
    grant = _grant(api, "cust-corp", grant["id"])
    assert grant["invoiceId"] is not None and grant["latestInvoice"]["status"] == "OPEN"
    customer = _customer_at_stripe(server, "cust-corp")
    invoices = stripe_emulator.client().v1.invoices.list(params={"customer": customer}).data
    lines = stripe_emulator.client().v1.invoices.retrieve(grant["invoiceId"]).lines.data
    assert len(invoices) == 2 and [line.amount for line in lines] == [1250]
    test_clock.advance(timedelta(hours=1))
    worker.drain()  # nothing left to do
    assert len(stripe_emulator.client().v1.invoices.list(params={"customer": customer}).data) == 2


# Test cards (localstripe's, as Stripe's): charged at once; declined when charged; 3-D Secure first.
PAID_AT_ONCE, DECLINED, NEEDS_3DS = "4242424242424242", "4000000000000341", "4000002500003155"


def _card_customer(server: LiveServer, api: httpx.Client, emulator: StripeEmulator, ref: str, number: str) -> None:
    card: Any = {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"}}
    method = emulator.client().v1.payment_methods.create(params=card)
    body = {
        "id": ref,
        "name": ref,
        "email": f"{ref}@example.com",
        "defaultPaymentMethod": {"billingId": method.id},
        # Billing information makes the customer at Stripe now (else its first paid grant would).
        "passthrough": {"stripe": {"billingAddress": {"country": "US"}}},
    }
    resp = api.post("/api/v1/customers", json=body)
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()  # the customer and its card are at Stripe
    assert _customer_at_stripe(server, ref) is not None


def _charged(api: httpx.Client, customer: str, currency: str, **extra: Any) -> dict[str, Any]:
    resp = _invoiced(api, customer, currency, paymentCollectionMethod="CHARGE", **extra)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["data"])


@pytest.mark.emulator_only
def test_a_charged_grant_is_active_when_the_card_pays_and_says_why_when_it_does_not(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    integration = connect_stripe(api, stripe_emulator, webhookSecret=webhook_secret)["id"]
    currency = _currency(api)
    _card_customer(server, api, stripe_emulator, "cust-pays", PAID_AT_ONCE)
    _card_customer(server, api, stripe_emulator, "cust-declined", DECLINED)
    _card_customer(server, api, stripe_emulator, "cust-3ds", NEEDS_3DS)

    # The card pays while the request waits: ACTIVE in the answer, the credits usable at once.
    paid = _charged(api, "cust-pays", currency)
    assert (paid["status"], paid["paymentCollection"], paid["latestInvoice"]["status"]) == (
        "ACTIVE",
        "NOT_REQUIRED",
        "PAID",
    )
    invoice = stripe_emulator.client().v1.invoices.retrieve(paid["invoiceId"])
    assert (invoice.status, invoice.collection_method, invoice.amount_paid) == ("paid", "charge_automatically", 1250)
    assert _balance(api, "cust-pays", currency) == (1000, 0)
    assert _ledger(server, paid["id"]) == [("CREDITS_GRANTED", Decimal(1000))]

    # Declined: the grant exists and waits (200: a retried request would grant twice), FAILED with the reason.
    declined = _charged(api, "cust-declined", currency)
    assert (declined["status"], declined["paymentCollection"]) == ("PAYMENT_PENDING", "FAILED")
    assert declined["latestInvoice"]["status"] == "OPEN" and declined["latestInvoice"]["errorMessage"]
    assert declined["latestInvoice"]["paymentUrl"]  # where the customer can pay with another card
    assert _balance(api, "cust-declined", currency) == (0, 0) and _ledger(server, declined["id"]) == []

    # 3-D Secure: the customer must act; the answer says so and where. Once paid, invoice.paid starts it.
    waits = _charged(api, "cust-3ds", currency)
    assert (waits["status"], waits["paymentCollection"]) == ("PAYMENT_PENDING", "ACTION_REQUIRED")
    assert waits["latestInvoice"]["requiresAction"] is True
    settled = stripe_emulator.client().v1.invoices.pay(waits["invoiceId"], params={"paid_out_of_band": True})
    assert (
        signed_post(api, integration, stripe_event("invoice.paid", settled.to_dict()), webhook_secret).status_code
        == 200
    )
    Worker(server.db).drain()
    waits = _grant(api, "cust-3ds", waits["id"])
    assert (waits["status"], waits["paymentCollection"]) == ("ACTIVE", "NOT_REQUIRED")
    assert _balance(api, "cust-3ds", currency) == (1000, 0)


@pytest.mark.emulator_only
def test_a_charge_not_awaited_is_processing_until_the_worker_charges(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    currency = _currency(api)
    _card_customer(server, api, stripe_emulator, "cust-pays", PAID_AT_ONCE)
    grant = _charged(api, "cust-pays", currency, awaitPaymentConfirmation=False)
    assert (grant["status"], grant["paymentCollection"], grant["invoiceId"]) == ("PAYMENT_PENDING", "PROCESSING", None)
    assert _balance(api, "cust-pays", currency) == (0, 0)
    Worker(server.db).drain()
    grant = _grant(api, "cust-pays", grant["id"])
    assert (grant["status"], grant["paymentCollection"]) == ("ACTIVE", "NOT_REQUIRED")
    Worker(server.db).drain()  # nothing charged twice
    customer = _customer_at_stripe(server, "cust-pays")
    charges = stripe_emulator.client().v1.charges.list(params={"customer": customer}).data
    assert [c.amount for c in charges] == [1250]

    # CHARGE needs a payment method, and takes no invoice terms.
    new_customer(api, "cust-nocard")
    resp = _invoiced(api, "cust-nocard", currency, paymentCollectionMethod="CHARGE")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "PAYMENT_METHOD_REQUIRED", resp.text
    resp = _invoiced(
        api, "cust-pays", currency, paymentCollectionMethod="CHARGE", billingInformation={"invoiceDaysUntilDue": 3}
    )
    assert resp.status_code == 400 and "INVOICE" in resp.json()["error"]["message"], resp.text


def test_a_grant_unpaid_when_it_was_to_expire_expires_and_its_invoice_is_voided(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connect_stripe(api, stripe_emulator)
    new_customer(api, "cust-corp")
    currency = _currency(api)
    expire = (test_clock.now() + timedelta(days=7)).isoformat()
    grant = _invoiced(api, "cust-corp", currency, expireAt=expire, awaitPaymentConfirmation=False).json()["data"]
    Worker(server.db).drain()
    grant = _grant(api, "cust-corp", grant["id"])
    assert grant["status"] == "PAYMENT_PENDING" and grant["invoiceId"] is not None
    test_clock.advance(timedelta(days=8))
    assert _grant(api, "cust-corp", grant["id"])["status"] == "EXPIRED"  # said before the job ran, too
    Worker(server.db).drain()
    grant = _grant(api, "cust-corp", grant["id"])
    assert (grant["status"], grant["latestInvoice"]["status"]) == ("EXPIRED", "CANCELED")
    assert stripe_emulator.client().v1.invoices.retrieve(grant["invoiceId"]).status == "void"
    assert _ledger(server, grant["id"]) == [] and _balance(api, "cust-corp", currency) == (0, 0)


def test_a_late_webhook_of_an_older_invoice_state_leaves_the_newer_one_recorded(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    """Stripe does not deliver webhooks in order: a payment failure sent while the invoice was open may land
    after `invoice.paid`. The grant stays ACTIVE (only a waiting grant reacts), and its latestInvoice used to
    go back to OPEN with the failure's message, telling the customer's support an unpaid story."""
    integration, currency = _connected_with(api, stripe_emulator, webhook_secret, "cust-late")
    resp = _invoiced(api, "cust-late", currency)
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    grant = _grant(api, "cust-late", resp.json()["data"]["id"])
    stripe = stripe_emulator.client().v1.invoices
    opened = stripe.retrieve(grant["invoiceId"]).to_dict()
    assert opened["status"] == "open"
    paid = stripe.pay(grant["invoiceId"], params={"paid_out_of_band": True}).to_dict()
    assert signed_post(api, integration, stripe_event("invoice.paid", paid), webhook_secret).status_code == 200
    late = stripe_event("invoice.payment_failed", opened)
    assert signed_post(api, integration, late, webhook_secret).status_code == 200
    Worker(server.db).drain()
    grant = _grant(api, "cust-late", grant["id"])
    assert (grant["status"], grant["latestInvoice"]["status"]) == ("ACTIVE", "PAID")
    assert grant["latestInvoice"]["errorMessage"] is None
    assert _balance(api, "cust-late", currency) == (1000, 0)


@pytest.mark.parametrize(
    ("recorded", "reported", "replaces"),
    [
        (None, {"billingId": "in_1", "status": "OPEN"}, True),
        ({"billingId": "in_1", "status": "OPEN"}, {"billingId": "in_1", "status": "OPEN"}, True),
        ({"billingId": "in_1", "status": "OPEN"}, {"billingId": "in_1", "status": "PAID"}, True),
        (
            {"billingId": "in_1", "status": "CANCELED"},
            {"billingId": "in_1", "status": "PAID"},
            True,
        ),  # uncollectible, paid
        ({"billingId": "in_1", "status": "PAID"}, {"billingId": "in_1", "status": "OPEN"}, False),
        ({"billingId": "in_1", "status": "PAID"}, {"billingId": "in_1", "status": "CANCELED"}, False),
        ({"billingId": "in_1", "status": "CANCELED"}, {"billingId": "in_1", "status": "OPEN"}, False),
        ({"billingId": "in_1", "status": "PAID"}, {"billingId": "in_2", "status": "OPEN"}, True),  # another invoice
    ],
)
def test_an_invoice_state_replaces_the_recorded_one_unless_it_is_behind_it(
    recorded: dict[str, object] | None, reported: dict[str, object], replaces: bool
) -> None:
    from entitle.credits.rules import invoice_supersedes

    assert invoice_supersedes(recorded, reported) is replaces
