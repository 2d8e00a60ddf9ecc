from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import ExactDecimal, JSONDoc, UTCDateTime

_FK = BigInteger().with_variant(Integer(), "sqlite")


class Subscription(EnvironmentScoped, Base):
    """A customer's subscription to one version of a plan (and of its add-ons)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("environment_id", "ref_id"),
        Index("ix_subscriptions_customer_status", "customer_pk", "status"),
        # The console overview's new subscriptions per day (migration 0031).
        Index("ix_subscriptions_env_created", "environment_id", "created_at"),
    )

    ref_id: Mapped[str] = mapped_column(String(255))
    customer_pk: Mapped[int] = mapped_column(_FK, ForeignKey("customers.pk", ondelete="CASCADE"))
    paying_customer_pk: Mapped[int | None] = mapped_column(_FK, ForeignKey("customers.pk"), default=None)
    resource_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    product_pk: Mapped[int] = mapped_column(_FK, ForeignKey("products.pk"))
    plan_pk: Mapped[int] = mapped_column(_FK, ForeignKey("packages.pk"))
    plan_ref: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    pricing_type: Mapped[str] = mapped_column(String(8))
    billing_period: Mapped[str | None] = mapped_column(String(16), default=None)
    billing_country_code: Mapped[str | None] = mapped_column(String(16), default=None)
    payment_collection: Mapped[str] = mapped_column(String(24), default="NOT_REQUIRED")
    payment_collection_method: Mapped[str] = mapped_column(String(8), default="CHARGE")
    start_date: Mapped[datetime] = mapped_column(UTCDateTime())
    billing_cycle_anchor: Mapped[datetime] = mapped_column(UTCDateTime())
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    trial_end_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    trial_end_behavior: Mapped[str | None] = mapped_column(String(24), default=None)
    # When the subscription ends (or ended); a scheduled cancellation sets it in the future.
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cancellation_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cancel_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    unit_quantity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    budget: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    minimum_spend: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
    coupon_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    billing_id: Mapped[str | None] = mapped_column(Text, default=None)
    salesforce_id: Mapped[str | None] = mapped_column(Text, default=None)
    # A sales-led deal's own prices, in wire form (`PriceOverride` with the charge's currency filled in).
    price_overrides: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDoc(), default=None)


class SubscriptionAddon(EnvironmentScoped, Base):
    __tablename__ = "subscription_addons"
    __table_args__ = (UniqueConstraint("subscription_pk", "addon_ref"),)

    subscription_pk: Mapped[int] = mapped_column(_FK, ForeignKey("subscriptions.pk", ondelete="CASCADE"), index=True)
    addon_pk: Mapped[int] = mapped_column(_FK, ForeignKey("packages.pk"))
    addon_ref: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[int] = mapped_column(BigInteger, default=1)


class SubscriptionCharge(EnvironmentScoped, Base):
    """A quantity the customer bought of a per-unit charge (seats) or of credits."""

    __tablename__ = "subscription_charges"
    __table_args__ = (UniqueConstraint("subscription_pk", "charge_type", "ref_id"),)

    subscription_pk: Mapped[int] = mapped_column(_FK, ForeignKey("subscriptions.pk", ondelete="CASCADE"), index=True)
    charge_type: Mapped[str] = mapped_column(String(8))  # FEATURE | CREDIT
    ref_id: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal())


class SubscriptionEntitlement(EnvironmentScoped, Base):
    """A per-subscription override of what the plan grants for one feature (or credit currency)."""

    __tablename__ = "subscription_entitlements"
    __table_args__ = (UniqueConstraint("subscription_pk", "entitlement_type", "ref_id"),)

    subscription_pk: Mapped[int] = mapped_column(_FK, ForeignKey("subscriptions.pk", ondelete="CASCADE"), index=True)
    entitlement_type: Mapped[str] = mapped_column(String(8))
    ref_id: Mapped[str] = mapped_column(String(255))
    usage_limit: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    has_unlimited_usage: Mapped[bool] = mapped_column(default=False)
    has_soft_limit: Mapped[bool] = mapped_column(default=False)
    reset_period: Mapped[str | None] = mapped_column(String(8), default=None)
    reset_period_configuration: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    amount: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    cadence: Mapped[str | None] = mapped_column(String(8), default=None)


class FutureUpdate(EnvironmentScoped, Base):
    """A change that takes effect later (a downgrade or billing-period change at period end)."""

    __tablename__ = "subscription_future_updates"

    subscription_pk: Mapped[int] = mapped_column(_FK, ForeignKey("subscriptions.pk", ondelete="CASCADE"), index=True)
    schedule_type: Mapped[str] = mapped_column(String(32))
    schedule_status: Mapped[str] = mapped_column(String(16), default="SCHEDULED")
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The change itself, in wire form (e.g. {"planId": ..., "billingPeriod": ..., "addons": [...]}).
    change: Mapped[dict[str, Any]] = mapped_column(JSONDoc(), default=dict)
    target_package_ref: Mapped[str | None] = mapped_column(String(255), default=None)
