from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.events.schemas import UsageInstant
from entitle.http.deps import DB, ServerKey
from entitle.http.wire import Envelope, Unsupported, envelope
from entitle.usage import service
from entitle.usage.schemas import UsageHistory, UsageOut, UsageReport, UsageReportResult

router = APIRouter(tags=["usage"])


@router.post("/api/v2/usage", response_model=Envelope[UsageReportResult])
def report_usage(body: UsageReport, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(UsageReportResult.of(service.report_usage(db, key.environment_id, body.usages)))


@router.post("/api/v1/usage", response_model=Envelope[list[UsageOut]], deprecated=True)
def report_usage_v1(body: UsageReport, key: ServerKey, db: DB) -> dict[str, Any]:
    """Deprecated: the same reports as v2, answered as a bare array."""
    return envelope(service.report_usage(db, key.environment_id, body.usages))


@router.get("/api/v1/usage/{customer_id}/history/{feature_id}", response_model=Envelope[UsageHistory])
def usage_history(
    customer_id: str,
    feature_id: str,
    key: ServerKey,
    db: DB,
    start_date: Annotated[UsageInstant, Query(alias="startDate")],
    end_date: Annotated[UsageInstant | None, Query(alias="endDate")] = None,
    # One series for the feature; a series per dimension value is not computed.
    group_by: Annotated[Unsupported[str], Query(alias="groupBy", max_length=255)] = None,
    resource_id: Annotated[str | None, Query(alias="resourceId", max_length=255)] = None,
) -> dict[str, Any]:
    history = service.usage_history(db, key.environment_id, customer_id, feature_id, start_date, end_date, resource_id)
    return envelope(history)
