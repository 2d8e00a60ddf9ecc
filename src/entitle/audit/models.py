from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from entitle.clock import utcnow
from entitle.db.base import Base, BigIntPK
from entitle.db.types import JSONDoc, UTCDateTime


class AuditEntry(Base):
    """One row created, changed or deleted by an identified actor. Append-only: nothing updates it."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_environment_id_pk", "environment_id", "pk"),)

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # None for what belongs to no environment (console users).
    environment_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("environments.pk", ondelete="CASCADE"), default=None
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(320))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONDoc(), default=dict)
