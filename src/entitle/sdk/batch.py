"""`report_event` batching: a queue sent in the background, by size, by time, and on flush/close.

The queue is shared by a thread runner (sync client) and a task runner (async client). An event is
removed from the queue only once the server acknowledged the batch holding it (the server commits
before acknowledging), so a transient failure resends the same events with the same idempotency
keys, which the server deduplicates: each event counts exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from entitle.sdk.types import EntitleConnectionError, EntitleError
from entitle.sdk.wire import MAX_EVENTS_PER_REQUEST

log = logging.getLogger("entitle.sdk")

Event = dict[str, Any]
BACKOFF_MIN, BACKOFF_MAX = 0.2, 10.0


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
        if self.stopping or len(self.events) >= self.batch_size or self.flush_to > self.done:
            return 0.0
        return max(0.0, self._oldest + self.interval - time.monotonic())

    def take(self) -> list[Event]:
        """Caller holds `cond`: the head batch, left in the queue until `ack`."""
        n = min(len(self.events), self.batch_size)
        return [self.events[i] for i in range(n)]

    def ack(self, n: int, *, dropped: bool = False) -> None:
        with self.cond:
            for _ in range(n):
                self.events.popleft()
            self.done += n
            if dropped:
                self.dropped += n
            if self.events:
                self._oldest = time.monotonic()
            self.cond.notify_all()

    def request_flush(self) -> int:
        with self.cond:
            self.flush_to = self.enqueued
            self.cond.notify_all()
            return self.flush_to

    @property
    def pending(self) -> int:
        return len(self.events)


def _log_drop(batch: list[Event], error: EntitleError) -> None:
    log.error("entitle: the server refused %d event(s), dropped: %s", len(batch), error)


class ThreadBatcher:
    """The sync client's runner: one daemon thread, sync sends."""

    def __init__(self, queue: EventQueue, send: Callable[[list[Event]], None]) -> None:
        self.queue = queue
        self._send = send
        self._give_up_at = float("inf")
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
                batch = q.take()
            self._deliver(batch)

    def _deliver(self, batch: list[Event]) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                self._send(batch)
                self.queue.ack(len(batch))
                return
            except EntitleConnectionError as exc:
                if time.monotonic() >= self._give_up_at:
                    log.error("entitle: %d queued event(s) not delivered at close: %s", self.queue.pending, exc)
                    with self.queue.cond:
                        self.queue.events.clear()
                        self.queue.cond.notify_all()
                    return
                log.debug("entitle: event batch failed, retrying: %s", exc)
            except EntitleError as exc:
                _log_drop(batch, exc)
                self.queue.ack(len(batch), dropped=True)
                return
            with self.queue.cond:
                self.queue.cond.wait(timeout=delay)  # a close() wakes this early
            delay = min(delay * 2, BACKOFF_MAX)

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

    def __init__(self, queue: EventQueue, send: Callable[[list[Event]], Awaitable[None]]) -> None:
        self.queue = queue
        self._send = send
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._give_up_at = float("inf")
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
                batch = q.take()
            await self._deliver(batch)
            self._progress.set()

    async def _deliver(self, batch: list[Event]) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                await self._send(batch)
                self.queue.ack(len(batch))
                return
            except EntitleConnectionError as exc:
                if time.monotonic() >= self._give_up_at:
                    log.error("entitle: %d queued event(s) not delivered at close: %s", self.queue.pending, exc)
                    with self.queue.cond:
                        self.queue.events.clear()
                    return
                log.debug("entitle: event batch failed, retrying: %s", exc)
            except EntitleError as exc:
                _log_drop(batch, exc)
                self.queue.ack(len(batch), dropped=True)
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            delay = min(delay * 2, BACKOFF_MAX)

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
