from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import text

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import JSONDoc, UTCDateTime

_FK = BigInteger().with_variant(Integer(), "sqlite")


class Customer(EnvironmentScoped, Base):
    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("environment_id", "ref_id"),
        # `GET /customers?email=` matches addresses in any case (`store.list_page`), by this expression.
        Index("ix_customers_env_email", "environment_id", func.lower(text("email"))),
    )

    ref_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(Text, default=None)
    email: Mapped[str | None] = mapped_column(Text, default=None)
    billing_id: Mapped[str | None] = mapped_column(Text, default=None)
    billing_currency: Mapped[str | None] = mapped_column(String(8), default=None)
    coupon_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    language: Mapped[str | None] = mapped_column(String(64), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
    default_payment_method: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    # Archiving is permanent for the id: the row stays (so the id cannot be provisioned again).
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class CustomerIntegration(EnvironmentScoped, Base):
    """A link between a customer and its record in another system (e.g. its Stripe customer id)."""

    __tablename__ = "customer_integrations"
    __table_args__ = (UniqueConstraint("customer_pk", "integration_id"),)

    customer_pk: Mapped[int] = mapped_column(_FK, ForeignKey("customers.pk", ondelete="CASCADE"), index=True)
    integration_id: Mapped[str] = mapped_column(String(255))
    vendor_identifier: Mapped[str] = mapped_column(String(32))
    synced_entity_id: Mapped[str | None] = mapped_column(Text, default=None)
