"""Webhook endpoints and their delivery log; the delivery job handler is in `delivery.py`."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import NoReturn

from sqlalchemy.orm import Session

from entitle.db import Database
from entitle.db.pagination import Page, PageRequest
from entitle.errors import FailedPrecondition, InvalidArgument, NotFound
from entitle.jobs import service as jobs
from entitle.jobs.models import Job
from entitle.secrets import SecretBox
from entitle.webhooks import store
from entitle.webhooks.emit import ordering_key
from entitle.webhooks.models import JOB_DELIVER, WebhookDelivery, WebhookEndpoint
from entitle.webhooks.rules import url_refusal
from entitle.webhooks.schemas import SECRET_PREFIX, WebhookCreate, WebhookUpdate


class WebhookUrlNotAllowed(InvalidArgument):
    code = "WEBHOOK_URL_NOT_ALLOWED"


def check_url(url: str, allow_private: bool) -> None:
    reason = url_refusal(url, allow_private=allow_private)
    if reason is not None:
        raise WebhookUrlNotAllowed(f"webhook url refused: {reason}")


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def create_webhook(
    db: Database, env_id: int, req: WebhookCreate, *, box: SecretBox, allow_private: bool
) -> tuple[WebhookEndpoint, str]:
    """Create the endpoint; returns it with its signing secret, which is stored encrypted and never shown again."""
    check_url(req.url, allow_private)
    secret = req.secret or new_secret()
    with db.transaction() as s:
        endpoint = WebhookEndpoint(
            environment_id=env_id,
            ref_id=f"wh_{uuid.uuid4().hex}",
            url=req.url,
            description=req.description,
            secret_encrypted=box.encrypt(secret),
            event_types=list(req.event_types),
            enabled=req.enabled,
        )
        s.add(endpoint)
        s.flush()
        return endpoint, secret


def get_webhook(db: Database, env_id: int, ref_id: str) -> WebhookEndpoint:
    with db.read() as s:
        return store.get(s, env_id, ref_id)


def list_webhooks(db: Database, env_id: int, page: PageRequest) -> Page[WebhookEndpoint]:
    with db.read() as s:
        return store.list_page(s, env_id, page)


def update_webhook(
    db: Database, env_id: int, ref_id: str, req: WebhookUpdate, *, allow_private: bool
) -> WebhookEndpoint:
    if req.url is not None:
        check_url(req.url, allow_private)
    with db.transaction() as s:
        endpoint = store.get(s, env_id, ref_id, for_update=True)
        fields = req.model_fields_set
        if "url" in fields:
            if req.url is None:
                raise_null("url")
            endpoint.url = req.url
        if "event_types" in fields:
            if req.event_types is None:
                raise_null("eventTypes")
            endpoint.event_types = list(req.event_types)
        if "enabled" in fields:
            if req.enabled is None:
                raise_null("enabled")
            endpoint.enabled = req.enabled
        if "description" in fields:
            endpoint.description = req.description
        s.flush()
        return endpoint


def raise_null(name: str) -> NoReturn:
    raise InvalidArgument(f"{name} may not be null")


def delete_webhook(db: Database, env_id: int, ref_id: str) -> WebhookEndpoint:
    """Delete the endpoint and its log; its pending deliveries find it gone and do nothing."""
    with db.transaction() as s:
        endpoint = store.get(s, env_id, ref_id, for_update=True)
        s.delete(endpoint)
        s.flush()
        return endpoint


def list_deliveries(db: Database, env_id: int, ref_id: str, page: PageRequest) -> Page[WebhookDelivery]:
    with db.read() as s:
        endpoint = store.get(s, env_id, ref_id)
        return store.deliveries_page(s, endpoint.pk, page)


def customer_deliveries(
    db: Database, env_id: int, customer_ref: str, limit: int = 20
) -> list[tuple[WebhookDelivery, str]]:
    """The newest attempts to deliver events about one customer (at every endpoint), with the endpoint's id."""
    with db.read() as s:
        return store.recent_deliveries_of_customer(s, env_id, customer_ref, limit)


def redeliver(db: Database, env_id: int, delivery_pk: int) -> tuple[Job, WebhookEndpoint, str]:
    """Send the event of a logged attempt again, as a new job behind the endpoint's pending ones.

    The event keeps its id (the `webhook-id` header), so a receiver that deduplicates sees a repeat.
    """
    with db.transaction() as s:
        return _redeliver(s, env_id, store.delivery(s, env_id, delivery_pk))


def redeliver_event(db: Database, env_id: int, event_id: str) -> list[tuple[Job, WebhookEndpoint, str]]:
    """Send an event again to every enabled endpoint whose log holds it (an event goes to each subscribed
    endpoint under one id), one new job each, in one transaction; 404 when no log holds it, 409 when
    every endpoint that logged it is disabled."""
    with db.transaction() as s:
        rows = store.latest_deliveries_of_event(s, env_id, event_id)
        if not rows:
            raise NotFound("webhook event", event_id)
        enabled = [row for row in rows if _endpoint_enabled(s, row)]
        return [_redeliver(s, env_id, row) for row in (enabled or rows)]


def _endpoint_enabled(s: Session, row: WebhookDelivery) -> bool:
    endpoint = s.get(WebhookEndpoint, row.endpoint_pk)
    return endpoint is not None and endpoint.enabled


def _redeliver(s: Session, env_id: int, row: WebhookDelivery) -> tuple[Job, WebhookEndpoint, str]:
    endpoint = s.get(WebhookEndpoint, row.endpoint_pk)
    original = s.get(Job, row.job_pk)
    if endpoint is None or original is None or "event" not in (original.payload or {}):
        raise FailedPrecondition(f"the event of delivery {row.pk} is no longer stored")
    if not endpoint.enabled:
        # The delivery job would find it disabled at its turn and send nothing: refusing now says so,
        # rather than answering with a job id for a delivery that will never happen.
        raise FailedPrecondition(f"webhook '{endpoint.ref_id}' is disabled; enable it, then redeliver")
    job = jobs.enqueue(
        s,
        env_id,
        JOB_DELIVER,
        {"endpoint": endpoint.pk, "event": original.payload["event"], "redelivery": True},
        ordering_key=ordering_key(endpoint.pk),
    )
    return job, endpoint, row.event_id
