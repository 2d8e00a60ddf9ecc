"""Events from the billing provider (Stripe webhooks): receive once, answer at once, process as a job.

1. `receive` (the inbound endpoint, `POST /api/v1/integrations/{integrationId}/webhooks/stripe`) finds
   the integration, has its provider verify the signature (`BillingProvider.handle_event`, the
   integration's webhook secret), and in one transaction stores the event in `billing_events` —
   once per provider event id and integration: a redelivery only counts a delivery — and enqueues a
   `billing.process_event` job. It answers before anything is processed.
2. `process_event` (the job) dispatches on the event type. Each handler re-reads Entitle's state and is
   idempotent, so a re-run (a worker died, a retry) changes nothing twice:

   - `invoice.paid` / `invoice.payment_succeeded`: PAYMENT_PENDING -> ACTIVE (`payment_succeeded`).
   - `invoice.payment_failed`: stays PAYMENT_PENDING (ACTIVE stays ACTIVE), payment FAILED
     (`payment_failed`, which also notifies `customer.payment_failed` with the invoice's id, amount
     due, currency, attempt count and failure reason: `payment_failure`). `invoice.overdue` (an
     invoice sent to an INVOICE subscription's customer, unpaid past its due date) does the same.
   - `customer.subscription.deleted`, and `customer.subscription.updated` to `canceled` or
     `incomplete_expired`: the Entitle subscription is cancelled (reason CANCELLED_BY_BILLING);
     `cancel_at_period_end` / `cancel_at`: its end is scheduled then (and dropped if withdrawn);
     `active`/`trialing` while Entitle waits for payment: ACTIVE.
   - `checkout.session.completed`: the subscription named by `metadata.entitleSubscriptionId` gets the
     Stripe subscription the session created linked, and is activated once the session is paid.
   - `payment_method.attached`: the method becomes the Stripe customer's default for invoices and the
     Entitle customer's `defaultPaymentMethod`.
   - `invoice.created` (a draft renewal invoice): a `billing.report_invoice_usage` job reports the
     period's metered usage before Stripe finalizes the invoice, about an hour later.

   The event row ends PROCESSED (with what was done) or IGNORED (with why nothing was).
3. `settle_payment` (the `billing.payment_settlement` job, due when the settlement window of a new
   PAYMENT_PENDING subscription closes) cancels a subscription still unpaid then, on both sides.

The Stripe subscription an event concerns is matched to the Entitle one by its billing link, then by
the `entitleSubscriptionId` metadata Entitle put on it, then by a subscription provisioned with that
`billingId`. Events about Stripe objects Entitle does not know are IGNORED.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from entitle.billing import credit_invoices, rules, store
from entitle.billing.models import (
    CUSTOMER,
    IGNORED,
    PROCESSED,
    RECEIVED,
    SUBSCRIPTION,
    SUCCESS,
    BillingEvent,
    Integration,
)
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.subscription_sync import PAID_STATUSES, SETTLE_PAYMENT_JOB
from entitle.clock import utcnow
from entitle.config import load_settings
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.errors import FailedPrecondition, NotFound
from entitle.jobs.service import JobContext, enqueue, register
from entitle.money import minor_unit_exponent
from entitle.subscriptions import cancellation as subscription_cancellation
from entitle.subscriptions import lifecycle as subscription_lifecycle
from entitle.subscriptions import store as subscription_store
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.rules import OPEN, Status

log = logging.getLogger("entitle.billing")

PROCESS_EVENT_JOB = "billing.process_event"
# Written by the usage sync (entitle.billing.usage_sync): payload {"integrationPk", "invoiceId",
# "subscriptionBillingId", "periodStart", "periodEnd"}, the period as ISO 8601 UTC instants.
REPORT_INVOICE_USAGE_JOB = "billing.report_invoice_usage"


# -- receiving ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    event_id: str
    type: str
    handled: bool  # False: a type Entitle does not act on (not stored)
    duplicate: bool  # True: stored before; processed once


def receive(
    db: Database, data_dir: Path, vendor: str, integration_ref: str, payload: bytes, signature: str | None
) -> Receipt:
    """Verify, store once and enqueue one inbound event. Raises NotFound (unknown integration),
    InvalidSignature (400), InvalidArgument (not an event) or FailedPrecondition (no webhook secret)."""
    with db.read() as s:
        integration = store.integration_by_ref(s, integration_ref, vendor)
        if integration is None:
            raise NotFound("integration", integration_ref)
    event = provider_for(integration, secret_box(data_dir)).handle_event(payload, signature)
    if event is None:
        parsed = json.loads(payload)  # the provider parsed it already: a type Entitle does not act on
        return Receipt(str(parsed.get("id")), str(parsed.get("type")), handled=False, duplicate=False)
    try:
        duplicate = _store(db, integration, event.id, event.type, event.data)
    except IntegrityError:  # the same event delivered twice at once (PostgreSQL): the other one stored it
        duplicate = _store(db, integration, event.id, event.type, event.data)
    return Receipt(event.id, event.type, handled=True, duplicate=duplicate)


def _store(db: Database, integration: Integration, event_id: str, event_type: str, data: dict[str, Any]) -> bool:
    """Store the event and enqueue its job; True when it was stored before (a redelivery)."""
    with db.transaction() as s:
        existing = store.billing_event(s, integration.pk, event_id, for_update=True)
        if existing is not None:
            existing.deliveries += 1
            return True
        row = BillingEvent(
            environment_id=integration.environment_id,
            integration_pk=integration.pk,
            event_id=event_id,
            event_type=event_type,
            payload=data,
            status=RECEIVED,
        )
        s.add(row)
        s.flush()
        obj = _object(data)
        anchor = _subscription_id(obj) or _customer_id(obj) or event_id
        enqueue(
            s,
            integration.environment_id,
            PROCESS_EVENT_JOB,
            {"integrationPk": integration.pk, "eventPk": row.pk},
            # Events about one Stripe subscription (or customer) are processed in the order received.
            ordering_key=f"billing:{integration.pk}:stripe:{anchor}",
            dedupe_key=f"billing-event:{integration.pk}:{event_id}",
        )
        return False


# -- processing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    db: Database
    ctx: JobContext
    integration: Integration
    type: str
    obj: dict[str, Any]


Handler = Callable[[_Event], tuple[str, str]]  # -> (PROCESSED or IGNORED, what happened)


@register(PROCESS_EVENT_JOB)
def process_event(db: Database, ctx: JobContext) -> None:
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        row = s.get(BillingEvent, int(ctx.payload["eventPk"]))
        if integration is None or row is None or row.status != RECEIVED:
            return  # disconnected, or processed by an earlier run
        event = _Event(db, ctx, integration, row.event_type, _object(row.payload))
    grant_ref = credit_invoices.grant_of(event.obj)
    if grant_ref is not None:  # a paid credit grant's invoice, not a subscription's
        status, outcome = _credit_invoice(event, grant_ref)
    else:
        handler = _HANDLERS.get(event.type)
        status, outcome = handler(event) if handler is not None else (IGNORED, f"no handler for {event.type}")
    with db.transaction() as s:
        done = s.get(BillingEvent, int(ctx.payload["eventPk"]))
        if done is not None:
            done.status = status
            done.outcome = outcome[:2000]
            done.processed_at = utcnow()


def _credit_invoice(event: _Event, grant_ref: str) -> tuple[str, str]:
    from entitle.billing.stripe_support import provider_invoice  # the SDK, only when an event needs it

    reason = payment_failure(event.obj).get("reason")
    invoice = provider_invoice(event.obj)
    return credit_invoices.handle_event(event.db, event.integration, event.type, invoice, grant_ref, reason)


def _invoice_paid(event: _Event) -> tuple[str, str]:
    sub = _subscription_of(event)
    if sub is None:
        return IGNORED, _unknown(event)
    if sub.status == Status.PAYMENT_PENDING or (sub.status == Status.ACTIVE and sub.payment_collection == "FAILED"):
        try:
            after = subscription_lifecycle.payment_succeeded(event.db, sub.environment_id, sub.ref_id)
        except FailedPrecondition as exc:
            return IGNORED, str(exc)
        return PROCESSED, f"subscription {sub.ref_id} paid: {after.sub.status}"
    return IGNORED, f"subscription {sub.ref_id} is {sub.status}: nothing waited for this payment"


def _invoice_payment_failed(event: _Event) -> tuple[str, str]:
    sub = _subscription_of(event)
    if sub is None:
        return IGNORED, _unknown(event)
    if sub.status not in (Status.PAYMENT_PENDING, Status.ACTIVE):
        return IGNORED, f"subscription {sub.ref_id} is {sub.status}"
    try:
        after = subscription_lifecycle.payment_failed(
            event.db, sub.environment_id, sub.ref_id, payment_failure(event.obj)
        )
    except FailedPrecondition as exc:
        return IGNORED, str(exc)
    return PROCESSED, f"payment failed for subscription {sub.ref_id}: stays {after.sub.status}"


def payment_failure(invoice: dict[str, Any]) -> dict[str, Any]:
    """What `customer.payment_failed` tells receivers about a failed Stripe invoice: `invoiceId`,
    `amountDue` (major units, exact: 2999 usd -> 29.99), `currency`, `attemptCount`, and `reason` /
    `failureCode` from the payment's last error (the invoice's charge, or its payment intent's
    `last_payment_error`, when the event carries them expanded; else its finalization error). Fields
    Stripe did not send are left out."""
    details: dict[str, Any] = {}
    if isinstance(invoice.get("id"), str):
        details["invoiceId"] = invoice["id"]
    currency = invoice.get("currency")
    amount = invoice.get("amount_due")
    if isinstance(currency, str) and currency:
        details["currency"] = currency.lower()
    if isinstance(amount, int) and not isinstance(amount, bool):
        details["amountDue"] = _number(Decimal(amount).scaleb(-minor_unit_exponent(str(currency or "usd"))))
    attempts = invoice.get("attempt_count")
    if isinstance(attempts, int) and not isinstance(attempts, bool):
        details["attemptCount"] = attempts
    reason, code = _failure_reason(invoice)
    if reason is not None:
        details["reason"] = reason
    if code is not None:
        details["failureCode"] = code
    return details


def _failure_reason(invoice: dict[str, Any]) -> tuple[str | None, str | None]:
    """(message, code) of the payment's last error, from the most specific place the event holds it."""
    intent = invoice.get("payment_intent")
    charge = invoice.get("charge")
    candidates: list[tuple[Any, Any]] = []
    for error in (
        invoice.get("last_payment_error"),
        intent.get("last_payment_error") if isinstance(intent, dict) else None,
    ):
        if isinstance(error, dict):
            candidates.append((error.get("message"), error.get("decline_code") or error.get("code")))
    if isinstance(charge, dict):
        candidates.append((charge.get("failure_message"), charge.get("failure_code")))
    finalization = invoice.get("last_finalization_error")
    if isinstance(finalization, dict):
        candidates.append((finalization.get("message"), finalization.get("code")))
    for message, code in candidates:
        if message or code:
            return (str(message)[:500] if message else None), (str(code)[:100] if code else None)
    return None, None


