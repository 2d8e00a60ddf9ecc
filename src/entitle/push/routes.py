from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from entitle.db import Database
from entitle.http.deps import DB, ServerKey, key_still_valid
from entitle.push import rules, service
from entitle.push.hub import Hub, Subscription

router = APIRouter(prefix="/api/v1/stream", tags=["push"])


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.push_hub
    return hub


async def _events(
    hub: Hub,
    sub: Subscription,
    db: Database,
    env_id: int,
    start: service.Replay,
    customers: list[str] | None,
    key_valid: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """The stream's frames. Its key is read again before every page of replay, every batch of live
    events and every keepalive (`key_valid`): a key revoked while its stream is open ends the stream,
    as it refuses every later request; the client's reconnect is then refused."""
    try:
        yield rules.RETRY
        sent = start.resume_id
        if start.reset:
            yield rules.frame(start.resume_id or None, "reset", {"reason": "LAST_EVENT_ID_TOO_OLD"})
        elif start.resume_id and not start.items:
            # Where the stream starts, before any event: a client dropped before its first event (a quiet
            # environment, a server restart) would otherwise reconnect with no replay point and have to
            # distrust everything it cached.
            yield rules.resume_point(start.resume_id)
        page = start.items
        while page:
            for item in page:
                yield rules.frame(item.id, item.kind, item.payload())
                sent = item.id
            if len(page) < service.REPLAY_PAGE:
                break
            if not await key_valid():
                return
            page = await run_in_threadpool(service.replay_page, db, env_id, sent, customers)
        while True:
            try:
                message = await asyncio.wait_for(sub.queue.get(), hub.keepalive_interval)
            except TimeoutError:
                if not await key_valid():
                    return
                yield rules.KEEPALIVE
                continue
            if isinstance(message, str):  # CLOSE
                return
            if not await key_valid():
                return
            for item in message:
                if item.id > sent:
                    yield rules.frame(item.id, item.kind, item.payload())
                    sent = item.id
    finally:
        hub.unsubscribe(sub)


def _customers(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    found = [v.strip() for raw in values for v in raw.split(",") if v.strip()]
    return found or None


@router.get("", response_class=StreamingResponse)
async def stream(
    request: Request,
    key: ServerKey,
    db: DB,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id_query: Annotated[str | None, Query(alias="lastEventId", max_length=40)] = None,
    customer_id: Annotated[list[str] | None, Query(alias="customerId")] = None,
) -> StreamingResponse:
    raw = last_event_id_header if last_event_id_header is not None else last_event_id_query
    customers = _customers(customer_id)
    hub = hub_of(request)
    # Subscribe before reading the log: an event committed meanwhile is then in the replay or in
    # the queue (or both; ids dedupe it). Once the response headers are out, the stream is live.
    sub = hub.subscribe(key.environment_id, customers)
    try:
        if raw is not None and raw.strip() != "":
            start = await run_in_threadpool(
                service.replay, db, key.environment_id, rules.parse_event_id(raw), customers
            )
        else:  # a fresh stream hears what commits after it opened
            newest = await run_in_threadpool(service.newest_id, db)
            start = service.Replay(reset=False, items=[], resume_id=newest)
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return StreamingResponse(
        _events(hub, sub, db, key.environment_id, start, customers, lambda: key_still_valid(request)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
