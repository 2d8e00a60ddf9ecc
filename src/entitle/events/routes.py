from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from entitle.events import service
from entitle.events.schemas import EventItem, EventsReport, EventsReported, event_items, item_of
from entitle.http.body import JsonBody, openapi_body
from entitle.http.deps import DB, ServerKey
from entitle.http.wire import Envelope, envelope

router = APIRouter(prefix="/api/v1/events", tags=["usage"])


class EventsBody(JsonBody[Any]):
    """The batch's events as `EventItem` dicts (validated in one pass, no model per event); what that
    shape refuses is read as `EventsReport`, whose errors (or acceptance) decide, as they always did."""

    def validate(self, raw: bytes) -> list[EventItem]:
        items = event_items(raw)
        if items is None:
            report: EventsReport = super().validate(raw)
            items = [item_of(e) for e in report.events]
        return items


@router.post("", response_model=Envelope[EventsReported], openapi_extra=openapi_body(EventsReport))
def report_events(
    key: ServerKey, db: DB, items: Annotated[list[EventItem], Depends(EventsBody(EventsReport))]
) -> dict[str, Any]:
    # The key is checked before the body is read: an unauthenticated batch is a 401, not a 400.
    """Acknowledge only after the batch is committed: an acknowledged event is never lost."""
    reported = service.report_items(db, key.environment_id, items)
    return envelope(EventsReported(new=reported.new, duplicates=reported.duplicates))
