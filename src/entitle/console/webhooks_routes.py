"""Outbound webhooks (admins): endpoints (the signing secret shown once), each endpoint's delivery log
with every attempt, redeliver. The API's own service functions and URL rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from entitle.console.rules import Permission
from entitle.console.web import PREFIX, Administer, Page, parsed, redirect, render
from entitle.db.pagination import PageRequest
from entitle.errors import InvalidArgument, PermissionDenied
from entitle.http.deps import DB, secret_box_of
from entitle.webhooks import service as webhooks
from entitle.webhooks.models import EVENT_TYPES
from entitle.webhooks.schemas import WebhookCreate, WebhookUpdate

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _admin(ctx: Page) -> None:
    if not ctx.may(Permission.ADMINISTER):
        raise PermissionDenied("webhooks are for admins")


def _list(request: Request, ctx: Page, db: DB, secret: str | None = None, created: str | None = None) -> Response:
    _admin(ctx)
    endpoints = webhooks.list_webhooks(db, ctx.env_id, PageRequest(limit=100)).items
    return render(
        request, ctx, "webhooks.html", endpoints=endpoints, event_types=EVENT_TYPES, secret=secret, created=created
    )


@router.get("/webhooks")
def webhooks_page(request: Request, ctx: Page, db: DB) -> Response:
    return _list(request, ctx, db)


@router.post("/webhooks")
def create_webhook(
    request: Request,
    ctx: Administer,
    db: DB,
    url: Annotated[str, Form(max_length=2048)],
    event_types: Annotated[list[str], Form(max_length=len(EVENT_TYPES))],
    description: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    req = parsed(WebhookCreate, {"url": url, "event_types": event_types, "description": description})
    settings = request.app.state.settings
    endpoint, secret = webhooks.create_webhook(
        db, ctx.env_id, req, box=secret_box_of(request), allow_private=settings.webhooks_allow_private
    )
    # Shown in this response only: it is stored encrypted and never shown again.
    return _list(request, ctx, db, secret=secret, created=endpoint.ref_id)


@router.get("/webhooks/{webhook_id}")
def deliveries_page(
    request: Request,
    ctx: Page,
    db: DB,
    webhook_id: str,
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    _admin(ctx)
    endpoint = webhooks.get_webhook(db, ctx.env_id, webhook_id)
    page = webhooks.list_deliveries(db, ctx.env_id, webhook_id, PageRequest(limit=50, after=after, before=before))
    return render(request, ctx, "webhook.html", endpoint=endpoint, page=page)


@router.post("/webhooks/{webhook_id}/enabled")
def set_enabled(
    request: Request, ctx: Administer, db: DB, webhook_id: str, enabled: Annotated[str, Form(max_length=5)]
) -> Response:
    """Disable an endpoint (it is sent nothing, its pending deliveries are dropped at their turn) or enable
    it again: what a refused redelivery to a disabled endpoint asks an admin to do."""
    if enabled not in ("true", "false"):
        raise InvalidArgument("enabled is true or false")
    settings = request.app.state.settings
    req = WebhookUpdate(enabled=enabled == "true")
    webhooks.update_webhook(db, ctx.env_id, webhook_id, req, allow_private=settings.webhooks_allow_private)
    return redirect(f"{PREFIX}/webhooks/{webhook_id}")


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
def redeliver(
    ctx: Administer, db: DB, webhook_id: str, delivery_id: str, back: Annotated[str, Form(max_length=500)] = ""
) -> Response:
    """`back`: the console page the button was on (a customer's page lists its webhooks too)."""
    if not (delivery_id.isascii() and delivery_id.isdigit() and len(delivery_id) <= 18):
        raise InvalidArgument("delivery ids are numbers")
    webhooks.redeliver(db, ctx.env_id, int(delivery_id))
    return redirect(back if back.startswith(PREFIX + "/") and "//" not in back else f"{PREFIX}/webhooks/{webhook_id}")
