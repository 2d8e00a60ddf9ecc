from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import ExactDecimal, JSONDoc, UTCDateTime

_FK = BigInteger().with_variant(Integer(), "sqlite")


class PromotionalEntitlement(EnvironmentScoped, Base):
    """A feature granted to one customer for a period, on top of (and never reduced by) its subscriptions.

    Expired grants stay (status Expired) so the customer's history shows them; revoking deletes the row.
    """

    __tablename__ = "promotional_entitlements"
    __table_args__ = (UniqueConstraint("customer_pk", "feature_ref"),)

    customer_pk: Mapped[int] = mapped_column(_FK, ForeignKey("customers.pk", ondelete="CASCADE"), index=True)
    feature_ref: Mapped[str] = mapped_column(String(255))
    period: Mapped[str] = mapped_column(String(16))
    start_date: Mapped[datetime] = mapped_column(UTCDateTime())
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    usage_limit: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    has_unlimited_usage: Mapped[bool] = mapped_column(default=False)
    has_soft_limit: Mapped[bool] = mapped_column(default=False)
    is_visible: Mapped[bool] = mapped_column(default=True)
    enum_values: Mapped[list[str] | None] = mapped_column(JSONDoc(), default=None)
    reset_period: Mapped[str | None] = mapped_column(String(8), default=None)
    reset_period_configuration: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    paused: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str | None] = mapped_column(Text, default=None)

    def status_at(self, now: datetime) -> str:
        if self.end_date is not None and self.end_date <= now:
            return "Expired"
        return "Paused" if self.paused else "Active"
