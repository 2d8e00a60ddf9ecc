"""`report_event` batching: a queue sent in the background, by size, by time, and on flush/close.

The queue is shared by a thread runner (sync client) and a task runner (async client). An event is
removed from the queue only once the server acknowledged the batch holding it (the server commits
before acknowledging), so a transient failure resends the same events with the same idempotency
keys, which the server deduplicates: each event counts exactly once.

What the server answers decides what happens to a batch, and nothing blocks the queue:

- 2xx: delivered.
- 4xx: permanent. The server names the offending events (`error.details[].field` = `events.<i>...`):
  exactly those are dropped, reported (a log line, and the client's `on_events_dropped` callback), and
  the rest of the batch is resent at once. A refusal naming no event (a revoked key, say) drops the batch.
- 5xx, 429 and network errors: transient. The batch goes to the back of the queue and is retried with
  backoff, so a batch the server keeps failing on never holds back the events queued behind it. After a
  server error (the server answered, so it is not simply unreachable) batches are halved until they
  succeed again: an event the server keeps failing on ends up alone, and its batch-mates get through.
- At `close()`, every batch is tried until the close timeout; what is still undelivered then is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from entitle.sdk.types import EntitleConnectionError, EntitleError
from entitle.sdk.wire import MAX_EVENTS_PER_REQUEST

log = logging.getLogger("entitle.sdk")

Event = dict[str, Any]
#: Called with the events the SDK gave up on and the error that made it (from the SDK's runner).
DropCallback = Callable[[list[Event], EntitleError], None]
BACKOFF_MIN, BACKOFF_MAX = 0.2, 10.0
_NAMED = re.compile(r"^events\.(\d+)(?:\.|$)")


def named_events(error: EntitleError, size: int) -> set[int]:
    """Positions in the batch that a refusal names (`events.<i>.<field>` in `error.details`)."""
    body = error.body if isinstance(error.body, Mapping) else {}
    details = (body.get("error") or {}).get("details") if isinstance(body.get("error"), Mapping) else None
    named: set[int] = set()
    for detail in details if isinstance(details, list) else []:
        match = _NAMED.match(str(detail.get("field", ""))) if isinstance(detail, Mapping) else None
        if match and int(match.group(1)) < size:
            named.add(int(match.group(1)))
    return named


class DropReporter:
    """Says what the SDK gave up on: one log line per refusal, and the application's callback."""

    def __init__(self, callback: DropCallback | None) -> None:
        self.callback = callback

    def __call__(self, events: list[Event], error: EntitleError) -> None:
        keys = ", ".join(str(e.get("idempotencyKey")) for e in events[:10])
        more = f" and {len(events) - 10} more" if len(events) > 10 else ""
        log.error("entitle: %d event(s) dropped (%s%s): %s", len(events), keys, more, error)
        if self.callback is not None:
            try:
                self.callback(events, error)
            except Exception:  # the application's callback must not stop delivery
                log.exception("entitle: the on_events_dropped callback failed")


