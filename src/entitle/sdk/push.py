"""The push stream (`GET /api/v1/stream`, Server-Sent Events) keeping the cache fresh.

One coroutine, used by both clients: the async client runs it as a task in the application's loop,
the sync client in a private loop on a daemon thread (so closing cancels it cleanly mid-read).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from entitle.sdk.state import to_decimal
from entitle.sdk.store import EntitlementStore, Key
from entitle.sdk.wire import data_of, entitlements_call

log = logging.getLogger("entitle.sdk")

STREAM_PATH = "/api/v1/stream"


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str
    data: str


class SseParser:
    """Lines in, events out (the text/event-stream format: fields, blank line ends an event)."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._id_in_message = False
        self._event = ""
        self._data: list[str] = []
        self.retry_ms: int | None = None

    def feed(self, line: str) -> Iterator[SseEvent]:
        line = line.rstrip("\r\n")
        if not line:
            if self._data or self._event:
                yield SseEvent(self._id, self._event or "message", "\n".join(self._data))
            elif self._id_in_message:  # only an id (where a fresh stream starts): a replay point, no event
                yield SseEvent(self._id, "", "")
            self._event, self._data, self._id_in_message = "", [], False
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id, self._id_in_message = value, True
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)


class PushListener:
    """Applies the stream's events to the store; reconnects with `Last-Event-ID` after a drop."""

    def __init__(self, store: EntitlementStore, client: httpx.AsyncClient) -> None:
        self.store = store
        self.client = client
        self.connected = asyncio.Event()
        self.unavailable = False

    async def run(self) -> None:
        delay = 0.5
        last_id = self.store.last_event_id()
        while True:
            headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
            parser = SseParser()
            try:
                timeout = httpx.Timeout(10.0, read=60.0)  # the server sends a keepalive every 15 s
                async with self.client.stream("GET", STREAM_PATH, headers=headers, timeout=timeout) as response:
                    if response.status_code in (401, 403, 404, 405):
                        self.unavailable = True
                        log.warning(
                            "entitle: push stream refused (%s); the cache falls back to its TTL",
                            response.status_code,
                        )
                        return
                    if response.status_code != 200:
                        raise httpx.HTTPStatusError("stream", request=response.request, response=response)
                    connected_at = time.time()
                    if last_id is None:
                        # No replay point: anything cached before now may have missed a change.
                        self.store.mark_all_invalid(connected_at)
                    self.store.push_connected = True
                    self.connected.set()
                    delay = 0.5
                    async for line in response.aiter_lines():
                        for event in parser.feed(line):
                            await self.apply(event)
                            if event.id is not None and event.id.isdigit():
                                last_id = int(event.id)
                                self.store.set_last_event_id(last_id)
            except asyncio.CancelledError:
                self.store.push_connected = False
                raise
            except Exception as exc:
                log.debug("entitle: push stream dropped: %r", exc)
            self.store.push_connected = False
            self.connected.clear()
            retry = (parser.retry_ms or 1000) / 1000
            await asyncio.sleep(max(retry, delay))
            delay = min(delay * 2, 30.0)

    async def apply(self, event: SseEvent) -> None:
        try:
            data: dict[str, Any] = json.loads(event.data) if event.data else {}
        except ValueError:
            log.warning("entitle: unreadable push event %r", event.data[:200])
            return
        if event.event == "entitlements.updated":
            customer = data.get("customerId")
            if not customer:
                return
            resource = data.get("resourceId")
            held = self.store.invalidate(customer, resource, all_resources=resource is None)
            for key in held:
                await self.refetch(key)
        elif event.event == "usage.updated":
            customer, feature, current = data.get("customerId"), data.get("featureId"), data.get("currentUsage")
            if customer and feature and current is not None:
                self.store.set_usage((customer, data.get("resourceId")), feature, to_decimal(current))
        elif event.event == "credits.updated":
            customer, currency = data.get("customerId"), data.get("currencyId")
            if customer and currency and data.get("usageLimit") is not None and data.get("currentUsage") is not None:
                self.store.credits.store((customer, currency, data.get("resourceId")), data)
        elif event.event == "reset":
            log.info("entitle: push stream reset (%s): dropping the cache", data.get("reason"))
            self.store.clear()

    async def refetch(self, key: Key) -> None:
        """Re-read a customer this process holds, so its next read stays local. A failure leaves the
        state invalid: the next read fetches (or answers STALE_CACHE when offline)."""
        mark = self.store.before_fetch(key)
        call = entitlements_call(*key)
        try:
            response = await self.client.request(call.method, call.path, params=call.params)
            self.store.store(key, data_of(response), mark)
        except Exception as exc:
            log.debug("entitle: refetch of %s failed: %r", key, exc)
