from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from entitle.db.memo import rows_once
from entitle.db.pagination import Page, PageRequest, paginate
from entitle.errors import NotFound
from entitle.webhooks.models import WebhookDelivery, WebhookEndpoint


def get(session: Session, env_id: int, ref_id: str, *, for_update: bool = False) -> WebhookEndpoint:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.environment_id == env_id, WebhookEndpoint.ref_id == ref_id)
    if for_update:
        stmt = stmt.with_for_update()
    endpoint = session.scalars(stmt).one_or_none()
    if endpoint is None:
        raise NotFound("webhook", ref_id)
    return endpoint


def list_page(session: Session, env_id: int, page: PageRequest) -> Page[WebhookEndpoint]:
    return paginate(
        session, select(WebhookEndpoint).where(WebhookEndpoint.environment_id == env_id), WebhookEndpoint.pk, page
    )


# Built once (its cache key is memoized on it): every event of every write transaction asks.
_ENABLED_ENDPOINTS = (
    select(WebhookEndpoint)
    .where(WebhookEndpoint.environment_id == bindparam("env_id"), WebhookEndpoint.enabled.is_(True))
    .order_by(WebhookEndpoint.pk)
)


def subscribed(session: Session, env_id: int, event_type: str) -> list[WebhookEndpoint]:
    """Enabled endpoints of the environment that want `event_type`, oldest first. The endpoints are read
    once per transaction: one provisioning emits several events."""

    def load() -> list[WebhookEndpoint]:
        return list(session.scalars(_ENABLED_ENDPOINTS, {"env_id": env_id}))

    enabled = rows_once(session, ("webhooks.enabled_endpoints", env_id), WebhookEndpoint, load)
    return [e for e in enabled if event_type in (e.event_types or [])]


def deliveries_page(session: Session, endpoint_pk: int, page: PageRequest) -> Page[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_pk == endpoint_pk)
    return paginate(session, stmt, WebhookDelivery.pk, page)


def delivery(session: Session, env_id: int, pk: int) -> WebhookDelivery:
    row = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.environment_id == env_id, WebhookDelivery.pk == pk)
    ).one_or_none()
    if row is None:
        raise NotFound("webhook delivery", str(pk))
    return row


def latest_deliveries_of_event(session: Session, env_id: int, event_id: str) -> list[WebhookDelivery]:
    """The newest logged attempt of the event at each endpoint that still exists, oldest endpoint first."""
    rows = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.environment_id == env_id, WebhookDelivery.event_id == event_id)
        .order_by(WebhookDelivery.endpoint_pk, WebhookDelivery.pk.desc())
    )
    newest: dict[int, WebhookDelivery] = {}
    for row in rows:
        newest.setdefault(row.endpoint_pk, row)
    return list(newest.values())


def recent_deliveries_of_customer(
    session: Session, env_id: int, customer_ref: str, limit: int
) -> list[tuple[WebhookDelivery, str]]:
    """The newest logged attempts of events about one customer, newest first, with their endpoint's id."""
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint.ref_id)
        .join(WebhookEndpoint, WebhookEndpoint.pk == WebhookDelivery.endpoint_pk)
        .where(WebhookDelivery.environment_id == env_id, WebhookDelivery.customer_ref == customer_ref)
        .order_by(WebhookDelivery.pk.desc())
        .limit(limit)
    )
    return [(delivery, endpoint_ref) for delivery, endpoint_ref in rows]