class EventQueue:
    """Thread-safe queue with sequence numbers: `enqueued` counts events ever queued, `done` those
    acknowledged (or dropped after a permanent refusal)."""

    def __init__(self, batch_size: int, interval: float) -> None:
        if batch_size < 1 or interval <= 0:
            raise ValueError("event_batch_size must be >= 1 and event_flush_interval > 0")
        self.batch_size = min(batch_size, MAX_EVENTS_PER_REQUEST)
        self.interval = interval
        self.cond = threading.Condition()
        self.events: deque[Event] = deque()
        self.enqueued = 0
        self.done = 0
        self.dropped = 0
        self.flush_to = 0
        self.stopping = False
        self._oldest = 0.0
        # A send failed and its events went to the back: they were due, so everything queued is sent as
        # soon as the backoff allows, not at the next time threshold.
        self.retrying = False

    def put(self, event: Event) -> bool:
        """Queue one event; True when the runner should wake (first event: start the timer; size reached)."""
        with self.cond:
            if self.stopping:
                raise RuntimeError("the Entitle client is closed")
            if not self.events:
                self._oldest = time.monotonic()
            self.events.append(event)
            self.enqueued += 1
            wake = len(self.events) == 1 or len(self.events) >= self.batch_size
            if wake:
                self.cond.notify_all()
            return wake

    def wait_time(self) -> float | None:
        """Caller holds `cond`. 0: send now; a delay: wait that long; None: nothing queued."""
        if not self.events:
            return None
        if self.stopping or self.retrying or len(self.events) >= self.batch_size or self.flush_to > self.done:
            return 0.0
        return max(0.0, self._oldest + self.interval - time.monotonic())

    def take(self, limit: int | None = None) -> list[Event]:
        """Caller holds `cond`: the head batch (at most `limit` events), left in the queue until `ack`."""
        n = min(len(self.events), self.batch_size, limit or self.batch_size)
        return [self.events[i] for i in range(n)]

    def ack(self, n: int) -> None:
        """The head `n` events were delivered."""
        with self.cond:
            for _ in range(n):
                self.events.popleft()
            self.done += n
            if self.events:
                self._oldest = time.monotonic()
            else:
                self.retrying = False
            self.cond.notify_all()

    def drop(self, positions: set[int]) -> list[Event]:
        """Remove the head batch's events at these positions (refused for good); returns them."""
        with self.cond:
            head = [self.events.popleft() for _ in range(max(positions) + 1)]
            dropped = [e for i, e in enumerate(head) if i in positions]
            self.events.extendleft(reversed([e for i, e in enumerate(head) if i not in positions]))
            self.done += len(dropped)
            self.dropped += len(dropped)
            self.retrying = self.retrying and bool(self.events)
            self.cond.notify_all()
            return dropped

    def to_back(self, n: int) -> None:
        """Move the head batch behind everything else queued (it failed; let the others go first)."""
        with self.cond:
            self.events.rotate(-n)
            self.retrying = True
            self.cond.notify_all()

    def give_up(self) -> list[Event]:
        """Everything still queued, removed (the close timeout passed)."""
        with self.cond:
            left = list(self.events)
            self.events.clear()
            self.done += len(left)
            self.dropped += len(left)
            self.retrying = False
            self.cond.notify_all()
            return left

    def request_flush(self) -> int:
        with self.cond:
            self.flush_to = self.enqueued
            self.cond.notify_all()
            return self.flush_to

    @property
    def pending(self) -> int:
        return len(self.events)


def refused(queue: EventQueue, batch: list[Event], error: EntitleError, report: DropReporter) -> list[Event]:
    """Drop what a permanent refusal names (all of the batch when it names none); returns the rest of
    the batch, still at the head of the queue, to resend now."""
    named = named_events(error, len(batch)) or set(range(len(batch)))
    report(queue.drop(named), error)
    return [e for i, e in enumerate(batch) if i not in named]