def _number(value: Decimal) -> int | float:
    """A Decimal as a JSON number (the wire's convention): an integer when whole."""
    return int(value) if value == value.to_integral_value() else float(value)


def _subscription_deleted(event: _Event) -> tuple[str, str]:
    sub = _subscription_of(event)
    if sub is None:
        return IGNORED, _unknown(event)
    _mark_canceled_at_provider(event, sub)
    ended = subscription_cancellation.cancel_by_billing(event.db, sub.environment_id, sub.ref_id)
    if ended is None:
        return IGNORED, f"subscription {sub.ref_id} had already ended ({sub.status})"
    return PROCESSED, f"subscription {sub.ref_id} cancelled in Stripe: {ended.sub.status}"


def _subscription_updated(event: _Event) -> tuple[str, str]:
    stripe_status = event.obj.get("status")
    if stripe_status in ("canceled", "incomplete_expired"):
        return _subscription_deleted(event)
    sub = _subscription_of(event)
    if sub is None:
        return IGNORED, _unknown(event)
    env, ref = sub.environment_id, sub.ref_id
    done: list[str] = []
    if stripe_status in PAID_STATUSES and sub.status == Status.PAYMENT_PENDING:
        try:
            subscription_lifecycle.payment_succeeded(event.db, env, ref)
            done.append("paid: ACTIVE")
        except FailedPrecondition as exc:
            done.append(str(exc))
    ends_at = _scheduled_end(event.obj)
    if ends_at is not None:
        if subscription_cancellation.cancel_by_billing(event.db, env, ref, at=ends_at) is not None:
            done.append(f"cancellation scheduled at {ends_at.isoformat()}")
    elif subscription_cancellation.billing_cancellation_withdrawn(event.db, env, ref) is not None:
        done.append("scheduled cancellation withdrawn")
    if not done:
        return IGNORED, f"nothing to change on subscription {ref} (Stripe status {stripe_status})"
    return PROCESSED, f"subscription {ref}: " + "; ".join(done)


