from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, object_session

from entitle.db.memo import rows_once
from entitle.db.pagination import Page, PageRequest, paginate
from entitle.environments.facts import Fact
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


# Most environments have none: each process remembers that (`entitle.environments.facts`), so an event
# reads nothing there. Only an endpoint written (created, or edited: enabled again) can break it.
NO_ENABLED_ENDPOINT = Fact("webhooks.no_enabled_endpoint")


def subscribed(session: Session, env_id: int, event_type: str) -> list[WebhookEndpoint]:
    """Enabled endpoints of the environment that want `event_type`, oldest first. The endpoints are read
    once per transaction: one provisioning emits several events."""
    if NO_ENABLED_ENDPOINT.holds(session, env_id) and not _endpoint_waits(session):
        return []

    def load() -> list[WebhookEndpoint]:
        found = list(session.scalars(_ENABLED_ENDPOINTS, {"env_id": env_id}))
        if not found:
            NO_ENABLED_ENDPOINT.learned(session, env_id)
        return found

    enabled = rows_once(session, ("webhooks.enabled_endpoints", env_id), WebhookEndpoint, load)
    return [e for e in enabled if event_type in (e.event_types or [])]


def _endpoint_waits(session: Session) -> bool:
    """An endpoint added or edited in the session and not flushed yet (the read would flush it first)."""
    if not session.new and not session.identity_map.check_modified():
        return False  # nothing waits at all (`session.dirty` walks every modified row to say so)
    return any(isinstance(row, WebhookEndpoint) for rows in (session.new, session.dirty) for row in rows)


def _endpoint_written(_mapper: Any, _connection: Any, endpoint: WebhookEndpoint) -> None:
    session = object_session(endpoint)
    if session is not None:
        NO_ENABLED_ENDPOINT.broken(session, endpoint.environment_id)


event.listen(WebhookEndpoint, "after_insert", _endpoint_written)
event.listen(WebhookEndpoint, "after_update", _endpoint_written)


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
