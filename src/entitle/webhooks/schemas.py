"""Webhook wire shapes (our extension; Stigg's conventions: camelCase, `data` envelope, cursor pages)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from entitle.http.wire import HttpUrl, LongText, WireModel
from entitle.webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from entitle.webhooks.rules import ascii_url

EventType = Literal[
    "customer.created",
    "customer.updated",
    "customer.archived",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "subscription.expired",
    "subscription.trial_expired",
    "subscription.trial_ends_soon",
    "customer.payment_failed",
    "usage.limit_reached",
    "usage.soft_limit_exceeded",
    "promotional_entitlement.granted",
    "promotional_entitlement.revoked",
    "promotional_entitlement.expired",
    "entitlements.updated",
    "credit_grant.created",
    "credit_grant.expired",
    "credit_grant.voided",
    "credit_balance.low",
    "credit_balance.depleted",
]
SECRET_PREFIX = "whsec_"


def _secret(value: str) -> str:
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with '{SECRET_PREFIX}' (Standard Webhooks format)")
    try:
        raw = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be '{SECRET_PREFIX}' followed by base64") from None
    if not 24 <= len(raw) <= 64:
        raise ValueError("must decode to 24 to 64 bytes")
    return value


def _ascii_host(value: str) -> str:
    """Stored and shown as it is called: an internationalized host name in its ASCII (IDNA) form."""
    return ascii_url(value)


WebhookUrl = Annotated[HttpUrl, AfterValidator(_ascii_host)]
WebhookSecret = Annotated[str, Field(max_length=200), AfterValidator(_secret)]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]


def _unique(values: list[str] | None) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise PydanticCustomError("unique", "each event type may appear once")
    return values


class WebhookCreate(WireModel):
    url: WebhookUrl
    event_types: EventTypes
    secret: WebhookSecret | None = None
    description: LongText | None = None
    enabled: bool = True

    _unique_types = field_validator("event_types")(_unique)


class WebhookUpdate(WireModel):
    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    description: LongText | None = None
    enabled: bool | None = None

    _unique_types = field_validator("event_types")(_unique)


class WebhookOut(WireModel):
    id: str
    url: str
    description: str | None = None
    event_types: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: WebhookEndpoint) -> WebhookOut:
        return cls(
            id=e.ref_id,
            url=e.url,
            description=e.description,
            event_types=list(e.event_types or []),
            enabled=e.enabled,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class WebhookCreated(WebhookOut):
    """The create response: the only time the signing secret is shown."""

    secret: str

    @classmethod
    def of(cls, e: WebhookEndpoint, secret: str) -> WebhookCreated:  # type: ignore[override]
        return cls(**WebhookOut.of(e).model_dump(), secret=secret)


class DeliveryOut(WireModel):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    attempt: int
    succeeded: bool
    status_code: int | None = None
    latency_ms: int
    response_excerpt: str | None = None
    error: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, d: WebhookDelivery, webhook_ref: str) -> DeliveryOut:
        return cls(
            id=str(d.pk),
            webhook_id=webhook_ref,
            event_id=d.event_id,
            event_type=d.event_type,
            attempt=d.attempt,
            succeeded=d.succeeded,
            status_code=d.status_code,
            latency_ms=d.latency_ms,
            response_excerpt=d.response_excerpt,
            error=d.error,
            created_at=d.created_at,
        )


class RedeliveryOut(WireModel):
    job_id: str
    webhook_id: str
    event_id: str