def _checkout_completed(event: _Event) -> tuple[str, str]:
    obj = event.obj
    ref = (obj.get("metadata") or {}).get("entitleSubscriptionId")
    if not ref:
        return IGNORED, "the checkout session carries no entitleSubscriptionId"
    with event.db.transaction() as s:
        sub = subscription_store.find(s, event.integration.environment_id, str(ref), for_update=True)
        if sub is None:
            return IGNORED, f"no subscription {ref}"
        stripe_sub, stripe_customer = obj.get("subscription"), obj.get("customer")
        link = store.link(s, event.integration.pk, SUBSCRIPTION, sub.pk)
        details = dict(link.details) if link is not None else {}
        checkout = {**(details.get("checkout") or {}), "state": "COMPLETED", "sessionId": obj.get("id")}
        if isinstance(stripe_sub, str) and stripe_sub:
            store.put_link(
                s,
                event.integration,
                SUBSCRIPTION,
                sub.pk,
                SUCCESS,
                billing_id=stripe_sub,
                details={**details, "checkout": checkout},
            )
            sub.billing_id = sub.billing_id or stripe_sub
        customer_pk = sub.paying_customer_pk or sub.customer_pk
        if isinstance(stripe_customer, str) and stripe_customer:
            customer_link = store.link(s, event.integration.pk, CUSTOMER, customer_pk)
            if customer_link is None or not customer_link.billing_id:
                store.put_link(s, event.integration, CUSTOMER, customer_pk, SUCCESS, billing_id=stripe_customer)
            customer = s.get(Customer, customer_pk)
            if customer is not None and not customer.billing_id:
                customer.billing_id = stripe_customer
        status = sub.status
    if obj.get("payment_status") not in ("paid", "no_payment_required"):
        return PROCESSED, f"checkout for {ref} completed unpaid ({obj.get('payment_status')}): waiting for invoice.paid"
    if status != Status.PAYMENT_PENDING:
        return PROCESSED, f"checkout for {ref} linked; the subscription is {status}"
    try:
        after = subscription_lifecycle.payment_succeeded(event.db, event.integration.environment_id, str(ref))
    except FailedPrecondition as exc:
        return IGNORED, str(exc)
    return PROCESSED, f"checkout completed: subscription {ref} {after.sub.status}"


