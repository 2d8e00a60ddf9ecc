from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, BigIntPK, EnvironmentScoped
from entitle.db.types import ExactDecimal, UTCDateTime
from entitle.grants.engine import NO_RESOURCE

_FK = BigInteger().with_variant(Integer(), "sqlite")

# ALL_TIME: the window of usage that never resets (FLUCTUATING features, metered features without a
# reset). NO_RESOURCE: usage reported at the customer level (NULL would not take part in the unique key).


class UsageCounter(EnvironmentScoped, Base):
    """A customer's usage of a feature in one usage window (per resource).

    Updated under a row lock (PostgreSQL) or the database write lock (SQLite), so concurrent
    reports never lose an update; the value is an exact Decimal. A meter's aggregation is kept
    incrementally (see `entitle.usage.rules.Tally`): `samples` and `total` are what MAX, MIN and AVG
    need besides the value (NULL `samples`: a row written before they were kept, rebuilt from its
    window's events when next touched); UNIQUE keeps its distinct values in `usage_distinct_values`.
    """

    __tablename__ = "usage_counters"
    __table_args__ = (UniqueConstraint("customer_pk", "feature_ref", "resource_ref", "window_start"),)

    customer_pk: Mapped[int] = mapped_column(_FK, ForeignKey("customers.pk", ondelete="CASCADE"))
    feature_ref: Mapped[str] = mapped_column(String(255))
    resource_ref: Mapped[str] = mapped_column(String(255), default=NO_RESOURCE)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    value: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    samples: Mapped[int | None] = mapped_column(BigInteger(), default=0)
    total: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)


class WaitingUsage(EnvironmentScoped, Base):
    """Usage measured from raw events that no grant could count yet: the customer did not exist (or
    was archived), or held no entitlement to the feature. One tally per customer id, resource and
    feature, kept from the moment an event arrives; it moves into the customer's current usage window
    as soon as the customer holds the feature (`entitle.usage.waiting.fold_waiting`)."""

    __tablename__ = "usage_waiting"
    __table_args__ = (UniqueConstraint("environment_id", "customer_ref", "resource_ref", "feature_ref"),)

    customer_ref: Mapped[str] = mapped_column(String(255))
    resource_ref: Mapped[str] = mapped_column(String(255), default=NO_RESOURCE)
    feature_ref: Mapped[str] = mapped_column(String(255))
    value: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    samples: Mapped[int] = mapped_column(BigInteger(), default=0)
    total: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)


class DistinctValue(Base):
    """One distinct value (its sha256) seen by a UNIQUE meter in a counter's window, or while waiting."""

    __tablename__ = "usage_distinct_values"
    __table_args__ = (
        UniqueConstraint("counter_pk", "digest"),
        UniqueConstraint("waiting_pk", "digest"),
        CheckConstraint("(counter_pk IS NULL) <> (waiting_pk IS NULL)", name="one_owner"),
    )

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    counter_pk: Mapped[int | None] = mapped_column(_FK, ForeignKey("usage_counters.pk", ondelete="CASCADE"))
    waiting_pk: Mapped[int | None] = mapped_column(_FK, ForeignKey("usage_waiting.pk", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64))


class UsageRecord(EnvironmentScoped, Base):
    """One accepted usage report: the audit trail behind a counter, and the idempotency key store."""

    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("environment_id", "idempotency_key"),
        Index("ix_usage_records_series", "customer_pk", "feature_ref", "timestamp"),
        # The console overview's reports per day (migration 0031).
        Index("ix_usage_records_env_time", "environment_id", "timestamp"),
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
