"""Shared by the ingestion benchmarks (event_ingest.py, lock_holds.py, provisioning.py): an instrumented
Entitle server in its own process, the catalog they seed, and prebuilt event batches.

The server child is Entitle's own app under uvicorn (one process, as `entitle serve` runs on SQLite,
with its embedded job worker there), plus, on this instance only, `GET /_bench/lock_holds`: every
write transaction's hold of the SQLite write lock, from the moment BEGIN IMMEDIATE returned (the lock
is ours) to the end of COMMIT or ROLLBACK (the lock is released), timed by listeners on the write
engine. Nothing is added to Entitle itself.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import catalog_reads

AGGREGATIONS = ("COUNT", "SUM", "MAX", "MIN", "AVG", "UNIQUE")
BATCH = 1000
CUSTOMERS = 20
REPEATED = 0.10  # share of each batch resending keys of the previous batch (dropped as duplicates)
LOCK_HOLDS_PATH = "/_bench/lock_holds"
WRITER_PHASES_PATH = "/_bench/writer_phases"
# The same stack's floor: an async route answering a constant, on this instance only.
CONSTANT_PATH = "/_bench/constant-async"
T = TypeVar("T")


def meter(function: str) -> dict[str, Any]:
    field = {"COUNT": None, "UNIQUE": "user"}.get(function, "tokens")
    filters = [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "completion"}]}]
    return {"aggregation": {"function": function, **({"field": field} if field else {})}, "filters": filters}


def seed_catalog(api: httpx.Client, plan: str = "plan") -> None:
    """One metered feature per aggregation, and a plan granting each with a monthly reset."""
    for function in AGGREGATIONS:
        ref = f"meter-{function.lower()}"
        body = {
            "id": ref,
            "displayName": ref,
            "featureType": "NUMBER",
            "meterType": "INCREMENTAL",
            "meter": meter(function),
        }
        api.post("/api/v1/features", json=body).raise_for_status()
    api.post("/api/v1/products", json={"id": "bench", "displayName": "Bench"}).raise_for_status()
    api.post("/api/v1/plans", json={"id": plan, "displayName": "Plan", "productId": "bench"}).raise_for_status()
    entitlements = [
        {"type": "FEATURE", "id": f"meter-{f.lower()}", "usageLimit": 10**12, "resetPeriod": "MONTH"}
        for f in AGGREGATIONS
    ]
    api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": entitlements}).raise_for_status()
    api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()


def provision(api: httpx.Client, customer_ids: list[str], plan: str = "plan") -> None:
    for customer_id in customer_ids:
        body = {"id": customer_id, "subscriptionParams": {"planId": plan}}
        api.post("/api/v1/customers", json=body).raise_for_status()


def event(customer_id: str, key: str, i: int) -> dict[str, Any]:
    return {
        "customerId": customer_id,
        "eventName": "completion" if i % 4 else "embedding",
        "idempotencyKey": key,
        "dimensions": {"tokens": i % 97, "user": f"user-{i % 300}", "model": ("small", "large")[i % 2]},
    }


def batch_events(number: int, customer_ids: list[str], tag: str = "e") -> list[dict[str, Any]]:
    """Batch `number`: 90% new keys, 10% keys of batch `number - 1` again; customers in rotation."""
    fresh = BATCH - int(BATCH * REPEATED) if number else BATCH
    items = [
        event(customer_ids[(number * BATCH + i) % len(customer_ids)], f"{tag}{number}-{i}", i) for i in range(fresh)
    ]
    for i in range(BATCH - fresh):
        items.append(event(customer_ids[((number - 1) * BATCH + i) % len(customer_ids)], f"{tag}{number - 1}-{i}", i))
    return items


def body(items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"events": items}).encode()


JSON = {"content-type": "application/json"}


def drive(
    base: str,
    key: str,
    items: Sequence[T],
    concurrency: int,
    send: Callable[[httpx.Client, T], httpx.Response],
    timeout: float = 120,
) -> tuple[float, list[float], list[str]]:
    """`send` each item from `concurrency` keep-alive clients; elapsed seconds, latencies, errors."""
    queue = list(reversed(items))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=timeout) as api:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                began = time.perf_counter()
                response = send(api, item)
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, latencies, errors


def post_all(base: str, key: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], list[str]]:
    """Post prebuilt event batches; elapsed seconds, latencies, errors."""
    return drive(
        base, key, bodies, concurrency, lambda api, content: api.post("/api/v1/events", content=content, headers=JSON)
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- the server child -------------------------------------------------------------------------------


class LockHolds:
    """Times each write transaction of a SQLite engine: BEGIN IMMEDIATE returned -> COMMIT/ROLLBACK done;
    and the CPU time its thread spent meanwhile (the rest of a hold is waiting: for the disk, for the
    GIL held by the process's other threads, for a CPU the machine's other processes hold). A group
    commit's hold begins in one writer's thread and ends in another's: it has no such CPU figure."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event as sa_event

        self.started: dict[int, tuple[float, float, list[str], int]] = {}
        self.holds: list[tuple[float, float | None, str]] = []
        self.lock = threading.Lock()
        # Registered after the engine's own `begin` listener, which sends BEGIN IMMEDIATE.
        sa_event.listen(engine, "begin", self._begin)
        sa_event.listen(engine, "before_cursor_execute", self._statement)
        dialect = engine.dialect
        for name in ("do_commit", "do_rollback"):
            setattr(dialect, name, self._ending(getattr(dialect, name)))

    def _begin(self, connection: Any) -> None:
        self.started[id(connection.connection)] = (time.perf_counter(), time.thread_time(), [], threading.get_ident())

    def _statement(self, connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        began = self.started.get(id(connection.connection))
        if began is not None and not began[2]:
            # Only its head: an ingestion batch's first statement is its ~29 KB multi-row INSERT, whose
            # whole text split and joined cost this server ~0.25 ms of CPU per batch.
            began[2].append(" ".join(statement[:200].split())[:90])

    def _ending(self, original: Any) -> Any:
        def end(dbapi_connection: Any) -> None:
            try:
                original(dbapi_connection)
            finally:
                began = self.started.pop(id(dbapi_connection), None)
                if began is not None:
                    wall = time.perf_counter() - began[0]
                    cpu = time.thread_time() - began[1] if began[3] == threading.get_ident() else None
                    with self.lock:
                        self.holds.append((wall, cpu, began[2][0] if began[2] else ""))

        return end

    def report(self, reset: bool = False) -> dict[str, Any]:
        with self.lock:
            holds, self.holds = self.holds, ([] if reset else self.holds)
        ms = [h[0] * 1000 for h in holds]
        cpu = [h[1] * 1000 for h in holds if h[1] is not None]
        longest = max(holds, default=(0.0, 0.0, ""), key=lambda h: h[0])
        return {
            "count": len(ms),
            "longestMs": longest[0] * 1000,
            "longestCpuMs": longest[1] * 1000 if longest[1] is not None else None,
            "longestFirstStatement": longest[2],
            "p99Ms": percentile(ms, 0.99) if ms else 0.0,
            "medianMs": median(ms) if ms else 0.0,
            "maxCpuMs": max(cpu, default=0.0),
            "p99CpuMs": percentile(cpu, 0.99) if cpu else 0.0,
        }


_REPORT_MARKS: ContextVar[list[float] | None] = ContextVar("report_marks", default=None)
REPORT_STEPS = ("before its transaction", "queued for the lock", "its work", "its group's COMMIT", "answering")


class WriterPhases:
    """Where a SQLite write transaction's time goes, short writers (`Database.transaction`) apart from
    ingestion batches (`bulk_transaction`): queued (from asking for the turn until the writer may run:
    behind the lock's holder and the writers ahead of it, BEGIN IMMEDIATE included), work (its own
    statements), commit (until its group's COMMIT returned, its own or the group's last member's, and
    what the transaction announces after it). And, per usage report (`POST /api/v2/usage`), the same
    steps of its own transaction, between its arrival (before it: reading the request, authenticating,
    the thread pool) and its last byte sent (after it: the answer)."""

    def __init__(self, group_commit: Any) -> None:
        self.lock = threading.Lock()
        self.phases: dict[str, list[tuple[float, float, float]]] = {"short": [], "bulk": []}
        self.reports: list[list[float]] = []
        original = group_commit.transaction

        @contextmanager
        def timed(nested: Any, **options: bool) -> Iterator[Any]:
            if getattr(group_commit._inside, "active", False):  # a nested transaction: part of its outer one
                with original(nested, **options) as session:
                    yield session
                return
            bulk = any(options.values())  # `bulk=True` (`ends_group=True` in earlier versions)
            asked = time.perf_counter()
            with original(nested, **options) as session:
                began = time.perf_counter()
                yield session
                ended = time.perf_counter()
            durable = time.perf_counter()
            marks = _REPORT_MARKS.get()  # the route's thread runs in a copy of the request's context
            if marks is not None and len(marks) == 1:
                marks += [asked, began, ended, durable]
            with self.lock:
                self.phases["bulk" if bulk else "short"].append((began - asked, ended - began, durable - ended))

        group_commit.transaction = timed

    def timing_reports(self, app: Any) -> Any:
        async def timed_app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/api/v2/usage":
                await app(scope, receive, send)
                return
            marks = [time.perf_counter()]
            token = _REPORT_MARKS.set(marks)
            try:
                await app(scope, receive, send)
            finally:
                _REPORT_MARKS.reset(token)
            marks.append(time.perf_counter())
            with self.lock:
                self.reports.append(marks)

        return timed_app

    def report(self, reset: bool = False) -> dict[str, Any]:
        with self.lock:
            phases, reports = self.phases, self.reports
            if reset:
                self.phases, self.reports = {"short": [], "bulk": []}, []
        out: dict[str, Any] = {"reportMs": _spread([(r[-1] - r[0]) * 1000 for r in reports])}
        steps = [[(b - a) * 1000 for a, b in pairwise(r)] for r in reports if len(r) == 6]
        out["reportSteps"] = {name: _spread([row[i] for row in steps]) for i, name in enumerate(REPORT_STEPS)}
        for kind, rows in phases.items():
            out[kind] = {
                name: _spread([row[i] * 1000 for row in rows]) for i, name in enumerate(("queued", "work", "commit"))
            }
        return out


def _spread(ms: list[float]) -> dict[str, float]:
    return {"count": len(ms), "p50": median(ms) if ms else 0.0, "p99": percentile(ms, 0.99) if ms else 0.0}


def _threads_cpu() -> dict[str, float]:
    """CPU seconds so far of each live thread of this process, summed by name (the thread pool's
    workers under one); a thread ended meanwhile is missing, so figures are compared per name."""
    spent: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):  # ended meanwhile
            continue
        name = "AnyIO worker thread" if thread.name.startswith("AnyIO worker") else thread.name
        spent[name] = spent.get(name, 0.0) + seconds
    return spent


