from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import ExactDecimal, JSONDoc


class Coupon(EnvironmentScoped, Base):
    __tablename__ = "coupons"
    __table_args__ = (UniqueConstraint("environment_id", "ref_id"),)

    ref_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    # PERCENTAGE when percent_off is set, FIXED when amounts_off is: exactly one of the two.
    coupon_type: Mapped[str] = mapped_column(String(16))
    percent_off: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    # [{"currency": "usd", "amount": "10.5"}]: amounts as decimal strings, so JSON keeps them exact.
    amounts_off: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDoc(), default=None)
    duration_in_months: Mapped[int | None] = mapped_column(default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    source: Mapped[str] = mapped_column(String(16), default="STIGG")
    billing_id: Mapped[str | None] = mapped_column(String(255), default=None)
    billing_link_url: Mapped[str | None] = mapped_column(Text, default=None)
