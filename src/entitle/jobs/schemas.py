from __future__ import annotations

from datetime import datetime
from typing import Any

from entitle.http.wire import WireModel
from entitle.jobs.models import Job


class JobOut(WireModel):
    """Our extension: a job of the durable queue, as the operator sees it."""

    id: str
    kind: str
    status: str
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    finished_at: datetime | None = None
    last_error: str | None = None
    ordering_key: str | None = None
    payload: dict[str, Any]
    # Whether it carries a sealed (encrypted) payload, e.g. billing information on its way to the
    # provider; its content is never shown.
    sealed_payload: bool = False

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=str(job.pk),
            kind=job.kind,
            status=job.status,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            run_at=job.run_at,
            created_at=job.created_at,
            finished_at=job.finished_at,
            last_error=job.last_error,
            ordering_key=job.ordering_key,
            payload=job.payload,
            sealed_payload=job.sealed is not None,
        )
