from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import UTCDateTime

_FK = BigInteger().with_variant(Integer(), "sqlite")


class Contract(EnvironmentScoped, Base):
    """A sales contract: one customer's custom-priced or externally billed subscriptions, grouped."""

    __tablename__ = "contracts"
    __table_args__ = (UniqueConstraint("environment_id", "ref_id"),)

    ref_id: Mapped[str] = mapped_column(String(255))  # the caller's contractId
    customer_pk: Mapped[int] = mapped_column(_FK, ForeignKey("customers.pk", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(Text, default=None)
    po_number: Mapped[str | None] = mapped_column(Text, default=None)
    activation_start_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    activation_end_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ContractSubscription(EnvironmentScoped, Base):
    """A subscription on a contract: a subscription is on at most one (the unique subscription)."""

    __tablename__ = "contract_subscriptions"
    __table_args__ = (UniqueConstraint("subscription_pk"),)

    contract_pk: Mapped[int] = mapped_column(_FK, ForeignKey("contracts.pk", ondelete="CASCADE"), index=True)
    subscription_pk: Mapped[int] = mapped_column(_FK, ForeignKey("subscriptions.pk", ondelete="CASCADE"))
