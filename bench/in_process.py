"""Serving requests in the bench's own process, without a socket: what check_cpu.py, provisioning_cpu.py
and event_ingest.py --breakdown share.

wrk and the kernel's scheduling move every wall-clock figure on a shared machine; CPU spent in the
serving process moves far less. `feed` hands uvicorn's own httptools protocol each request's bytes over
an in-memory transport (its parsing, the task it starts per request and its response writing count),
one request after the other on one connection, and returns the CPU seconds per request by the clock
it is given. `served_app` builds the app as `entitle serve` does, on a fresh database, with the
constant-answer async route first in the route table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from catalog_reads import fresh_database


class Transport(asyncio.Transport):
    """What uvicorn writes to: keeps each response's status and wakes the driver at its first bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[bytes] = []
        self.written: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data[:9]) == b"HTTP/1.1 ":
            self.statuses.append(bytes(data[9:12]))
            if self.written is not None and not self.written.done():
                self.written.set_result(None)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connected(app: Any) -> tuple[Any, Transport]:
    """uvicorn's httptools protocol serving `app` on the running loop, connected to a `Transport`."""
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    config = Config(app, log_level="warning", http="httptools", lifespan="off")
    config.load()
    protocol = HttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def feed(
    app: Any, requests: list[bytes], *, clock: Callable[[], float] = time.thread_time, settle: int = 1
) -> float:
    """CPU seconds per request by `clock`: `time.thread_time` counts the event loop alone,
    `time.process_time` every thread (a sync route's worker too). `settle` loop turns after each
    response's first bytes let its body and the request cycle end before the next request."""
    loop = asyncio.get_running_loop()
    protocol, transport = connected(app)
    started = clock()
    for data in requests:
        transport.written = loop.create_future()
        protocol.data_received(data)
        await transport.written
        for _ in range(settle):
            await asyncio.sleep(0)
    spent = clock() - started
    if set(transport.statuses) != {b"200"}:
        raise RuntimeError(f"answers other than 200: {sorted(set(transport.statuses))}")
    return spent / len(requests)


@dataclass
class Served:
    app: Any
    db: Any
    key: str
    url: str
    data_dir: Any


@contextmanager
def served_app(database: str, constant_path: str | None, *, embedded_worker: bool | None = None) -> Iterator[Served]:
    """The app `entitle serve` runs (startup objects frozen; the embedded worker on SQLite unless told),
    on a fresh database with a server key, and a constant-answer async route at `constant_path`,
    first in the route table (the floor every figure is set beside; None: none, the route table as
    served)."""
    from fastapi.responses import JSONResponse

    from entitle.app import create_app
    from entitle.config import Settings
    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    with fresh_database(database) as (url, data_dir):
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        settings = Settings(
            database_url=url,
            data_dir=data_dir,
            console_base_url="http://127.0.0.1:8000",
            embedded_worker=url.startswith("sqlite") if embedded_worker is None else embedded_worker,
            freeze_startup_objects=True,
        )
        app = create_app(settings, db=db)
        if constant_path is not None:
            constant = JSONResponse({"data": {"status": "constant"}})

            async def constant_answer() -> JSONResponse:
                return constant

            app.add_api_route(constant_path, constant_answer, methods=["GET"], include_in_schema=False)
            app.router.routes.insert(0, app.router.routes.pop())
        try:
            yield Served(app, db, key, url, data_dir)
        finally:
            db.dispose()
