from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import JSONDoc, UTCDateTime

PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
DEAD = "DEAD"
DISCARDED = "DISCARDED"  # an operator gave up on it (`entitle jobs discard`): never run, its sealed payload erased
JOB_STATUSES = (PENDING, RUNNING, SUCCEEDED, DEAD, DISCARDED)


class Job(EnvironmentScoped, Base):
    """A durable unit of work: a side effect (outbox) or a moment-in-time lifecycle event (scheduler).

    Written in the same transaction as the state change that causes it, so a side effect is never
    lost when a commit succeeds, and never happens when the commit fails.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("environment_id", "dedupe_key"),
        Index("ix_jobs_due", "status", "run_at"),
        Index("ix_jobs_ordering", "ordering_key", "status"),
    )

    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc(), default=dict)
    # What the job must carry but Entitle must not keep (billing information on its way to the provider):
    # JSON encrypted with `entitle.secrets`, erased once the job succeeds or is discarded. A DEAD job keeps
    # it, so a retry can still deliver it.
    sealed: Mapped[str | None] = mapped_column(Text, default=None)
    # Jobs with the same ordering key run one at a time, oldest first (e.g. one webhook endpoint).
    ordering_key: Mapped[str | None] = mapped_column(String(255), default=None)
    # Enqueueing twice with one dedupe key yields one job (e.g. "trial-end:<subscription>:<instant>").
    dedupe_key: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=12)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
