from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, BigIntPK, EnvironmentScoped
from entitle.db.types import JSONDoc, UTCDateTime


class Event(EnvironmentScoped, Base):
    """A raw usage event as the application reported it. Meters turn events into feature usage."""

    __tablename__ = "events"
    __table_args__ = (
        # Deduplication: one event per idempotency key per environment, kept as long as the event.
        UniqueConstraint("environment_id", "idempotency_key"),
        Index("ix_events_customer_time", "environment_id", "customer_ref", "timestamp"),
        # The console overview's events per day (migration 0031).
        Index("ix_events_env_time", "environment_id", "timestamp"),
    )

    # No index of its own (migration 0035): each index above begins with it, and serves what one on it
    # alone would (the environment's deletion among it); a fourth index cost every ingested event ~10%
    # more insert work.
    environment_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("environments.pk", ondelete="CASCADE"))
    customer_ref: Mapped[str] = mapped_column(String(255))
    resource_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    event_name: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    dimensions: Mapped[dict[str, Any]] = mapped_column(JSONDoc(), default=dict)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