def _count_reads() -> dict[str, int]:
    """Counts uvicorn's httptools protocol's `data_received` calls and bytes, and its reading paused
    (the body past its high-water mark) and resumed: how a body arrives over a real socket."""
    from uvicorn.protocols.http import flow_control
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    counts = {"calls": 0, "bytes": 0, "paused": 0, "resumed": 0}
    received = HttpToolsProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        counts["calls"] += 1
        counts["bytes"] += len(data)
        received(self, data)

    HttpToolsProtocol.data_received = data_received  # type: ignore[method-assign]
    pause, resume = flow_control.FlowControl.pause_reading, flow_control.FlowControl.resume_reading

    def paused(self: Any) -> None:
        counts["paused"] += not self.read_paused
        pause(self)

    def resumed(self: Any) -> None:
        counts["resumed"] += self.read_paused
        resume(self)

    flow_control.FlowControl.pause_reading = paused  # type: ignore[method-assign]
    flow_control.FlowControl.resume_reading = resumed  # type: ignore[method-assign]
    return counts


def _timed_steps() -> dict[str, float]:
    """The thread CPU of a few steps of an ingestion batch, as `event_ingest.py --breakdown` times them
    in-process: the same steps over a real socket, beside the same figures without one."""
    from sqlalchemy.engine.default import DefaultDialect

    import entitle.events.store as event_store
    import entitle.usage.reactions as reactions
    from entitle.events import routes, service

    spent: dict[str, float] = {}

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        spent[label] = 0.0

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.thread_time() - began

        setattr(owner, name, timed)

    wrap(routes.EventsBody, "validate", "validate")
    wrap(service, "report_items", "report_items")
    wrap(service, "_store", "transaction")
    wrap(event_store, "insert_new", "insert")
    wrap(reactions, "apply_events", "counting")
    wrap(DefaultDialect, "do_commit", "COMMIT")
    return spent


