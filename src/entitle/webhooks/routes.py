from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from entitle.errors import NotFound
from entitle.http.deps import DB, Paging, ServerKey
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope
from entitle.secrets import secret_box
from entitle.webhooks import service
from entitle.webhooks.schemas import (
    DeliveryOut,
    RedeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.post("", response_model=Envelope[WebhookCreated])
def create_webhook(body: WebhookCreate, key: ServerKey, db: DB, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    endpoint, secret = service.create_webhook(
        db,
        key.environment_id,
        body,
        box=secret_box(settings.data_dir),
        allow_private=settings.webhooks_allow_private,
    )
    return envelope(WebhookCreated.of(endpoint, secret))


@router.get("", response_model=PageEnvelope[WebhookOut])
def list_webhooks(key: ServerKey, db: DB, page: Paging) -> dict[str, Any]:
    return page_envelope(service.list_webhooks(db, key.environment_id, page), WebhookOut.of)


@router.get("/{webhook_id}", response_model=Envelope[WebhookOut])
def get_webhook(webhook_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(WebhookOut.of(service.get_webhook(db, key.environment_id, webhook_id)))


@router.patch("/{webhook_id}", response_model=Envelope[WebhookOut])
def update_webhook(webhook_id: str, body: WebhookUpdate, key: ServerKey, db: DB, request: Request) -> dict[str, Any]:
    allow_private = request.app.state.settings.webhooks_allow_private
    return envelope(
        WebhookOut.of(service.update_webhook(db, key.environment_id, webhook_id, body, allow_private=allow_private))
    )


@router.delete("/{webhook_id}", response_model=Envelope[WebhookOut])
def delete_webhook(webhook_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(WebhookOut.of(service.delete_webhook(db, key.environment_id, webhook_id)))


@router.get("/{webhook_id}/deliveries", response_model=PageEnvelope[DeliveryOut])
def list_deliveries(webhook_id: str, key: ServerKey, db: DB, page: Paging) -> dict[str, Any]:
    result = service.list_deliveries(db, key.environment_id, webhook_id, page)
    return page_envelope(result, lambda d: DeliveryOut.of(d, webhook_id))


@router.post("/deliveries/{delivery_id}/redeliver", response_model=Envelope[RedeliveryOut])
def redeliver(delivery_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    if not (delivery_id.isascii() and delivery_id.isdigit()) or len(delivery_id) > 18:
        raise NotFound("webhook delivery", delivery_id)
    job, endpoint, event_id = service.redeliver(db, key.environment_id, int(delivery_id))
    return envelope(RedeliveryOut(job_id=str(job.pk), webhook_id=endpoint.ref_id, event_id=event_id))