def _payment_method_attached(event: _Event) -> tuple[str, str]:
    method = event.obj
    method_id, stripe_customer = method.get("id"), method.get("customer")
    if not isinstance(method_id, str) or not isinstance(stripe_customer, str):
        return IGNORED, "the payment method is not attached to a customer"
    with event.db.read() as s:
        customer = _customer_for(s, event.integration, stripe_customer)
        if customer is None:
            return IGNORED, f"no Entitle customer is linked to Stripe customer {stripe_customer}"
        customer_pk = customer.pk
    settings = load_settings()
    provider = provider_for(event.integration, secret_box(settings.data_dir))
    provider.set_default_payment_method(stripe_customer, method_id, idempotency_key=event.ctx.idempotency_key)
    card = method.get("card") if isinstance(method.get("card"), dict) else {}
    record: dict[str, Any] = {"billingId": method_id, "type": rules.PAYMENT_METHOD_TYPES.get(str(method.get("type")))}
    if card:
        record.update(
            {
                "cardLast4Digits": card.get("last4"),
                "cardExpiryMonth": card.get("exp_month"),
                "cardExpiryYear": card.get("exp_year"),
                "cardBrand": card.get("brand"),
            }
        )
    with event.db.transaction() as s:
        row = s.get(Customer, customer_pk)
        if row is not None:
            row.default_payment_method = {k: v for k, v in record.items() if v is not None}
            row.updated_at = utcnow()
            ref = row.ref_id
    return PROCESSED, f"{method_id} is the default payment method of customer {ref} ({stripe_customer})"


