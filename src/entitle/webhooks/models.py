from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import JSONDoc

EVENT_TYPES: tuple[str, ...] = (
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
)
JOB_DELIVER = "webhooks.deliver"
JOB_TRIAL_ENDS_SOON = "webhooks.trial_ends_soon"
PAYLOAD_VERSION = 1
TRIAL_ENDS_SOON_DAYS = 3


class WebhookEndpoint(EnvironmentScoped, Base):
    """Where one environment's events are POSTed, and which types it wants."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (UniqueConstraint("environment_id", "ref_id"),)

    ref_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    # The Standard Webhooks signing secret (`whsec_` + base64), encrypted with the secret box
    # (`entitle.secrets`): signing needs it back, a database dump must not reveal it.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSONDoc(), default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class WebhookDelivery(EnvironmentScoped, Base):
    """One attempt to deliver one event to one endpoint: the delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint", "endpoint_pk", "pk"),
        Index("ix_webhook_deliveries_customer", "environment_id", "customer_ref", "pk"),
    )

    endpoint_pk: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("webhook_endpoints.pk", ondelete="CASCADE")
    )
    job_pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    # The customer the event is about (its `data.customerId`), for the console's customer page.
    customer_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    attempt: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    response_excerpt: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class WebhookEventMark(EnvironmentScoped, Base):
    """An event that must be sent once per cause (a usage limit reached in a window): its key, kept."""

    __tablename__ = "webhook_event_marks"
    __table_args__ = (UniqueConstraint("environment_id", "key"),)

    key: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(64))
