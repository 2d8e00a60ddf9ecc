"""Usage reported to a billing provider: one row per (integration, subscription, feature, period).

The row is the watermark that makes usage reporting exactly-once on Entitle's side: it is written
(PENDING, with the value and the meter event's identifier) before the provider is called and marked
SENT after, so a retried or duplicated job finds the row and re-sends the *same* value under the
*same* identifier (the provider counts an identifier once) instead of measuring and sending again.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import ExactDecimal, UTCDateTime

_FK = BigInteger().with_variant(Integer(), "sqlite")

REPORT_PENDING = "PENDING"
REPORT_SENT = "SENT"


class BillingUsageReport(EnvironmentScoped, Base):
    __tablename__ = "billing_usage_reports"
    __table_args__ = (
        UniqueConstraint("integration_pk", "subscription_pk", "feature_ref", "period_start"),
        UniqueConstraint("integration_pk", "identifier"),
    )

    integration_pk: Mapped[int] = mapped_column(_FK, ForeignKey("integrations.pk", ondelete="CASCADE"))
    subscription_pk: Mapped[int] = mapped_column(_FK, ForeignKey("subscriptions.pk", ondelete="CASCADE"))
    feature_ref: Mapped[str] = mapped_column(String(255))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    # The usage billed for the period (exact), and the cumulative total it was measured from (for a
    # feature whose usage never resets, the next period bills the growth past this watermark).
    value: Mapped[Decimal] = mapped_column(ExactDecimal())
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cumulative: Mapped[Decimal] = mapped_column(ExactDecimal())
    meter_billing_id: Mapped[str] = mapped_column(String(255))
    event_name: Mapped[str] = mapped_column(String(255))
    customer_billing_id: Mapped[str] = mapped_column(String(255))
    identifier: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default=REPORT_PENDING)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
