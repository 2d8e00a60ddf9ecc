from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import ExactDecimal, UTCDateTime
from entitle.grants.engine import NO_RESOURCE

_FK = BigInteger().with_variant(Integer(), "sqlite")

# ALL_TIME: the window of usage that never resets (FLUCTUATING features, metered features without a
# reset). NO_RESOURCE: usage reported at the customer level (NULL would not take part in the unique key).


class UsageCounter(EnvironmentScoped, Base):
    """A customer's usage of a feature in one usage window (per resource).

    Updated under a row lock (PostgreSQL) or the database write lock (SQLite), so concurrent
    reports never lose an update; the value is an exact Decimal.
    """

    __tablename__ = "usage_counters"
    __table_args__ = (UniqueConstraint("customer_pk", "feature_ref", "resource_ref", "window_start"),)

    customer_pk: Mapped[int] = mapped_column(_FK, ForeignKey("customers.pk", ondelete="CASCADE"))
    feature_ref: Mapped[str] = mapped_column(String(255))
    resource_ref: Mapped[str] = mapped_column(String(255), default=NO_RESOURCE)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    value: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))


class UsageRecord(EnvironmentScoped, Base):
    """One accepted usage report: the audit trail behind a counter, and the idempotency key store."""

    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("environment_id", "idempotency_key"),
        Index("ix_usage_records_series", "customer_pk", "feature_ref", "timestamp"),
    )

    customer_pk: Mapped[int] = mapped_column(_FK, ForeignKey("customers.pk", ondelete="CASCADE"))
    feature_ref: Mapped[str] = mapped_column(String(255))
    resource_ref: Mapped[str] = mapped_column(String(255), default=NO_RESOURCE)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    update_behavior: Mapped[str] = mapped_column(String(8))
    value: Mapped[Decimal] = mapped_column(ExactDecimal())
    # The counter after this report, and the window it counted in.
    resulting_value: Mapped[Decimal] = mapped_column(ExactDecimal())
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
