"""Webhooks from Stripe: the inbound endpoint, payment outcomes, cancellations, and the settlement window,
on SQLite and PostgreSQL.

Who sends what (see tests/support/stripe_emulator.py for the API side):

- Signed by localstripe itself: localstripe is pointed at the live server's inbound URL with
  `POST /_config/webhooks/{name}` (url, secret), so it signs (HMAC-SHA256 of `<t>.<body>`, the
  `Stripe-Signature` header) and posts the events it emits: `invoice.created`,
  `invoice.payment_succeeded` (Stripe's twin of `invoice.paid`), `invoice.payment_failed`,
  `customer.subscription.deleted` (and others Entitle answers and drops). Payment outcomes are driven
  through localstripe's 3-D Secure test cards: 4000002500003155 (authentication needed, then paid) and
  4000008260003178 (authentication needed, then declined); the test completes authentication with
  localstripe's `POST /v1/payment_intents/{id}/_authenticate`, localstripe's stand-in for the browser.
- Hand-built and signed here with `stripe.WebhookSignature.generate_signature_header` (the scheme Stripe
  uses), for what localstripe never emits: `invoice.paid`, `payment_method.attached`,
  `customer.subscription.updated`, `checkout.session.completed`, a renewal's draft `invoice.created`,
  and deliveries of one event id twice or with a bad signature.

Customers, subscriptions, invoices, payment intents and payment methods are localstripe's; prices are the
stand-in's, mirrored as localstripe plans.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import func, select

from entitle.billing import inbound, subscription_sync
from entitle.billing.models import IGNORED, PROCESSED, SUBSCRIPTION, BillingEvent
from entitle.jobs.models import DEAD, PENDING, SUCCEEDED, Job
from entitle.jobs.service import Worker
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of, make_plan, product_of, publish_plan
from tests.billing.test_stripe_subscription_sync import jobs_of, provision, stripe_subscriptions, subscription_row
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator

# Real Stripe test mode cannot post webhooks to a server on 127.0.0.1, nor take raw test card numbers or
# localstripe's 3-D Secure shortcut: these tests run against the emulator only.
pytestmark = pytest.mark.emulator_only

PAID_AFTER_3DS = "4000002500003155"
DECLINED_AFTER_3DS = "4000008260003178"
PAID_AT_ONCE = "4242424242424242"


@pytest.fixture
def webhook_secret() -> str:
    return f"whsec_{secrets.token_hex(16)}"


@pytest.fixture
def localstripe_webhooks(stripe_emulator: StripeEmulator) -> Iterator[None]:
    yield
    # Silence the endpoint afterwards: localstripe keeps webhook settings across its data resets.
    _configure_localstripe(stripe_emulator, "http://127.0.0.1:9/", "whsec_silenced", events=[])


def _configure_localstripe(emulator: StripeEmulator, url: str, secret: str, events: list[str] | None) -> None:
    body: dict[str, Any] = {"url": url, "secret": secret}
    if events is not None:
        body["events"] = events
    resp = httpx.post(f"{emulator.localstripe_base}/_config/webhooks/entitle", json=body, timeout=10)
    assert resp.status_code == 200, resp.text


def inbound_path(integration_id: str) -> str:
    return f"/api/v1/integrations/{integration_id}/webhooks/stripe"


def setup(
    server: LiveServer,
    api: httpx.Client,
    emulator: StripeEmulator,
    secret: str,
    *,
    localstripe: bool = True,
    **settings: Any,
) -> str:
    """Stripe connected with a webhook secret, localstripe sending its signed events to the live server,
    and plan-pro (29.99 monthly, entitlement `sso`) published and synced. Returns the integration id."""
    integration = connect_stripe(api, emulator, webhookSecret=secret, **settings)
    if localstripe:
        _configure_localstripe(emulator, server.base_url + inbound_path(integration["id"]), secret, events=None)
    client = server.stigg()
    client.v1.features.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    make_plan(api, publish=False)
    client.v1.plans.entitlements.create("plan-pro", entitlements=[{"type": "FEATURE", "id": "sso"}])
    publish_plan(api, "plan-pro")
    # The plan's sync, plus whatever events localstripe sent back meanwhile (their timing varies): what
    # counts is that the plan is at Stripe.
    assert Worker(server.db).drain() >= 1
    assert product_of(server, emulator, "plan-pro").name == "Acme Pro Plan"
    return str(integration["id"])


def customer_with_card(api: httpx.Client, emulator: StripeEmulator, ref: str, number: str) -> str:
    card: Any = {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"}}
    method = emulator.client().v1.payment_methods.create(params=card)
    body = {"id": ref, "name": ref, "email": f"{ref}@example.com", "defaultPaymentMethod": {"billingId": method.id}}
    resp = api.post("/api/v1/customers", json=body)
    assert resp.status_code == 200, resp.text
    return method.id


def granted(server: LiveServer, customer: str, feature: str = "sso") -> bool:
    return bool(server.stigg().v1.customers.check_entitlement(customer, feature_id=feature).data.is_granted)


def events_of(server: LiveServer, event_type: str | None = None) -> list[BillingEvent]:
    with server.db.read() as s:
        stmt = select(BillingEvent).order_by(BillingEvent.pk)
        if event_type is not None:
            stmt = stmt.where(BillingEvent.event_type == event_type)
        return list(s.scalars(stmt))


def wait_for_event(server: LiveServer, event_type: str, count: int = 1, timeout: float = 20) -> list[BillingEvent]:
    """localstripe posts its events a second after the change; wait until they are stored."""
    deadline = time.monotonic() + timeout
    while True:
        found = events_of(server, event_type)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event_type} event arrived; stored: {[e.event_type for e in events_of(server)]}")
        time.sleep(0.1)


def authenticate(emulator: StripeEmulator, stripe_sub_id: str) -> int:
    """Complete 3-D Secure for the subscription's first invoice, as the customer's browser would."""
    client = emulator.client()
    invoice_id = client.v1.subscriptions.retrieve(stripe_sub_id).latest_invoice
    assert isinstance(invoice_id, str)
    invoice = client.v1.invoices.retrieve(invoice_id)
    intent_id = invoice["payment_intent"]
    intent = client.v1.payment_intents.retrieve(intent_id)
    assert intent.status == "requires_action"
    resp = httpx.post(
        f"{emulator.localstripe_base}/v1/payment_intents/{intent_id}/_authenticate",
        data={"client_secret": intent.client_secret, "success": "true", "key": "pk_test_entitle_browser"},
        timeout=10,
    )
    return resp.status_code


def signed_post(
    api: httpx.Client, integration_id: str, event: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> httpx.Response:
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return api.post(
        inbound_path(integration_id),
        content=body.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "api_version": "2026-10-28.endive",
        "data": {"object": obj},
    }


def pending_subscription(server: LiveServer, api: httpx.Client, emulator: StripeEmulator, customer: str) -> Any:
    """A paid subscription whose first payment waits for 3-D Secure: PAYMENT_PENDING, synced to Stripe."""
    customer_with_card(api, emulator, customer, PAID_AFTER_3DS)
    ref = provision(api, customer, "plan-pro", billingPeriod="MONTHLY")
    assert Worker(server.db).drain() >= 1
    (stripe_sub,) = [
        s for s in stripe_subscriptions(emulator) if s.metadata.to_dict().get("entitleSubscriptionId") == ref
    ]
    assert stripe_sub.status == "incomplete"
    row = subscription_row(server, ref)
    assert (row.status, row.billing_id) == ("PAYMENT_PENDING", stripe_sub.id)
    return stripe_sub


# -- signed events from localstripe -------------------------------------------------------------------


def test_a_payment_completed_later_activates_the_subscription_through_localstripes_signed_webhook(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    webhook_secret: str,
    localstripe_webhooks: None,
) -> None:
    setup(server, api, stripe_emulator, webhook_secret)
    customer_with_card(api, stripe_emulator, "cust-3ds", PAID_AFTER_3DS)
    resp = api.post(
        "/api/v1/subscriptions",
        json={"customerId": "cust-3ds", "planId": "plan-pro", "id": "sub-3ds", "billingPeriod": "MONTHLY"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["subscription"]["status"] == "PAYMENT_PENDING"  # the gate: Stripe will bill it
    assert not granted(server, "cust-3ds")
    (settlement,) = jobs_of(server, subscription_sync.SETTLE_PAYMENT_JOB)
    assert settlement.status == PENDING

    Worker(server.db).drain()  # the sync job: Stripe leaves the subscription incomplete (3-D Secure)
    (stripe_sub,) = stripe_subscriptions(stripe_emulator)
    assert stripe_sub.status == "incomplete"
    assert subscription_row(server, "sub-3ds").status == "PAYMENT_PENDING"
    assert not granted(server, "cust-3ds")

    assert authenticate(stripe_emulator, stripe_sub.id) == 200
    (paid,) = wait_for_event(server, "invoice.payment_succeeded")
    assert paid.status == "RECEIVED"  # stored and answered; processed by the worker
    assert subscription_row(server, "sub-3ds").status == "PAYMENT_PENDING"
    Worker(server.db).drain()
    (paid,) = events_of(server, "invoice.payment_succeeded")
    assert paid.status == PROCESSED and "sub-3ds" in (paid.outcome or "")
    row = subscription_row(server, "sub-3ds")
    assert (row.status, row.payment_collection) == ("ACTIVE", "NOT_REQUIRED")
    assert granted(server, "cust-3ds")
    # Events Entitle does not act on (customer.created, plan.created, ...) were answered, not stored.
    assert {e.event_type for e in events_of(server)} <= set(inbound._HANDLERS)
    # The window has nothing left to do once paid (its job, made due now, changes nothing).
    with server.db.transaction() as s:
        job = s.get(Job, settlement.pk)
        assert job is not None
        job.run_at = job.created_at
    Worker(server.db).drain()
    assert jobs_of(server, subscription_sync.SETTLE_PAYMENT_JOB)[0].status == SUCCEEDED
    assert subscription_row(server, "sub-3ds").status == "ACTIVE"
    assert stripe_emulator.client().v1.subscriptions.retrieve(stripe_sub.id).status == "active"


def test_a_failed_payment_keeps_the_subscription_pending_with_no_entitlements(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    webhook_secret: str,
    localstripe_webhooks: None,
) -> None:
    setup(server, api, stripe_emulator, webhook_secret)
    customer_with_card(api, stripe_emulator, "cust-declined", DECLINED_AFTER_3DS)
    ref = provision(api, "cust-declined", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    (stripe_sub,) = stripe_subscriptions(stripe_emulator)
    assert authenticate(stripe_emulator, stripe_sub.id) == 402  # authenticated, then the card is declined

    (failed,) = wait_for_event(server, "invoice.payment_failed")
    Worker(server.db).drain()
    (failed,) = events_of(server, "invoice.payment_failed")
    assert failed.status == PROCESSED
    row = subscription_row(server, ref)
    assert (row.status, row.payment_collection) == ("PAYMENT_PENDING", "FAILED")
    assert not granted(server, "cust-declined")
    wire = api.get(f"/api/v1/subscriptions/{ref}").json()["data"]
    assert (wire["status"], wire["paymentCollection"]) == ("PAYMENT_PENDING", "FAILED")
    assert stripe_emulator.client().v1.subscriptions.retrieve(stripe_sub.id).status == "incomplete"


def test_the_settlement_window_cancels_an_unpaid_subscription_on_both_sides(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    webhook_secret: str,
    localstripe_webhooks: None,
    test_clock: TestClock,
) -> None:
    setup(server, api, stripe_emulator, webhook_secret, paymentSettlementHours=2)
    unpaid = pending_subscription(server, api, stripe_emulator, "cust-unpaid")
    customer_with_card(api, stripe_emulator, "cust-paid", PAID_AT_ONCE)
    paid_ref = provision(api, "cust-paid", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    assert subscription_row(server, paid_ref).status == "ACTIVE"  # Stripe said active: no webhook waited for

    test_clock.advance(timedelta(hours=1, minutes=59))
    Worker(server.db).drain()
    assert subscription_row(server, "sub-cust-unpaid-plan-pro").status == "PAYMENT_PENDING"  # not yet

    test_clock.advance(timedelta(minutes=2))
    Worker(server.db).drain()  # the window closes: cancelled in Entitle, then the Stripe cancellation job
    row = subscription_row(server, "sub-cust-unpaid-plan-pro")
    assert (row.status, row.cancel_reason) == ("CANCELED", "PENDING_PAYMENT_EXPIRED")
    assert stripe_emulator.client().v1.subscriptions.retrieve(unpaid.id).status == "canceled"
    assert not granted(server, "cust-unpaid")
    (cancel,) = jobs_of(server, subscription_sync.CANCEL_SUBSCRIPTION_JOB)
    assert cancel.status == SUCCEEDED
    # The paid one is untouched, and its own window job did nothing.
    assert subscription_row(server, paid_ref).status == "ACTIVE"
    assert all(j.status == SUCCEEDED for j in jobs_of(server, subscription_sync.SETTLE_PAYMENT_JOB))
    # Stripe's own deletion event comes back and finds the subscription ended already.
    (deleted,) = wait_for_event(server, "customer.subscription.deleted")
    Worker(server.db).drain()
    (deleted,) = events_of(server, "customer.subscription.deleted")
    assert deleted.status == IGNORED and "already ended" in (deleted.outcome or "")


def test_a_cancellation_in_stripe_ends_the_entitle_subscription(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    webhook_secret: str,
    localstripe_webhooks: None,
) -> None:
    setup(server, api, stripe_emulator, webhook_secret)
    customer_with_card(api, stripe_emulator, "cust-leaving", PAID_AT_ONCE)
    ref = provision(api, "cust-leaving", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    assert subscription_row(server, ref).status == "ACTIVE" and granted(server, "cust-leaving")
    (stripe_sub,) = stripe_subscriptions(stripe_emulator)

    stripe_emulator.client().v1.subscriptions.cancel(stripe_sub.id)  # someone cancels in the Stripe dashboard
    wait_for_event(server, "customer.subscription.deleted")
    Worker(server.db).drain()
    row = subscription_row(server, ref)
    assert (row.status, row.cancel_reason) == ("CANCELED", "CANCELLED_BY_BILLING")
    assert not granted(server, "cust-leaving")
    # Entitle did not cancel it at Stripe a second time: its cancellation job found it done.
    deletes = [e for e in stripe_emulator.standin.log if e.method == "DELETE" and stripe_sub.id in e.path]
    assert len(deletes) == 1
    (cancel,) = jobs_of(server, subscription_sync.CANCEL_SUBSCRIPTION_JOB)
    assert cancel.status == SUCCEEDED


# -- the endpoint: signatures and deduplication ---------------------------------------------------------


def test_a_bad_signature_is_refused_and_nothing_is_stored(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    integration = setup(server, api, stripe_emulator, webhook_secret, localstripe=False)
    event = stripe_event("invoice.paid", {"object": "invoice", "id": "in_x", "subscription": "sub_x"})
    anonymous = httpx.Client(base_url=server.base_url, timeout=30)  # no API key: the signature is the key

    wrong = signed_post(anonymous, integration, event, "whsec_not_the_secret")
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "INVALID_SIGNATURE"
    body = json.dumps(event).encode()
    missing = anonymous.post(inbound_path(integration), content=body)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "INVALID_SIGNATURE"
    header = stripe.WebhookSignature.generate_signature_header(json.dumps(event), webhook_secret)
    tampered = anonymous.post(
        inbound_path(integration), content=body.replace(b"sub_x", b"sub_y"), headers={"Stripe-Signature": header}
    )
    assert tampered.status_code == 400 and tampered.json()["error"]["code"] == "INVALID_SIGNATURE"
    stale = signed_post(anonymous, integration, event, webhook_secret, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "INVALID_SIGNATURE"
    binary = anonymous.post(inbound_path(integration), content=b"\xff\xfe", headers={"Stripe-Signature": header})
    assert binary.status_code == 400 and binary.json()["error"]["code"] == "INVALID_SIGNATURE"
    unknown = signed_post(anonymous, "no-such-integration", event, webhook_secret)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    assert events_of(server) == []
    assert jobs_of(server, inbound.PROCESS_EVENT_JOB) == []

    good = signed_post(anonymous, integration, event, webhook_secret)
    assert good.status_code == 200, good.text
    assert good.json()["data"] == {"id": event["id"], "type": "invoice.paid", "handled": True, "duplicate": False}
    other = signed_post(
        anonymous, integration, stripe_event("customer.created", {"object": "customer", "id": "c"}), webhook_secret
    )
    assert other.status_code == 200 and other.json()["data"]["handled"] is False
    assert [e.event_id for e in events_of(server)] == [event["id"]]


def test_an_integration_without_a_webhook_secret_refuses_events(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    integration = connect_stripe(api, stripe_emulator)
    event = stripe_event("invoice.paid", {"object": "invoice", "id": "in_x"})
    resp = signed_post(api, integration["id"], event, "whsec_whatever_it_is")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert "webhookSecret" in resp.json()["error"]["message"]
    assert events_of(server) == []


def test_a_removed_integration_receives_no_events(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    integration = connect_stripe(api, stripe_emulator, webhookSecret=webhook_secret)
    event = stripe_event("invoice.paid", {"object": "invoice", "id": "in_x"})
    assert signed_post(api, integration["id"], event, webhook_secret).status_code == 200
    assert api.delete(f"/api/v1/integrations/{integration['id']}").status_code == 200
    again = signed_post(api, integration["id"], stripe_event("invoice.paid", {"object": "invoice"}), webhook_secret)
    assert again.status_code == 404 and again.json()["error"]["code"] == "NOT_FOUND"
    assert len(events_of(server)) == 1


def test_a_duplicate_delivery_of_one_event_id_is_processed_once(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    """Hand-built `invoice.paid` (localstripe sends only `invoice.payment_succeeded`), delivered twice."""
    integration = setup(server, api, stripe_emulator, webhook_secret, localstripe=False)
    stripe_sub = pending_subscription(server, api, stripe_emulator, "cust-dup")
    invoice = {"object": "invoice", "id": "in_dup", "status": "paid", "subscription": stripe_sub.id}
    event = stripe_event("invoice.paid", invoice)

    first = signed_post(api, integration, event, webhook_secret)
    second = signed_post(api, integration, event, webhook_secret)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["data"]["duplicate"], second.json()["data"]["duplicate"]) == (False, True)
    (row,) = events_of(server)
    assert (row.event_id, row.deliveries) == (event["id"], 2)
    assert len(jobs_of(server, inbound.PROCESS_EVENT_JOB)) == 1

    assert Worker(server.db).drain() == 1
    assert subscription_row(server, "sub-cust-dup-plan-pro").status == "ACTIVE"
    third = signed_post(api, integration, event, webhook_secret)  # a late redelivery after processing
    assert third.json()["data"]["duplicate"] is True
    assert Worker(server.db).drain() == 0
    (row,) = events_of(server)
    assert (row.status, row.deliveries) == (PROCESSED, 3)


# -- hand-built events localstripe never sends -----------------------------------------------------------


def test_a_cancellation_at_period_end_in_stripe_is_scheduled_then_withdrawn(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    integration = setup(server, api, stripe_emulator, webhook_secret, localstripe=False)
    customer_with_card(api, stripe_emulator, "cust-later", PAID_AT_ONCE)
    ref = provision(api, "cust-later", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    (stripe_sub,) = stripe_subscriptions(stripe_emulator)
    period_end = int(time.time()) + 20 * 86400
    obj = {
        "object": "subscription",
        "id": stripe_sub.id,
        "status": "active",
        "cancel_at_period_end": True,
        "cancel_at": None,
        "items": {"object": "list", "data": [{"id": "si_1", "current_period_end": period_end}]},
        "metadata": {"entitleSubscriptionId": ref},
    }
    assert (
        signed_post(api, integration, stripe_event("customer.subscription.updated", obj), webhook_secret).status_code
        == 200
    )
    Worker(server.db).drain()
    row = subscription_row(server, ref)
    assert row.status == "ACTIVE" and row.end_date is not None
    assert int(row.end_date.timestamp()) == period_end and row.cancel_reason == "CANCELLED_BY_BILLING"
    assert granted(server, "cust-later")  # until then

    withdrawn = {**obj, "cancel_at_period_end": False}
    assert (
        signed_post(
            api, integration, stripe_event("customer.subscription.updated", withdrawn), webhook_secret
        ).status_code
        == 200
    )
    Worker(server.db).drain()
    row = subscription_row(server, ref)
    assert (row.status, row.end_date, row.cancel_reason) == ("ACTIVE", None, None)

    ended = {**obj, "status": "canceled", "cancel_at_period_end": False}
    signed_post(api, integration, stripe_event("customer.subscription.updated", ended), webhook_secret)
    Worker(server.db).drain()
    assert subscription_row(server, ref).status == "CANCELED"


def test_checkout_session_completed_activates_the_subscription_it_names(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    integration = setup(server, api, stripe_emulator, webhook_secret, localstripe=False)
    stripe_sub = pending_subscription(server, api, stripe_emulator, "cust-checkout")
    ref = "sub-cust-checkout-plan-pro"
    session = {
        "object": "checkout.session",
        "id": "cs_test_1",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "paid",
        "customer": stripe_sub.customer,
        "subscription": stripe_sub.id,
        "metadata": {"entitleSubscriptionId": ref},
    }
    assert (
        signed_post(api, integration, stripe_event("checkout.session.completed", session), webhook_secret).status_code
        == 200
    )
    Worker(server.db).drain()
    row = subscription_row(server, ref)
    assert (row.status, row.billing_id) == ("ACTIVE", stripe_sub.id)
    link = link_of(server, SUBSCRIPTION, row.pk)
    assert link is not None and link.billing_id == stripe_sub.id and link.details["checkout"]["state"] == "COMPLETED"
    assert granted(server, "cust-checkout")

    foreign = {**session, "id": "cs_test_2", "metadata": {}}
    signed_post(api, integration, stripe_event("checkout.session.completed", foreign), webhook_secret)
    Worker(server.db).drain()
    assert events_of(server, "checkout.session.completed")[-1].status == IGNORED


def test_an_attached_payment_method_becomes_the_default_at_stripe_and_in_entitle(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    integration = setup(server, api, stripe_emulator, webhook_secret, localstripe=False)
    customer_with_card(api, stripe_emulator, "cust-card", PAID_AT_ONCE)
    provision(api, "cust-card", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    client = stripe_emulator.client()
    (customer,) = client.v1.customers.list().data
    card: Any = {"type": "card", "card": {"number": "5555555555554444", "exp_month": 3, "exp_year": 2041, "cvc": "321"}}
    method = client.v1.payment_methods.create(params=card)
    attached = client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    event = stripe_event("payment_method.attached", attached.to_dict())
    assert signed_post(api, integration, event, webhook_secret).status_code == 200
    Worker(server.db).drain()

    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method == method.id
    wire = api.get("/api/v1/customers/cust-card").json()["data"]["defaultPaymentMethod"]
    assert wire["billingId"] == method.id and wire["type"] == "CARD" and wire["cardLast4Digits"] == "4444"
    assert (wire["cardExpiryMonth"], wire["cardExpiryYear"]) == (3, 2041)
    (job,) = jobs_of(server, inbound.PROCESS_EVENT_JOB)
    writes = [
        w
        for w in stripe_emulator.standin.writes()
        if w.idempotency_key == f"entitle-job-{job.pk}:default-payment-method"
    ]
    assert len(writes) == 1

    stranger = {**attached.to_dict(), "customer": "cus_not_ours"}
    signed_post(api, integration, stripe_event("payment_method.attached", stranger), webhook_secret)
    Worker(server.db).drain()
    assert events_of(server, "payment_method.attached")[-1].status == IGNORED


def test_a_draft_renewal_invoice_enqueues_the_usage_report(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, webhook_secret: str
) -> None:
    """`invoice.created` for a renewal: the usage job is enqueued with the invoice's period (the usage
    sync's handler reports it; here only the enqueue is checked)."""
    integration = setup(server, api, stripe_emulator, webhook_secret, localstripe=False)
    customer_with_card(api, stripe_emulator, "cust-usage", PAID_AT_ONCE)
    provision(api, "cust-usage", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    (stripe_sub,) = stripe_subscriptions(stripe_emulator)
    start, end = 1_780_000_000, 1_780_000_000 + 30 * 86400
    invoice = {
        "object": "invoice",
        "id": "in_renewal",
        "status": "draft",
        "billing_reason": "subscription_cycle",
        "period_start": start,
        "period_end": end,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": stripe_sub.id}},
    }
    signed_post(api, integration, stripe_event("invoice.created", invoice), webhook_secret)
    first = {**invoice, "id": "in_first", "billing_reason": "subscription_create"}
    signed_post(api, integration, stripe_event("invoice.created", first), webhook_secret)
    with server.db.transaction() as s:  # run only the event jobs
        jobs = list(s.scalars(select(Job).where(Job.kind == inbound.PROCESS_EVENT_JOB)))
    worker = Worker(server.db, handlers={inbound.PROCESS_EVENT_JOB: inbound.process_event})
    worker.drain()
    assert all(j.status != DEAD for j in jobs)
    (report,) = jobs_of(server, inbound.REPORT_INVOICE_USAGE_JOB)
    assert report.payload == {
        "integrationPk": report.payload["integrationPk"],
        "invoiceId": "in_renewal",
        "subscriptionBillingId": stripe_sub.id,
        "periodStart": datetime.fromtimestamp(start, UTC).isoformat(),
        "periodEnd": datetime.fromtimestamp(end, UTC).isoformat(),
    }
    statuses = {e.payload["data"]["object"]["id"]: e.status for e in events_of(server, "invoice.created")}
    assert statuses == {"in_renewal": PROCESSED, "in_first": IGNORED}


def test_the_settlement_window_is_a_setting_of_the_integration(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    assert connect_stripe(api, stripe_emulator)["paymentSettlementHours"] == 24
    assert connect_stripe(api, stripe_emulator, paymentSettlementHours=72)["paymentSettlementHours"] == 72
    body = {"vendorIdentifier": "STRIPE", "apiSecretKey": stripe_emulator.secret_key, "paymentSettlementHours": 0}
    resp = api.post("/api/v1/integrations", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "INVALID_ARGUMENT"
    with server.db.read() as s:
        assert s.scalar(select(func.count()).select_from(BillingEvent)) == 0
