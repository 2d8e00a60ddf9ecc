from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.errors import NotFound
from entitle.http.deps import DB, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope
from entitle.jobs import service
from entitle.jobs.models import JOB_STATUSES
from entitle.jobs.schemas import JobOut

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


@router.get("", response_model=PageEnvelope[JobOut])
def list_jobs(key: ServerKey, db: DB, page: Paging, status: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    statuses = comma_list(status, JOB_STATUSES, name="status")
    return page_envelope(service.list_jobs(db, key.environment_id, page, statuses), JobOut.of)


def _job_pk(job_id: str) -> int:
    # ASCII digits only: str.isdigit() also accepts '²' or '٣', which int() then refuses.
    if not (job_id.isascii() and job_id.isdigit()) or len(job_id) > 18:
        raise NotFound("job", job_id)
    return int(job_id)


@router.post("/{job_id}/retry", response_model=Envelope[JobOut])
def retry_job(job_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(JobOut.of(service.retry_job(db, key.environment_id, _job_pk(job_id))))


@router.post("/{job_id}/discard", response_model=Envelope[JobOut])
def discard_job(job_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(JobOut.of(service.discard_job(db, key.environment_id, _job_pk(job_id))))
