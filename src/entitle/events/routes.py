from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from entitle.db import Database
from entitle.events import service
from entitle.events.schemas import EventItem, EventsReport, EventsReported, event_items, item_of
from entitle.http.body import JsonBody, openapi_body
from entitle.http.deps import HotServerKey
from entitle.http.hot_route import PlannedRoute
from entitle.http.wire import Envelope, enveloped_response

# Its dependencies solved by a plan made once (entitle.http.hot_route), not inspected again on every batch;
# routed by the route table, not answered ahead of it (see `PlannedRoute`).
router = APIRouter(prefix="/api/v1/events", tags=["usage"], route_class=PlannedRoute)


class EventsBody(JsonBody[Any]):
    """The batch's events as `EventItem` dicts (validated in one pass, no model per event); what that
    shape refuses is read as `EventsReport`, whose errors (or acceptance) decide, as they always did.

    As a dependency it only reads the bytes: they are validated in the worker thread that stores the
    batch (`report_events`), one thread hop for the whole request rather than one more for validating."""

    async def __call__(self, request: Request) -> bytes:
        return await self.read(request)

    def validate(self, raw: bytes) -> list[EventItem]:
        items = event_items(raw)
        if items is None:
            report: EventsReport = super().validate(raw)
            items = [item_of(e) for e in report.events]
        return items


_BODY = EventsBody(EventsReport)


@router.post("", response_model=Envelope[EventsReported], openapi_extra=openapi_body(EventsReport))
async def report_events(request: Request, key: HotServerKey, raw: Annotated[bytes, Depends(_BODY)]) -> Response:
    # The key is checked before the body is read: an unauthenticated batch is a 401, not a 400.
    """Acknowledge only after the batch is committed: an acknowledged event is never lost."""
    reported = await run_in_threadpool(_report, request.app.state.db, key.environment_id, raw)
    return enveloped_response(EventsReported(new=reported.new, duplicates=reported.duplicates))


def _report(db: Database, env_id: int, raw: bytes) -> service.Reported:
    return service.report_items(db, env_id, _BODY.validate(raw))