def serve(database_url: str, port: int, data_dir: str) -> None:
    import uvicorn

    from entitle.app import create_app
    from entitle.config import Settings

    sqlite = database_url.startswith("sqlite")
    settings = Settings(
        database_url=database_url,
        data_dir=Path(data_dir),
        console_base_url=f"http://127.0.0.1:{port}",
        embedded_worker=sqlite,  # as `entitle serve` defaults
        freeze_startup_objects=True,  # as `entitle serve` does
    )
    app = create_app(settings)
    holds = LockHolds(app.state.db.write_engine) if sqlite else None
    phases = WriterPhases(app.state.db.group_commit) if sqlite else None

    reads = _count_reads()
    steps = _timed_steps() if sqlite else {}

    def lock_holds(reset: bool = False) -> dict[str, Any]:
        report = holds.report(reset) if holds is not None else {"count": 0}
        # The server's CPU seconds so far (all its threads): a figure per request is then independent
        # of how much of the machine the clients and other processes take. Beside it, where they went:
        # each thread's own CPU clock (by name), the kernel's share, and the socket reads so far.
        times = os.times()
        return {
            **report,
            "serverCpuSeconds": time.process_time(),
            "serverUserSystem": [times.user, times.system],
            "serverThreadCpu": _threads_cpu(),
            "serverReads": dict(reads),
            "serverSteps": dict(steps),
        }

    from fastapi.responses import JSONResponse

    constant = JSONResponse({"data": {"status": "constant"}})

    async def constant_answer() -> JSONResponse:
        return constant

    def writer_phases(reset: bool = False) -> dict[str, Any]:
        if phases is None:
            return {}
        report = phases.report(reset)
        checkpointer = getattr(app.state.db, "checkpointer", None)  # earlier versions had none
        if checkpointer is not None:
            stats = checkpointer.stats
            wal = Path(app.state.db.write_engine.url.database + "-wal")
            report["checkpoints"] = {
                "runs": stats.runs,
                "restarts": stats.restarts,
                "restarted": stats.restarted,
                "largestWalFrames": stats.largest_wal_frames,
                "longestMs": stats.longest_seconds * 1000,
                "longestInsideTurnMs": stats.longest_inside_turn_seconds * 1000,
                "walBytes": wal.stat().st_size if wal.exists() else 0,
            }
        return report

    app.add_api_route(LOCK_HOLDS_PATH, lock_holds, methods=["GET"], include_in_schema=False)
    app.add_api_route(WRITER_PHASES_PATH, writer_phases, methods=["GET"], include_in_schema=False)
    app.add_api_route(CONSTANT_PATH, constant_answer, methods=["GET"], include_in_schema=False)
    served = phases.timing_reports(app) if phases is not None else app
    uvicorn.run(served, host="127.0.0.1", port=port, log_level="warning")


def running_server(database_url: str, data_dir: Path) -> AbstractContextManager[str]:
    """This file's `serve` (the app with its lock-hold hook) in a child process."""
    return catalog_reads.running_server(database_url, data_dir, script=__file__, startup_seconds=60)


def writer_phases(base: str, reset: bool = False) -> dict[str, Any]:
    response = httpx.get(f"{base}{WRITER_PHASES_PATH}", params={"reset": str(reset).lower()}, timeout=30)
    response.raise_for_status()
    report: dict[str, Any] = response.json()
    return report


def lock_holds(base: str, reset: bool = False) -> dict[str, Any]:
    response = httpx.get(f"{base}{LOCK_HOLDS_PATH}", params={"reset": str(reset).lower()}, timeout=30)
    response.raise_for_status()
    report: dict[str, Any] = response.json()
    return report


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