class ThreadBatcher:
    """The sync client's runner: one daemon thread, sync sends."""

    def __init__(
        self, queue: EventQueue, send: Callable[[list[Event]], None], report: DropReporter | None = None
    ) -> None:
        self.queue = queue
        self._send = send
        self._report = report or DropReporter(None)
        self._give_up_at = float("inf")
        self._delay = BACKOFF_MIN
        self._limit = queue.batch_size
        self._thread = threading.Thread(target=self._run, name="entitle-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        q = self.queue
        while True:
            with q.cond:
                while True:
                    wait = q.wait_time()
                    if wait == 0.0:
                        break
                    if wait is None and q.stopping:
                        return
                    q.cond.wait(timeout=wait)
                batch = q.take(self._limit)
            self._deliver(batch)

    def _deliver(self, batch: list[Event]) -> None:
        while batch:
            try:
                self._send(batch)
            except EntitleConnectionError as exc:
                self._retry_later(batch, exc)
                return
            except EntitleError as exc:
                batch = refused(self.queue, batch, exc, self._report)
                continue
            except Exception as exc:  # a batch that cannot even be sent must not stop the runner
                log.exception("entitle: an event batch could not be sent")
                batch = refused(self.queue, batch, EntitleError(f"not sent: {exc!r}"), self._report)
                continue
            self.queue.ack(len(batch))
            self._delay = BACKOFF_MIN
            self._limit = min(self.queue.batch_size, self._limit * 2)
            return

    def _retry_later(self, batch: list[Event], exc: EntitleConnectionError) -> None:
        q = self.queue
        if time.monotonic() >= self._give_up_at:
            left = q.give_up()
            log.error("entitle: %d queued event(s) not delivered before the close timeout: %s", len(left), exc)
            self._report(left, exc)
            return
        log.debug("entitle: event batch failed, retrying later: %s", exc)
        if exc.status is not None:
            self._limit = max(1, len(batch) // 2)
        q.to_back(len(batch))
        with q.cond:
            q.cond.wait(timeout=min(self._delay, max(0.0, self._give_up_at - time.monotonic())))
        self._delay = min(self._delay * 2, BACKOFF_MAX)

    def flush(self, timeout: float | None) -> bool:
        q = self.queue
        target = q.request_flush()
        deadline = None if timeout is None else time.monotonic() + timeout
        with q.cond:
            while q.done < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                q.cond.wait(timeout=left)
        return True

    def close(self, timeout: float) -> bool:
        """Send everything queued (retrying transient failures until `timeout`), then stop."""
        q = self.queue
        with q.cond:
            q.stopping = True
            self._give_up_at = time.monotonic() + timeout
            q.cond.notify_all()
        self._thread.join(timeout + 5)
        return q.pending == 0 and not self._thread.is_alive()


class TaskBatcher:
    """The async client's runner: one task in the application's loop."""

    def __init__(
        self, queue: EventQueue, send: Callable[[list[Event]], Awaitable[None]], report: DropReporter | None = None
    ) -> None:
        self.queue = queue
        self._send = send
        self._report = report or DropReporter(None)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._give_up_at = float("inf")
        self._delay = BACKOFF_MIN
        self._limit = queue.batch_size
        self._task = asyncio.get_running_loop().create_task(self._run(), name="entitle-events")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        q = self.queue
        while True:
            with q.cond:
                wait = q.wait_time()
            if wait is None and q.stopping:
                return
            if wait != 0.0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            with q.cond:
                batch = q.take(self._limit)
            await self._deliver(batch)
            self._progress.set()

    async def _deliver(self, batch: list[Event]) -> None:
        while batch:
            try:
                await self._send(batch)
            except EntitleConnectionError as exc:
                await self._retry_later(batch, exc)
                return
            except EntitleError as exc:
                batch = refused(self.queue, batch, exc, self._report)
                continue
            except Exception as exc:  # a batch that cannot even be sent must not stop the runner
                log.exception("entitle: an event batch could not be sent")
                batch = refused(self.queue, batch, EntitleError(f"not sent: {exc!r}"), self._report)
                continue
            self.queue.ack(len(batch))
            self._delay = BACKOFF_MIN
            self._limit = min(self.queue.batch_size, self._limit * 2)
            return

    async def _retry_later(self, batch: list[Event], exc: EntitleConnectionError) -> None:
        q = self.queue
        if time.monotonic() >= self._give_up_at:
            left = q.give_up()
            log.error("entitle: %d queued event(s) not delivered before the close timeout: %s", len(left), exc)
            self._report(left, exc)
            return
        log.debug("entitle: event batch failed, retrying later: %s", exc)
        if exc.status is not None:
            self._limit = max(1, len(batch) // 2)
        q.to_back(len(batch))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._wake.wait(), timeout=min(self._delay, max(0.0, self._give_up_at - time.monotonic()))
            )
        self._delay = min(self._delay * 2, BACKOFF_MAX)

    async def flush(self, timeout: float | None) -> bool:
        q = self.queue
        target = q.request_flush()
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while q.done < target:
            if self._task.done():
                return False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), timeout=min(left or 1.0, 1.0))
        return True

    async def close(self, timeout: float) -> bool:
        q = self.queue
        with q.cond:
            q.stopping = True
        self._give_up_at = time.monotonic() + timeout
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout + 5)
        except TimeoutError:
            self._task.cancel()
        return q.pending == 0
