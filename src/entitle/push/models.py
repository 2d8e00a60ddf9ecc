from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, BigIntPK
from entitle.db.types import JSONDoc, UTCDateTime

KIND_ENTITLEMENTS = "entitlements.updated"
KIND_USAGE = "usage.updated"
KIND_CREDITS = "credits.updated"
KINDS = (KIND_ENTITLEMENTS, KIND_USAGE, KIND_CREDITS)
"""What stream clients hear."""
KIND_FEATURES = "features.changed"
"""Internal: a feature was created, edited or (un)archived. Only the servers' in-memory entitlement
snapshots read it (`entitle.push.feed`); streams never send it."""
KIND_CURRENCIES = "currencies.changed"
"""Internal, likewise: a custom currency was created, edited or (un)archived."""
KIND_SETTINGS = "settings.changed"
"""Internal: a row was written that may break what the servers know an environment lacks
(`entitle.environments.facts`: no webhook endpoint, no billing integration, no credit-granting catalog);
`data.fact` names which."""


class PushEvent(Base):
    """One change a stream client must hear about; `id` is the SSE event id.

    Written in the transaction that made the change, just before it commits, under a lock that
    makes ids increase in commit order (so a reader that has seen id N has seen every id below N).
    AUTOINCREMENT on SQLite: an id is never reused, even after the newest rows were pruned.
    """

    __tablename__ = "push_events"
    __table_args__ = (
        Index("ix_push_events_env_id", "environment_id", "id"),
        Index("ix_push_events_created_at", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    environment_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("environments.pk", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    customer_ref: Mapped[str] = mapped_column(String(255))
    resource_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDoc())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
