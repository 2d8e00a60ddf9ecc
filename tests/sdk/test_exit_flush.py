"""Events queued by an application that exits WITHOUT `close()` still reach the server, each exactly
once: the SDK's exit hook sends them (sync `Entitle` and `AsyncEntitle`).

Each scenario runs in a real subprocess (a fresh interpreter that really exits), talking to the live
test server through a counting proxy in this process: the proxy counts every event (by idempotency
key) in every `POST /api/v1/events` it forwards, so a resent event would show, even though the
server would deduplicate it. The server's stored events are counted too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from entitle.events.models import Event
from tests.conftest import LiveServer
from tests.support.postgres import free_port

N = 1500  # more than one request's worth at the batch size below


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        self.events: Counter[str] = Counter()
        self.event_requests = 0
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=upstream, timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                response = proxy._upstream.request(method, self.path, content=body, headers=headers)
                if method == "POST" and self.path.startswith("/api/v1/events") and response.status_code == 200:
                    keys = [e["idempotencyKey"] for e in json.loads(body)["events"]]
                    with proxy._lock:
                        proxy.event_requests += 1
                        proxy.events.update(keys)
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._upstream.close()


@pytest.fixture
def proxy(seeded: LiveServer) -> Iterator[CountingProxy]:
    counting = CountingProxy(seeded.base_url)
    yield counting
    counting.stop()


SYNC = """
from entitle.sdk import Entitle

def queue():
    # The client is local to this function: nothing but the SDK itself holds it when the program ends.
    client = Entitle(KEY, URL, push=False, event_batch_size=1000, event_flush_interval=3600)
    for i in range(N):
        client.report_event("c1", "api_call", idempotency_key=f"{PREFIX}-{i}")
    print("pending", client.pending_events, flush=True)

queue()
import gc
gc.collect()
"""

ASYNC = """
import asyncio
from entitle.sdk import AsyncEntitle

async def main():
    client = AsyncEntitle(KEY, URL, push=False, event_batch_size=1000, event_flush_interval=3600)
    for i in range(N):
        await client.report_event("c1", "api_call", idempotency_key=f"{PREFIX}-{i}")
    print("pending", client.pending_events, flush=True)
    # main returns: asyncio.run cancels the client's batch task and closes the loop; no close().

asyncio.run(main())
import gc
gc.collect()  # the client is garbage by now: the exit hook must not depend on it
"""


def run_app(script: str, key: str, url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    head = f"KEY = {key!r}\nURL = {url!r}\nN = {N}\nPREFIX = {prefix!r}\n"
    result = subprocess.run(
        [sys.executable, "-c", head + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def stored(server: LiveServer, prefix: str) -> tuple[int, int]:
    with server.db.read() as s:
        mine = Event.idempotency_key.like(f"{prefix}-%")
        rows = int(s.scalar(select(func.count()).select_from(Event).where(mine)) or 0)
        keys = int(s.scalar(select(func.count(func.distinct(Event.idempotency_key))).where(mine)) or 0)
        return rows, keys


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_events_queued_at_exit_reach_the_server_exactly_once(
    seeded: LiveServer, proxy: CountingProxy, kind: str
) -> None:
    result = run_app(SYNC if kind == "sync" else ASYNC, seeded.key(), proxy.url, kind)
    # The size threshold (1000) sent one batch while queueing; the rest waited for the exit hook.
    pending = int(result.stdout.split()[-1])
    assert 0 < pending <= N
    assert proxy.events == Counter({f"{kind}-{i}": 1 for i in range(N)})  # each sent once, none lost
    assert stored(seeded, kind) == (N, N)
    response = httpx.get(
        f"{seeded.base_url}/api/v1/customers/c1/entitlements",
        headers={"X-API-KEY": seeded.server_key},
        timeout=30,
    )
    usage = {e["feature"]["id"]: e.get("currentUsage") for e in response.json()["data"]["entitlements"]}
    assert usage["api-events"] == N  # the meter counted each event once
