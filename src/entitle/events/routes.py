from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from entitle.events import service
from entitle.events.schemas import EventsReport, EventsReported
from entitle.http.body import json_body, openapi_body
from entitle.http.deps import DB, ServerKey
from entitle.http.wire import Envelope, envelope

router = APIRouter(prefix="/api/v1/events", tags=["usage"])


@router.post("", response_model=Envelope[EventsReported], openapi_extra=openapi_body(EventsReport))
def report_events(
    body: Annotated[EventsReport, Depends(json_body(EventsReport))], key: ServerKey, db: DB
) -> dict[str, Any]:
    """Acknowledge only after the batch is committed: an acknowledged event is never lost."""
    reported = service.report_events(db, key.environment_id, body.events)
    return envelope(EventsReported(new=reported.new, duplicates=reported.duplicates))
