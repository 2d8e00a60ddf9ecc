"""Emitting events: one delivery job per subscribed, enabled endpoint, in the caller's transaction.

The domain services call these with one line; this module imports no domain service (no cycles).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from entitle.clock import utcnow
from entitle.jobs import service as jobs
from entitle.webhooks import store
from entitle.webhooks.models import (
    EVENT_TYPES,
    JOB_DELIVER,
    JOB_PROMOTION_EXPIRED,
    JOB_TRIAL_ENDS_SOON,
    PAYLOAD_VERSION,
    TRIAL_ENDS_SOON_DAYS,
    WebhookEventMark,
)

if TYPE_CHECKING:
    from entitle.customers.models import Customer
    from entitle.promotions.models import PromotionalEntitlement
    from entitle.subscriptions.models import Subscription


def ordering_key(endpoint_pk: int) -> str:
    return f"webhook:{endpoint_pk}"


def emit(session: Session, env_id: int, event_type: str, data: dict[str, Any]) -> int:
    """Write the event `{"type", "version", "id", "timestamp", "data"}` for every endpoint that wants it.

    Each endpoint's jobs share one ordering key, so its events are delivered one at a time, in order.
    Returns how many deliveries were enqueued.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    endpoints = store.subscribed(session, env_id, event_type)
    if not endpoints:
        return 0
    event = {
        "type": event_type,
        "version": PAYLOAD_VERSION,
        "id": f"evt_{uuid.uuid4().hex}",
        "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    for endpoint in endpoints:
        jobs.enqueue(
            session,
            env_id,
            JOB_DELIVER,
            {"endpoint": endpoint.pk, "event": event},
            ordering_key=ordering_key(endpoint.pk),
        )
    return len(endpoints)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _customer_data(customer: Customer) -> dict[str, Any]:
    return {
        "customerId": customer.ref_id,
        "name": customer.name,
        "email": customer.email,
        "archivedAt": _iso(customer.archived_at),
    }


def customer_changed(session: Session, event_type: str, customer: Customer) -> None:
    emit(session, customer.environment_id, event_type, _customer_data(customer))
    if event_type == "customer.archived":
        entitlements_once(session, customer.environment_id, customer.ref_id)


def customer_unarchived(session: Session, customer: Customer, resource_refs: Sequence[str] = ()) -> None:
    """`customer.updated` (with `archivedAt` null) and `entitlements.updated`: an archived customer's
    checks answered "not found"; now its remaining grants (live promotions) count again. One
    `entitlements.updated` for the customer and one for each resource it held subscriptions for."""
    emit(session, customer.environment_id, "customer.updated", _customer_data(customer))
    entitlements_once(session, customer.environment_id, customer.ref_id)
    for resource_ref in resource_refs:
        entitlements_once(session, customer.environment_id, customer.ref_id, resource_ref)


def entitlements_changed(session: Session, env_id: int, customer_ref: str, resource_ref: str | None = None) -> None:
    from entitle.push import service as push  # the stream hears every change, subscribed endpoint or not

    push.entitlements_updated(session, env_id, customer_ref, resource_ref)
    emit(session, env_id, "entitlements.updated", {"customerId": customer_ref, "resourceId": resource_ref})


def entitlements_once(session: Session, env_id: int, customer_ref: str, resource_ref: str | None = None) -> None:
    """`entitlements.updated` at most once per transaction for one customer and resource.

    One cause often touches several rows (an upgrade cancels one subscription and creates another;
    archiving a customer ends its subscriptions): the receiver gets one event for it, not one per row.
    """
    seen: set[tuple[int, str, str | None]] = session.info.setdefault("entitle.webhooks.entitlements", set())
    key = (env_id, customer_ref, resource_ref)
    if key in seen:
        return
    seen.add(key)
    entitlements_changed(session, env_id, customer_ref, resource_ref)


def plan_inheritance_changed(session: Session, env_id: int, parent_refs: Collection[str]) -> None:
    """`entitlements.updated` for every live subscription whose plan inherits from one of `parent_refs`.

    A subscription keeps the plan version it bought, but inherits from the *latest published*
    version of each ancestor: publishing a new version of a parent plan (whatever its migration
    type), or archiving the product (ancestors stop counting), changes what those customers get.
    Call it in the transaction that makes the change, before or after it (the chains are read now)."""
    from entitle.catalog.packages import store as packages
    from entitle.catalog.packages.models import Package
    from entitle.customers.models import Customer
    from entitle.subscriptions.models import Subscription
    from entitle.subscriptions.rules import LIVE

    wanted = set(parent_refs)
    if not wanted:
        return
    rows = session.execute(
        select(Subscription.customer_pk, Subscription.resource_ref, Package)
        .join(Package, Package.pk == Subscription.plan_pk)
        .where(
            Subscription.environment_id == env_id,
            Subscription.status.in_([s.value for s in LIVE]),
            Package.parent_plan_ref.is_not(None),
        )
        .order_by(Subscription.pk)
    ).all()
    inherits: dict[int, bool] = {}
    for customer_pk, resource_ref, plan in rows:
        if plan.pk not in inherits:
            ancestors = {p.ref_id for p in packages.plan_chain(session, env_id, plan)[1:]}
            inherits[plan.pk] = bool(ancestors & wanted)
        customer = session.get(Customer, customer_pk) if inherits[plan.pk] else None
        if customer is not None:
            entitlements_once(session, env_id, customer.ref_id, resource_ref)


def emit_once(session: Session, env_id: int, key: str, event_type: str, data: dict[str, Any]) -> bool:
    """Emit unless an event was already emitted under `key` (a committed mark); True if emitted.

    The mark is inserted in a savepoint, so a concurrent transaction that inserted the same key first
    makes this one skip (PostgreSQL waits for it; SQLite serializes writers) without failing the caller.
    """
    if session.scalars(
        select(WebhookEventMark.pk).where(WebhookEventMark.environment_id == env_id, WebhookEventMark.key == key)
    ).first():
        return False
    try:
        with session.begin_nested():
            session.add(WebhookEventMark(environment_id=env_id, key=key[:255], event_type=event_type))
    except IntegrityError:
        return False
    emit(session, env_id, event_type, data)
    return True


def _subscription_data(session: Session, sub: Subscription) -> tuple[str, dict[str, Any]]:
    from entitle.customers.models import Customer

    customer = session.get(Customer, sub.customer_pk)
    customer_ref = customer.ref_id if customer is not None else ""
    payer = session.get(Customer, sub.paying_customer_pk) if sub.paying_customer_pk else None
    return customer_ref, {
        "subscriptionId": sub.ref_id,
        "customerId": customer_ref,
        "payingCustomerId": payer.ref_id if payer is not None else None,
        "resourceId": sub.resource_ref,
        "planId": sub.plan_ref,
        "status": sub.status,
        "billingPeriod": sub.billing_period,
        "paymentCollection": sub.payment_collection,
        "startDate": _iso(sub.start_date),
        "endDate": _iso(sub.end_date),
        "trialEndDate": _iso(sub.trial_end_date),
        "cancellationDate": _iso(sub.cancellation_date),
        "cancelReason": sub.cancel_reason,
    }


def subscription_created(session: Session, sub: Subscription) -> None:
    customer_ref, data = _subscription_data(session, sub)
    emit(session, sub.environment_id, "subscription.created", data)
    if sub.status in ("ACTIVE", "IN_TRIAL"):  # a delayed or payment-held start changes nothing yet
        entitlements_once(session, sub.environment_id, customer_ref, sub.resource_ref)
    schedule_trial_ends_soon(session, sub)


ENDED_EVENTS = ("subscription.canceled", "subscription.expired", "subscription.trial_expired")


def subscription_ended(session: Session, sub: Subscription, event_type: str = "subscription.canceled") -> None:
    """The subscription ended: canceled (now, by a plan change, by archiving its customer), expired
    (at its end date or scheduled cancellation), or trial_expired (the trial ended without converting)."""
    if event_type not in ENDED_EVENTS:
        raise ValueError(f"{event_type!r} is not a subscription end event")
    customer_ref, data = _subscription_data(session, sub)
    emit(session, sub.environment_id, event_type, data)
    entitlements_once(session, sub.environment_id, customer_ref, sub.resource_ref)


def subscription_canceled(session: Session, sub: Subscription) -> None:
    subscription_ended(session, sub, "subscription.canceled")


def subscription_updated(
    session: Session,
    sub: Subscription,
    change: str,
    *,
    entitlements: bool = True,
    also: Sequence[tuple[str, str | None]] = (),
) -> None:
    """`subscription.updated` with what changed (`data.change`); with `entitlements`, also
    `entitlements.updated` for the customer and resource, and for each (customer, resource) in `also`
    (where a delegated or transferred subscription was before)."""
    customer_ref, data = _subscription_data(session, sub)
    emit(session, sub.environment_id, "subscription.updated", {**data, "change": change})
    if entitlements:
        entitlements_once(session, sub.environment_id, customer_ref, sub.resource_ref)
        for other_customer, other_resource in also:
            entitlements_once(session, sub.environment_id, other_customer, other_resource)
    schedule_trial_ends_soon(session, sub)


def payment_failed(session: Session, sub: Subscription, details: Mapping[str, Any] | None = None) -> None:
    """`customer.payment_failed` for the customer who pays (the paying customer of a delegated one)."""
    customer_ref, data = _subscription_data(session, sub)
    event = {
        "customerId": data["payingCustomerId"] or customer_ref,
        "subscriptionId": sub.ref_id,
        "subscriptionCustomerId": customer_ref,
        "planId": sub.plan_ref,
        "status": sub.status,
        "paymentCollection": sub.payment_collection,
        "details": dict(details) if details else None,
    }
    emit(session, sub.environment_id, "customer.payment_failed", event)


def schedule_trial_ends_soon(session: Session, sub: Subscription) -> None:
    """A job `TRIAL_ENDS_SOON_DAYS` before the trial ends (at once for a shorter trial); one per trial end.

    Scheduled for every trial, whether or not an endpoint wants the event now: the job emits to the
    endpoints subscribed when it runs, so an endpoint created after the trial started still hears it
    (and the job costs one row and one query when nobody listens)."""
    if sub.status != "IN_TRIAL" or sub.trial_end_date is None:
        return
    now = utcnow()
    if sub.trial_end_date <= now:
        return
    jobs.enqueue(
        session,
        sub.environment_id,
        JOB_TRIAL_ENDS_SOON,
        {"subscription": sub.pk, "trialEnd": sub.trial_end_date.isoformat()},
        run_at=max(now, sub.trial_end_date - timedelta(days=TRIAL_ENDS_SOON_DAYS)),
        dedupe_key=f"trial-ends-soon:{sub.pk}:{sub.trial_end_date.isoformat()}",
    )


def trial_ends_soon(session: Session, sub: Subscription) -> None:
    _, data = _subscription_data(session, sub)
    emit(session, sub.environment_id, "subscription.trial_ends_soon", data)


def _promotion_data(customer_ref: str, row: PromotionalEntitlement) -> dict[str, Any]:
    return {
        "customerId": customer_ref,
        "featureId": row.feature_ref,
        "startDate": _iso(row.start_date),
        "endDate": _iso(row.end_date),
    }


def promotions_changed(
    session: Session, event_type: str, env_id: int, customer_ref: str, rows: list[PromotionalEntitlement]
) -> None:
    for row in rows:
        emit(session, env_id, event_type, _promotion_data(customer_ref, row))
        if event_type == "promotional_entitlement.granted" and row.end_date is not None:
            session.flush()
            jobs.enqueue(
                session,
                env_id,
                JOB_PROMOTION_EXPIRED,
                {"promotion": row.pk, "endDate": row.end_date.isoformat()},
                run_at=row.end_date,
                dedupe_key=f"promotion-expired:{row.pk}:{row.end_date.isoformat()}",
            )
    if rows:
        entitlements_once(session, env_id, customer_ref)


def promotion_expired(session: Session, env_id: int, customer_ref: str, row: PromotionalEntitlement) -> None:
    emit(session, env_id, "promotional_entitlement.expired", _promotion_data(customer_ref, row))
    entitlements_once(session, env_id, customer_ref)


def _number(value: Any) -> Any:
    """A Decimal as a JSON number, the wire's convention: an integer when whole."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def usage_limit(
    session: Session,
    event_type: str,
    env_id: int,
    *,
    customer_pk: int,
    customer_ref: str,
    feature_ref: str,
    resource_ref: str | None,
    window_start: datetime,
    window_end: datetime | None,
    limit: Any,
    current: Any,
    refused: bool,
) -> bool:
    """`usage.limit_reached` (hard limit) or `usage.soft_limit_exceeded`: once per customer, feature,
    resource, usage window and limit, however many reports reach it (a refused report included)."""
    key = f"{event_type}:{customer_pk}:{feature_ref}:{resource_ref or ''}:{window_start.isoformat()}:{limit}"
    data = {
        "customerId": customer_ref,
        "featureId": feature_ref,
        "resourceId": resource_ref,
        "usageLimit": _number(limit),
        "currentUsage": _number(current),
        "usagePeriodStart": _iso(window_start),
        "usagePeriodEnd": _iso(window_end),
        "refused": refused,
    }
    return emit_once(session, env_id, key, event_type, data)
