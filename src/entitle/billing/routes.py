"""Our extension: `POST /api/v1/integrations` connects an environment to a billing provider."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from entitle.billing import inbound, service
from entitle.billing.models import STRIPE
from entitle.billing.schemas import IntegrationIn, IntegrationOut, StripeEventReceipt
from entitle.http.deps import DB, ServerKey
from entitle.http.wire import Envelope, envelope

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])


@router.post("", response_model=Envelope[IntegrationOut])
def connect_integration(body: IntegrationIn, key: ServerKey, db: DB, request: Request) -> dict[str, Any]:
    data_dir = request.app.state.settings.data_dir
    return envelope(IntegrationOut.of(service.connect(db, data_dir, key.environment_id, body)))


@router.get("", response_model=Envelope[list[IntegrationOut]])
def list_integrations(key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope([IntegrationOut.of(row) for row in service.list_integrations(db, key.environment_id)])


@router.delete("/{integration_id}", response_model=Envelope[IntegrationOut])
def remove_integration(integration_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    """Disconnect (docs/stripe.md, "Removing the integration"): sync stops; links and Stripe objects stay."""
    return envelope(IntegrationOut.of(service.remove(db, key.environment_id, integration_id)))


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.post("/{integration_id}/webhooks/stripe", response_model=Envelope[StripeEventReceipt])
def stripe_webhook(
    integration_id: str,
    payload: Annotated[bytes, Depends(_raw_body)],
    db: DB,
    request: Request,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> dict[str, Any]:
    """Events from Stripe (no API key: the Stripe signature, checked with the integration's webhook
    secret, authenticates them). Stored once per event id, answered at once, processed as a job."""
    data_dir = request.app.state.settings.data_dir
    receipt = inbound.receive(db, data_dir, STRIPE, integration_id, payload, stripe_signature)
    return envelope(
        StripeEventReceipt(id=receipt.event_id, type=receipt.type, handled=receipt.handled, duplicate=receipt.duplicate)
    )