def _invoice_created(event: _Event) -> tuple[str, str]:
    invoice = event.obj
    period = rules.renewal_period(invoice)
    if period is None:
        return IGNORED, (
            "not a draft renewal invoice (billing_reason subscription_cycle, with a period): it closes no billing "
            "period, so no usage is reported on it"
        )
    stripe_sub = _subscription_id(invoice)
    sub = _subscription_of(event)
    if sub is None or stripe_sub is None:
        return IGNORED, _unknown(event)
    invoice_id = str(invoice.get("id"))
    with event.db.transaction() as s:
        enqueue(
            s,
            event.integration.environment_id,
            REPORT_INVOICE_USAGE_JOB,
            {
                "integrationPk": event.integration.pk,
                "invoiceId": invoice_id,
                "subscriptionBillingId": stripe_sub,
                "periodStart": _instant(period[0]),
                "periodEnd": _instant(period[1]),
            },
            dedupe_key=f"invoice-usage:{event.integration.pk}:{invoice_id}",
        )
    return PROCESSED, f"usage of subscription {sub.ref_id} to be reported on invoice {invoice_id}"


_HANDLERS: dict[str, Handler] = {
    "invoice.paid": _invoice_paid,
    "invoice.payment_succeeded": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
    # An invoice sent to an INVOICE subscription's customer is past its due date unpaid: a failed payment.
    "invoice.overdue": _invoice_payment_failed,
    "invoice.created": _invoice_created,
    "customer.subscription.deleted": _subscription_deleted,
    "customer.subscription.updated": _subscription_updated,
    "checkout.session.completed": _checkout_completed,
    "payment_method.attached": _payment_method_attached,
}


# -- the settlement window ----------------------------------------------------------------------------


@register(SETTLE_PAYMENT_JOB)
def settle_payment(db: Database, ctx: JobContext) -> None:
    """The settlement window closed: a subscription still waiting for its first payment is cancelled
    (reason PENDING_PAYMENT_EXPIRED); ending it enqueues the Stripe cancellation. Paid or ended: nothing."""
    with db.read() as s:
        sub = subscription_store.by_pk(s, int(ctx.payload["subscriptionPk"]))
        if sub is None or sub.environment_id != ctx.environment_id or sub.status != Status.PAYMENT_PENDING:
            return
        env, ref = sub.environment_id, sub.ref_id
    subscription_cancellation.cancel_by_billing(
        db, env, ref, reason="PENDING_PAYMENT_EXPIRED", only_if=frozenset({Status.PAYMENT_PENDING})
    )


# -- reading Stripe objects ---------------------------------------------------------------------------


def _object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data") or {}
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _subscription_id(obj: dict[str, Any]) -> str | None:
    """The Stripe subscription an object is about: itself, an invoice's (old and 2025+ API shapes)."""
    if obj.get("object") == "subscription":
        return str(obj["id"]) if obj.get("id") else None
    value = obj.get("subscription")
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, str) and value:
        return value
    details = (obj.get("parent") or {}).get("subscription_details") or {}
    value = details.get("subscription") if isinstance(details, dict) else None
    return value if isinstance(value, str) and value else None


def _entitle_ref(obj: dict[str, Any]) -> str | None:
    """`entitleSubscriptionId` from the object's metadata, or an invoice's subscription details."""
    candidates = [
        obj.get("metadata") if obj.get("object") == "subscription" else None,
        (obj.get("subscription_details") or {}).get("metadata"),
        ((obj.get("parent") or {}).get("subscription_details") or {}).get("metadata"),
    ]
    for metadata in candidates:
        if isinstance(metadata, dict) and metadata.get("entitleSubscriptionId"):
            return str(metadata["entitleSubscriptionId"])
    return None


