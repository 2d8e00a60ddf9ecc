"""Credit tables: custom currencies, wallets, grants, the ledger, consumptions (the idempotency store)
and reservations. Every amount is an exact decimal (`ExactDecimal`), never a float."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import ExactDecimal, JSONDoc, UTCDateTime

_FK = BigInteger().with_variant(Integer(), "sqlite")


class CustomCurrency(EnvironmentScoped, Base):
    __tablename__ = "credit_currencies"
    __table_args__ = (UniqueConstraint("environment_id", "ref_id"),)

    ref_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    symbol: Mapped[str | None] = mapped_column(Text, default=None)
    unit_singular: Mapped[str | None] = mapped_column(Text, default=None)
    unit_plural: Mapped[str | None] = mapped_column(Text, default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Wallet(EnvironmentScoped, Base):
    """One customer's credits of one currency for one resource ("" = the customer itself). Every write to
    its grants first locks this row, so two consumers never draw the same credit (PostgreSQL row lock;
    SQLite serializes writers with BEGIN IMMEDIATE)."""

    __tablename__ = "credit_wallets"
    __table_args__ = (UniqueConstraint("customer_pk", "currency_pk", "resource_ref"),)

    customer_pk: Mapped[int] = mapped_column(_FK, ForeignKey("customers.pk", ondelete="CASCADE"))
    currency_pk: Mapped[int] = mapped_column(_FK, ForeignKey("credit_currencies.pk", ondelete="CASCADE"))
    resource_ref: Mapped[str] = mapped_column(String(255), default="")


class CreditGrant(EnvironmentScoped, Base):
    """Immutable terms (amount, priority, dates); only `consumed`, `reserved` and the status move."""

    __tablename__ = "credit_grants"
    __table_args__ = (
        UniqueConstraint("environment_id", "ref_id"),
        UniqueConstraint("environment_id", "recurrence_key"),
        Index("ix_credit_grants_wallet_status", "wallet_pk", "status"),
        # The console overview's one-off charges of the last 30 days (migration 0031).
        Index("ix_credit_grants_env_created", "environment_id", "created_at"),
    )

    ref_id: Mapped[str] = mapped_column(String(64), insert_sentinel=True)
    wallet_pk: Mapped[int] = mapped_column(_FK, ForeignKey("credit_wallets.pk", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(Text)
    grant_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    consumed: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    # Held by active reservations: not consumed yet, but no longer available.
    reserved: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    priority: Mapped[int] = mapped_column(Integer, default=50)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
    cost_amount: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    cost_currency: Mapped[str] = mapped_column(String(8), default="usd")
    payment_collection_method: Mapped[str] = mapped_column(String(16), default="NONE")
    # A PAID grant collected through the billing provider (INVOICE): NOT_REQUIRED, PROCESSING (its invoice
    # is being made or waits for payment), FAILED, ACTION_REQUIRED; the provider's invoice id, what the
    # answer shows of that invoice (`latestInvoice`, amounts as exact decimal text) and the terms the
    # invoicing job reads (`invoiceDaysUntilDue`, `isInvoicePaid`). Migration 0034.
    payment_collection: Mapped[str] = mapped_column(String(24), default="NOT_REQUIRED", server_default="NOT_REQUIRED")
    invoice_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    latest_invoice: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    collection_terms: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    source_type: Mapped[str | None] = mapped_column(String(32), default=None)
    # RECURRING grants: the subscription and grant period they belong to. `recurrence_key` (subscription,
    # source, wallet, period start, revision) is unique: whatever retries, a period is granted once.
    subscription_pk: Mapped[int | None] = mapped_column(_FK, default=None, index=True)
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    recurrence_key: Mapped[str | None] = mapped_column(String(255), default=None)


class LedgerEntry(EnvironmentScoped, Base):
    """One movement of one grant, signed by its effect on the balance: the balance is their sum."""

    __tablename__ = "credit_ledger"
    __table_args__ = (Index("ix_credit_ledger_wallet", "wallet_pk", "pk"),)

    wallet_pk: Mapped[int] = mapped_column(_FK, ForeignKey("credit_wallets.pk", ondelete="CASCADE"))
    grant_pk: Mapped[int] = mapped_column(_FK, ForeignKey("credit_grants.pk", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(48))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    event_id: Mapped[str | None] = mapped_column(String(255), default=None)
    feature_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    reservation_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    hold_returned_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSONDoc(), default=None)


class Consumption(EnvironmentScoped, Base):
    """An accepted consumption: its idempotency key is claimed by inserting this row first."""

    __tablename__ = "credit_consumptions"
    __table_args__ = (UniqueConstraint("environment_id", "idempotency_key"),)

    idempotency_key: Mapped[str] = mapped_column(String(255))
    wallet_pk: Mapped[int] = mapped_column(_FK, ForeignKey("credit_wallets.pk", ondelete="CASCADE"))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    feature_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    dimensions: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)


class Reservation(EnvironmentScoped, Base):
    """A hold on credits placed by a check with `reserveAmount`; `holds` is {grant pk: amount} as text."""

    __tablename__ = "credit_reservations"
    __table_args__ = (UniqueConstraint("environment_id", "ref_id"),)

    ref_id: Mapped[str] = mapped_column(String(255))
    wallet_pk: Mapped[int] = mapped_column(_FK, ForeignKey("credit_wallets.pk", ondelete="CASCADE"))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    consumed_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    holds: Mapped[dict[str, str]] = mapped_column(JSONDoc(), default=dict)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
