"""Emitting events: one delivery job per subscribed, enabled endpoint, in the caller's transaction.

The domain services call these with one line; this module imports no domain service (no cycles).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from entitle.clock import utcnow
from entitle.jobs import service as jobs
from entitle.webhooks import store
from entitle.webhooks.models import EVENT_TYPES, JOB_DELIVER, PAYLOAD_VERSION

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


def customer_changed(session: Session, event_type: str, customer: Customer) -> None:
    data = {
        "customerId": customer.ref_id,
        "name": customer.name,
        "email": customer.email,
        "archivedAt": _iso(customer.archived_at),
    }
    emit(session, customer.environment_id, event_type, data)
    if event_type == "customer.archived":
        entitlements_changed(session, customer.environment_id, customer.ref_id)


def entitlements_changed(session: Session, env_id: int, customer_ref: str, resource_ref: str | None = None) -> None:
    emit(session, env_id, "entitlements.updated", {"customerId": customer_ref, "resourceId": resource_ref})


def _subscription_data(session: Session, sub: Subscription) -> tuple[str, dict[str, Any]]:
    from entitle.customers.models import Customer

    customer = session.get(Customer, sub.customer_pk)
    customer_ref = customer.ref_id if customer is not None else ""
    return customer_ref, {
        "subscriptionId": sub.ref_id,
        "customerId": customer_ref,
        "resourceId": sub.resource_ref,
        "planId": sub.plan_ref,
        "status": sub.status,
        "startDate": _iso(sub.start_date),
        "endDate": _iso(sub.end_date),
        "cancelReason": sub.cancel_reason,
    }


def subscription_created(session: Session, sub: Subscription) -> None:
    customer_ref, data = _subscription_data(session, sub)
    emit(session, sub.environment_id, "subscription.created", data)
    if sub.status in ("ACTIVE", "IN_TRIAL"):  # a delayed or payment-held start changes nothing yet
        entitlements_changed(session, sub.environment_id, customer_ref, sub.resource_ref)


def subscription_canceled(session: Session, sub: Subscription) -> None:
    customer_ref, data = _subscription_data(session, sub)
    emit(session, sub.environment_id, "subscription.canceled", data)
    entitlements_changed(session, sub.environment_id, customer_ref, sub.resource_ref)


def promotions_changed(
    session: Session, event_type: str, env_id: int, customer_ref: str, rows: list[PromotionalEntitlement]
) -> None:
    for row in rows:
        data = {
            "customerId": customer_ref,
            "featureId": row.feature_ref,
            "startDate": _iso(row.start_date),
            "endDate": _iso(row.end_date),
        }
        emit(session, env_id, event_type, data)
    if rows:
        entitlements_changed(session, env_id, customer_ref)
