"""Emitting webhook events: one delivery job per subscribed, enabled endpoint, in the caller's transaction.

`subscribers.py` calls these when a domain event is published; the payloads are built here from the
rows the domain events carry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from entitle.clock import utcnow
from entitle.credits.events import WalletBalance
from entitle.credits.schemas import GrantOut
from entitle.customers.models import Customer
from entitle.jobs import service as jobs
from entitle.promotions.models import PromotionalEntitlement
from entitle.subscriptions.models import Subscription
from entitle.webhooks import store
from entitle.webhooks.models import (
    EVENT_TYPES,
    JOB_DELIVER,
    JOB_TRIAL_ENDS_SOON,
    PAYLOAD_VERSION,
    TRIAL_ENDS_SOON_DAYS,
    WebhookEventMark,
)


def ordering_key(endpoint_pk: int) -> str:
    return f"webhook:{endpoint_pk}"


def emit(session: Session, env_id: int, event_type: str, data: dict[str, Any] | Callable[[], dict[str, Any]]) -> int:
    """Write the event `{"type", "version", "id", "timestamp", "data"}` for every endpoint that wants it.

    `data`, or what it makes when called: a payload that costs reads is built only when an endpoint wants
    the event. Each endpoint's jobs share one ordering key, so its events are delivered one at a time, in
    order. Returns how many deliveries were enqueued.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    endpoints = store.subscribed(session, env_id, event_type)
    if not endpoints:
        return 0
    if callable(data):
        data = data()
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


def customer_data(customer: Customer) -> dict[str, Any]:
    return {
        "customerId": customer.ref_id,
        "name": customer.name,
        "email": customer.email,
        "archivedAt": _iso(customer.archived_at),
    }


def subscription_data(session: Session, sub: Subscription) -> tuple[str, dict[str, Any]]:
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
    _, data = subscription_data(session, sub)
    emit(session, sub.environment_id, "subscription.trial_ends_soon", data)


def promotion_data(customer_ref: str, row: PromotionalEntitlement) -> dict[str, Any]:
    return {
        "customerId": customer_ref,
        "featureId": row.feature_ref,
        "startDate": _iso(row.start_date),
        "endDate": _iso(row.end_date),
    }


def payment_failed_data(session: Session, sub: Subscription, details: Mapping[str, Any] | None) -> dict[str, Any]:
    """`customer.payment_failed` is for the customer who pays (the paying customer of a delegated one)."""
    customer_ref, data = subscription_data(session, sub)
    return {
        "customerId": data["payingCustomerId"] or customer_ref,
        "subscriptionId": sub.ref_id,
        "subscriptionCustomerId": customer_ref,
        "planId": sub.plan_ref,
        "status": sub.status,
        "paymentCollection": sub.payment_collection,
        "details": dict(details) if details else None,
    }


def _number(value: Any) -> Any:
    """A Decimal as a JSON number, the wire's convention: an integer when whole."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def credit_grant_data(grant: GrantOut) -> dict[str, Any]:
    """The grant as `GET /api/v1/credits/grants` lists it."""
    data: dict[str, Any] = grant.model_dump(by_alias=True, mode="json")
    return data


def credit_balance_data(wallet: WalletBalance, previous: Decimal) -> dict[str, Any]:
    return {
        "customerId": wallet.customer_ref,
        "currencyId": wallet.currency_ref,
        "resourceId": wallet.resource_ref,
        "balance": _number(wallet.balance),
        "previousBalance": _number(previous),
        "usageLimit": _number(wallet.usage_limit),
        "currentUsage": _number(wallet.current_usage),
        "reserved": _number(wallet.reserved),
        "lowBalanceThreshold": _number(wallet.low_threshold),
    }


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
