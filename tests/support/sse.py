"""A test client for the push stream (`GET /api/v1/stream`): reads it in a background thread.

Closing it ends the read at once: the reader thread is blocked in `recv()` on the stream's socket,
and closing a socket from another thread does not wake such a read on Linux (nor send a FIN, so the
server keeps the stream open too) until the server's next keepalive, 15 s later. `close()` therefore
shuts the socket down (`shutdown(SHUT_RDWR)`), which returns the blocked read at once and tells the
server the client left; then it waits for the reader and closes the connection pool.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

WAIT = 10.0  # seconds; generous, a stream event normally arrives within a second


@dataclass
class Event:
    id: int | None
    event: str
    data: dict[str, Any]


class SSEClient:
    """Reads a stream in a background thread; events (and the end of the stream) land in a queue."""

    def __init__(self, base_url: str, key: str, *, last_event_id: str | None = None, query: str = "") -> None:
        headers = {"X-API-KEY": key}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.status: int | None = None
        self.body: Any = None
        self.retry: int | None = None
        self.comments: list[str] = []
        self._opened = threading.Event()
        self._response: httpx.Response | None = None
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(30, read=None))
        self._thread = threading.Thread(target=self._read, args=(f"/api/v1/stream{query}",), daemon=True)
        self._thread.start()
        assert self._opened.wait(WAIT), "the stream did not open"

    def _read(self, path: str) -> None:
        try:
            with self._client.stream("GET", path) as response:
                self._response = response
                self.content_type = response.headers.get("content-type", "")
                if response.status_code != 200:
                    response.read()
                    self.body = response.json()
                self.status = response.status_code
                self._opened.set()
                if response.status_code != 200:
                    return
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == "":
                        if "data" in fields:
                            raw_id = fields.get("id")
                            self.events.put(
                                Event(
                                    int(raw_id) if raw_id else None,
                                    fields.get("event", "message"),
                                    json.loads(fields["data"]),
                                )
                            )
                        fields = {}
                    elif line.startswith(":"):
                        self.comments.append(line)
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "retry":
                            self.retry = int(value)
                        else:
                            fields[name] = value
        except httpx.HTTPError:
            pass
        finally:
            self._opened.set()
            self.events.put(None)  # the stream ended

    def next(self, timeout: float = WAIT) -> Event:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stream event within {timeout} s") from None
        assert item is not None, "the stream ended"
        return item

    def next_of(self, kind: str, timeout: float = WAIT) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.01, deadline - time.monotonic()))
            if event.event == kind:
                return event

    def ended(self, timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.events.get(timeout=max(0.01, deadline - time.monotonic())) is None:
                    return True
            except queue.Empty:
                return False
        return False

    def close(self) -> None:
        self._shutdown_socket()
        self._thread.join(timeout=WAIT)
        self._client.close()

    def _shutdown_socket(self) -> None:
        """Wake the reader blocked on the stream (see the module docstring)."""
        response = self._response
        if response is None:
            return
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed by the server's side
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
