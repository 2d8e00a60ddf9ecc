"""One hub per server process: reads the change log once and fans it out to the open streams.

Fan-out across processes goes through the database. On PostgreSQL the hub holds one LISTEN
connection (psycopg 3, in a background thread); a NOTIFY sent at commit by any process wakes it,
and it reads the new rows once for all of its streams (a slow safety poll covers a lost
connection). On SQLite it polls the log every 250 ms: one query per process, not per client.
Because ids follow commit order, reading "ids above the last one seen" never skips a row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from sqlalchemy import make_url

from entitle.db import Database
from entitle.push import service, store
from entitle.push.models import KINDS
from entitle.push.schemas import Item

log = logging.getLogger(__name__)

CLOSE = "close"
"""Queued to a stream to end it (server stopping, or the client fell too far behind)."""

MAX_QUEUED = 10_000

LISTEN_WAIT = 0.1
"""Longest wait for a NOTIFY before the listener looks at its stop flag again: `stop()` (server
shutdown) returns within about this long. A wait that ends early costs no query."""


@dataclass(eq=False)
class Subscription:
    environment_id: int
    customers: frozenset[str] | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[Item] | str] = field(default_factory=asyncio.Queue)

    def wants(self, item: Item) -> bool:
        return (
            item.kind in KINDS
            and item.environment_id == self.environment_id
            and (self.customers is None or item.customer_ref in self.customers)
        )


class Watcher(Protocol):
    """Hears every change of the log in this process (an in-memory cache), and whether it may have
    missed some: `lost()` when the hub stops reading (its connection failed, the server stops),
    `caught_up()` once it reads again and has read everything committed while it did not."""

    def changed(self, items: list[Item]) -> None: ...

    def lost(self) -> None: ...

    def caught_up(self) -> None: ...


class Hub:
    def __init__(
        self,
        db: Database,
        *,
        poll_interval: float = 0.25,
        safety_poll_interval: float = 5.0,
        prune_interval: float = 300.0,
        keepalive_interval: float = 15.0,
    ) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.safety_poll_interval = safety_poll_interval
        self.prune_interval = prune_interval
        self.keepalive_interval = keepalive_interval
        self.closing = False
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor = 0
        self._last_prune = 0.0
        self._watchers: list[Watcher] = []

    def watch(self, watcher: Watcher) -> None:
        """Tell `watcher` of every change, from the next read of the log on (call before `start`)."""
        self._watchers.append(watcher)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._cursor = service.newest_id(self.db)
            self._thread = threading.Thread(target=self._run, name="entitle-push", daemon=True)
            self._thread.start()

    def close_streams(self) -> None:
        """End every open stream now (and refuse new ones), so the server can stop promptly."""
        self.closing = True
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            self._send(sub, CLOSE)

    def stop(self) -> None:
        self.close_streams()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._lost()

    def chain_exit_signals(self) -> Callable[[], None]:
        """Close the streams on SIGINT/SIGTERM before the server's own handler runs.

        uvicorn waits for open responses before it stops; a stream never ends by itself. Only the
        main thread may set handlers (a server run in a thread is stopped by its owner instead).
        Returns a function that puts the previous handlers back.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: FrameType | None) -> None:
            self.close_streams()
            prior = previous.get(signum)
            if callable(prior):
                prior(signum, frame)
            elif prior == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, prior in previous.items():
                if signal.getsignal(sig) is handler:
                    signal.signal(sig, prior)

        return restore

    # -- streams -----------------------------------------------------------------------------

    def subscribe(self, environment_id: int, customers: list[str] | None) -> Subscription:
        self.start()
        sub = Subscription(environment_id, frozenset(customers) if customers else None, asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
        if self.closing:
            self._send(sub, CLOSE)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def _send(self, sub: Subscription, message: list[Item] | str) -> None:
        def put() -> None:
            if sub.queue.qsize() >= MAX_QUEUED and message != CLOSE:
                # The client does not keep up: end its stream; it resumes with Last-Event-ID.
                sub.queue.put_nowait(CLOSE)
                self.unsubscribe(sub)
                return
            sub.queue.put_nowait(message)

        try:
            sub.loop.call_soon_threadsafe(put)
        except RuntimeError:  # its event loop is gone
            self.unsubscribe(sub)

    def _lost(self) -> None:
        for watcher in self._watchers:
            watcher.lost()

    def _caught_up(self) -> None:
        for watcher in self._watchers:
            watcher.caught_up()

    def _dispatch(self, items: list[Item]) -> None:
        for watcher in self._watchers:
            watcher.changed(items)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            wanted = [item for item in items if sub.wants(item)]
            if wanted:
                self._send(sub, wanted)

    # -- the background thread ---------------------------------------------------------------

    def _catch_up(self) -> None:
        while True:
            items = service.newer_than(self.db, self._cursor)
            if not items:
                return
            self._cursor = items[-1].id
            # Streams subscribed after the read replay these themselves; dedupe is by id.
            self._dispatch(items)
            if len(items) < 1000:
                return

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune >= self.prune_interval:
            self._last_prune = now
            service.prune(self.db)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.db.dialect == "postgresql":
                    self._listen()
                else:
                    self._poll()
            except Exception:
                # Changes may commit unheard until the log is read again: watchers forget what they hold.
                self._lost()
                log.exception("push hub: reading the change log failed; retrying")
                self._stop.wait(1.0)

    def _poll(self) -> None:
        self._catch_up()
        self._caught_up()
        while not self._stop.is_set():
            self._catch_up()
            self._maybe_prune()
            self._stop.wait(self.poll_interval)

    def _listen(self) -> None:
        import psycopg

        url = make_url(self.db.url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f"LISTEN {store.CHANNEL}")
            self._catch_up()  # whatever committed while we were not listening
            self._caught_up()
            last_read = time.monotonic()
            while not self._stop.is_set():
                woken = False
                for _ in conn.notifies(timeout=LISTEN_WAIT, stop_after=1):
                    woken = True
                if woken or time.monotonic() - last_read >= self.safety_poll_interval:
                    self._catch_up()
                    last_read = time.monotonic()
                self._maybe_prune()
