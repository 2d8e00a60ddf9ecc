from __future__ import annotations

from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import JSONDoc

DEFAULT_PRODUCT_SETTINGS: dict[str, Any] = {
    "subscriptionCancellationTime": "END_OF_BILLING_PERIOD",
    "subscriptionEndSetup": "CANCEL_SUBSCRIPTION",
    "subscriptionStartSetup": "PLAN_SELECTION",
    "downgradePlanId": None,
    "subscriptionStartPlanId": None,
    "prorateAtEndOfBillingPeriod": None,
}


class Product(EnvironmentScoped, Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("environment_id", "ref_id"),)

    ref_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
    multiple_subscriptions: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="PUBLISHED")
    # The customer journey, in wire (camelCase) form: what happens on sign-up and on cancellation.
    product_settings: Mapped[dict[str, Any]] = mapped_column(JSONDoc(), default=lambda: dict(DEFAULT_PRODUCT_SETTINGS))
    usage_reset_cutoff_rule: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    # Plan ids in the order pricing pages show them first (our extension `planOrder`); plans not in it
    # follow in the paywall's own order. None: no order chosen.
    plan_order: Mapped[list[str] | None] = mapped_column(JSONDoc(), default=None)
