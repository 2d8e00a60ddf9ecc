from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Annotated, Any
from weakref import WeakKeyDictionary

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


class BatchTurns:
    """One SQLite ingestion batch at a time per event loop (a server process runs one): SQLite writes one
    batch at a time anyway, the rest of a batch is pure Python, and two in worker threads at once only
    traded the GIL. The one in the write transaction gives the GIL up at each row the driver steps
    (`executemany`) and waited up to the switch interval to get it back from the other: its lock hold
    doubled, and the process spent 2-5 ms more CPU per batch at 2-4 connections
    (`bench/event_ingest.py --concurrency N`, `--breakdown`). Waiting here costs a batch nothing it would
    not have spent waiting for the GIL; the other routes (checks, usage reports) never queue here.
    Waiters are served in arrival order (`asyncio.Lock` is fair). Not on PostgreSQL: there a batch waits
    on the server for much of its time, and two at once ingested about twice as fast as one after the
    other."""

    def __init__(self) -> None:
        self._turns: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()
        # Batches of this process waiting for their turn (a gauge: nothing decides on it).
        self.waiting = 0

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        lock = self._turns.get(loop)
        if lock is None:
            lock = self._turns[loop] = asyncio.Lock()
        self.waiting += 1
        try:
            await lock.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            lock.release()


batch_turns = BatchTurns()


@router.post("", response_model=Envelope[EventsReported], openapi_extra=openapi_body(EventsReport))
async def report_events(request: Request, key: HotServerKey, raw: Annotated[bytes, Depends(_BODY)]) -> Response:
    # The key is checked before the body is read: an unauthenticated batch is a 401, not a 400.
    """Acknowledge only after the batch is committed: an acknowledged event is never lost."""
    db: Database = request.app.state.db
    # One SQLite batch at a time; PostgreSQL's side by side (see `BatchTurns`).
    async with batch_turns.turn() if db.dialect == "sqlite" else nullcontext():
        reported = await run_in_threadpool(_report, db, key.environment_id, raw)
        return enveloped_response(EventsReported(new=reported.new, duplicates=reported.duplicates))


def _report(db: Database, env_id: int, raw: bytes) -> service.Reported:
    return service.report_items(db, env_id, _BODY.validate(raw))