def _customer_id(obj: dict[str, Any]) -> str | None:
    if obj.get("object") == "customer":
        return str(obj.get("id"))
    value = obj.get("customer")
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _subscription_of(event: _Event) -> Subscription | None:
    stripe_sub = _subscription_id(event.obj)
    env = event.integration.environment_id
    with event.db.read() as s:
        if stripe_sub is not None:
            links = store.links_by_billing_id(s, event.integration.pk, SUBSCRIPTION, [stripe_sub])
            if len(links) == 1:
                return subscription_store.by_pk(s, links[0].entity_pk)
            if links:
                return _holder(s, event.obj, links)
        ref = _entitle_ref(event.obj)
        if ref is not None:
            found = subscription_store.find(s, env, ref)
            if found is not None:
                return found
        if stripe_sub is not None:
            return s.scalars(
                select(Subscription)
                .where(Subscription.environment_id == env, Subscription.billing_id == stripe_sub)
                .order_by(Subscription.pk.desc())
                .limit(1)
            ).one_or_none()
    return None


def _holder(s: Any, obj: dict[str, Any], links: list[Any]) -> Subscription | None:
    """Which of the subscriptions linked to one Stripe subscription (the two sides of a plan change made in
    place, see `plan_changes`) an event is about: the change's own invoice is the new subscription's
    (whose payment it waits for); anything else is the holder's, the open subscription not waiting for a
    payment (the replaced one until the change is paid), else the newest."""
    subs = subscription_store.by_pks(s, [link.entity_pk for link in links])
    invoice = obj.get("id") if obj.get("object") == "invoice" else None
    for link in links:
        sub = subs.get(link.entity_pk)
        if invoice and sub is not None and link.details.get("changeInvoice") == invoice and sub.status in OPEN:
            return sub
    ranked = sorted(subs.values(), key=lambda sub: (sub.status in OPEN, sub.status != Status.PAYMENT_PENDING, sub.pk))
    return ranked[-1] if ranked else None


def _customer_for(s: Any, integration: Integration, stripe_customer: str) -> Customer | None:
    links = store.links_by_billing_id(s, integration.pk, CUSTOMER, [stripe_customer])
    if links:
        return s.get(Customer, links[0].entity_pk)  # type: ignore[no-any-return]
    return s.scalars(  # type: ignore[no-any-return]
        select(Customer)
        .where(Customer.environment_id == integration.environment_id, Customer.billing_id == stripe_customer)
        .limit(1)
    ).one_or_none()


def _mark_canceled_at_provider(event: _Event, sub: Subscription) -> None:
    """Stripe cancelled it: the cancellation job that ending it in Entitle enqueues has nothing to do."""
    with event.db.transaction() as s:
        link = store.link(s, event.integration.pk, SUBSCRIPTION, sub.pk)
        if link is not None:
            link.details = {**link.details, "canceled": True}


def _scheduled_end(obj: dict[str, Any]) -> datetime | None:
    """When Stripe will end the subscription: `cancel_at`, or the period end with `cancel_at_period_end`."""
    if obj.get("cancel_at"):
        return datetime.fromtimestamp(int(obj["cancel_at"]), UTC)
    if obj.get("cancel_at_period_end"):
        end = obj.get("current_period_end")
        if end is None:  # 2025+ API: the period is on the items
            items = ((obj.get("items") or {}).get("data")) or []
            ends = [int(i["current_period_end"]) for i in items if isinstance(i, dict) and i.get("current_period_end")]
            end = max(ends) if ends else None
        if end:
            return datetime.fromtimestamp(int(end), UTC)
    return None


def _instant(value: Any) -> str | None:
    return datetime.fromtimestamp(int(value), UTC).isoformat() if value else None


def _unknown(event: _Event) -> str:
    return f"no Entitle subscription is linked to Stripe {_subscription_id(event.obj) or 'object'} ({event.type})"


__all__ = [
    "PROCESS_EVENT_JOB",
    "REPORT_INVOICE_USAGE_JOB",
    "Receipt",
    "process_event",
    "receive",
    "settle_payment",
]
