"""Catalog read throughput and latency over real HTTP, beside the same stack's floor.

    .venv/bin/python bench/catalog_reads.py [--requests N] [--concurrency C] [--database sqlite|postgresql]

Starts Entitle under uvicorn (one server process, as `entitle serve` runs on SQLite) in a child
process on a free port, on a fresh database: a SQLite file in a temp folder, or a throwaway
PostgreSQL cluster (tests/support/postgres.py, needs initdb/pg_ctl). Seeds 50 features and 5
products over the API, creates a server key, then sends N catalog reads from C threads, each with
its own keep-alive httpx client:

    70%  GET /api/v1/features/{id}          one feature by id
    20%  GET /api/v1/features?limit=20      a list page, following `next` cursors
    10%  GET /api/v1/products               a list page

and, on the same server, N requests to a constant route the child mounts on its own app instance
(nothing is added to Entitle itself): a sync endpoint returning a fixed small JSON document, with
no key check and no database, behind the same middleware, exception handlers and threadpool hop as
the API routes. It is the floor of this setup (uvicorn, FastAPI, the Python HTTP client sharing the
machine's cores), not of the hardware: what a read costs beyond it is ours (key lookup, query,
serialization). `/healthz` would not do: it pings the database.

Prints requests/s, p50 and p99 latency (ms). Timing is reported, never asserted. Exits 1 only if a
request failed.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONSTANT_PATH = "/_bench/constant"
FEATURES = 50
PRODUCTS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the server (child process) -----------------------------------------------------------------


def serve(database_url: str, port: int, data_dir: str) -> None:
    """Child: Entitle's own app, plus the constant route on this instance only."""
    import uvicorn
    from fastapi.responses import JSONResponse

    from entitle.app import create_app
    from entitle.config import Settings

    settings = Settings(
        database_url=database_url,
        data_dir=Path(data_dir),
        console_base_url=f"http://127.0.0.1:{port}",
        # As `entitle serve` defaults: an embedded job worker on SQLite, none on PostgreSQL.
        embedded_worker=database_url.startswith("sqlite"),
        freeze_startup_objects=True,  # as `entitle serve` does
    )
    app = create_app(settings)
    constant = JSONResponse({"data": {"status": "constant"}})

    def constant_answer() -> JSONResponse:  # sync, like the API routes: one threadpool hop
        return constant

    app.add_api_route(CONSTANT_PATH, constant_answer, methods=["GET"], include_in_schema=False)
    # No access log: one log line per request would be measured on both sides alike, but is noise here.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def running_server(
    database_url: str, data_dir: Path, script: str = __file__, startup_seconds: float = 30
) -> Iterator[str]:
    """`script --serve URL PORT DIR` in a child process (this file's `serve` unless told otherwise)."""
    port = free_port()
    command = [sys.executable, str(Path(script).resolve()), "--serve", database_url, str(port), str(data_dir)]
    child = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"server exited with {child.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start within {startup_seconds:g}s")
            time.sleep(0.05)
        yield base
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def fresh_database(kind: str) -> Iterator[tuple[str, Path]]:
    from entitle.db.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="entitle-bench-") as tmp:
        data_dir = Path(tmp)
        if kind == "sqlite":
            url = f"sqlite:///{data_dir / 'entitle.db'}"
            upgrade(url)
            yield url, data_dir
            return
        sys.path.insert(0, str(ROOT))
        from tests.support.postgres import HOW_TO_ENABLE, start_cluster

        cluster = start_cluster()
        if cluster is None:
            raise SystemExit(HOW_TO_ENABLE)
        try:
            url = cluster.url("postgres")
            upgrade(url)
            yield url, data_dir
        finally:
            cluster.stop()


# --- load ---------------------------------------------------------------------------------------


def seed(base: str, key: str) -> list[str]:
    ids = [f"feature-{i:03d}" for i in range(FEATURES)]
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=30) as api:
        for i, ref in enumerate(ids):
            body = {
                "id": ref,
                "displayName": f"Feature {i}",
                "featureType": ("BOOLEAN", "NUMBER", "ENUM")[i % 3],
                "description": "Seeded by bench/catalog_reads.py",
                "metadata": {"team": "bench", "index": str(i)},
            }
            if i % 3 == 1:
                body.update(meterType="INCREMENTAL", featureUnits="call", featureUnitsPlural="calls")
            if i % 3 == 2:
                body["enumConfiguration"] = [{"value": v, "displayName": v.upper()} for v in ("eu", "us", "apac")]
            api.post("/api/v1/features", json=body).raise_for_status()
        for i in range(PRODUCTS):
            api.post("/api/v1/products", json={"id": f"product-{i}", "displayName": f"Product {i}"}).raise_for_status()
    return ids


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def line(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        p50 = statistics.median(ms) if ms else float("nan")
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
        rate = len(ms) / self.elapsed if self.elapsed else float("nan")
        return f"{self.name:<34} {rate:>10.0f} {p50:>9.2f} {p99:>9.2f} {len(self.errors):>7}"


Request = Callable[[httpx.Client, random.Random], httpx.Response]


def run_load(name: str, base: str, key: str, request: Request, total: int, concurrency: int) -> Result:
    result = Result(name)
    lock = threading.Lock()
    remaining = [total]
    start = threading.Barrier(concurrency + 1)

    def worker(index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=30) as client:
            for _ in range(5):  # open the connection and warm the path before the clock starts
                request(client, rng)
            start.wait()
            latencies: list[float] = []
            errors: list[str] = []
            while True:
                with lock:
                    if remaining[0] == 0:
                        break
                    remaining[0] -= 1
                began = time.perf_counter()
                try:
                    response = request(client, rng)
                    if response.status_code != 200:
                        errors.append(f"{response.request.url.path}: {response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - began)
            with lock:
                result.latencies.extend(latencies)
                result.errors.extend(errors)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    result.elapsed = time.perf_counter() - began
    return result


def catalog_reads(feature_ids: list[str]) -> Request:
    cursors: dict[int, str | None] = {}

    def request(client: httpx.Client, rng: random.Random) -> httpx.Response:
        roll = rng.random()
        if roll < 0.7:
            return client.get(f"/api/v1/features/{rng.choice(feature_ids)}")
        if roll < 0.9:
            # Walk the feature list page by page; each thread keeps its own position.
            me = threading.get_ident()
            after = cursors.get(me)
            response = client.get("/api/v1/features", params={"limit": 20, **({"after": after} if after else {})})
            if response.status_code == 200:
                cursors[me] = response.json()["pagination"]["next"]
            return response
        return client.get("/api/v1/products")

    return request


def constant_route(client: httpx.Client, rng: random.Random) -> httpx.Response:
    return client.get(CONSTANT_PATH)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per scenario (default 3000)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    with fresh_database(args.database) as (url, data_dir):
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        db.dispose()
        with running_server(url, data_dir) as base:
            feature_ids = seed(base, key)
            print(
                f"Entitle catalog reads: {args.database}, {FEATURES} features, {PRODUCTS} products; "
                f"{args.requests} requests per scenario from {args.concurrency} client thread(s), keep-alive httpx; "
                f"uvicorn, 1 server process; {os.cpu_count()} CPUs shared by client and server, "
                f"load average {os.getloadavg()[0]:.2f} before the run"
            )
            results = [
                run_load("catalog reads (mix)", base, key, catalog_reads(feature_ids), args.requests, args.concurrency),
                run_load(f"constant route {CONSTANT_PATH}", base, key, constant_route, args.requests, args.concurrency),
            ]
    print(f"\n{'scenario':<34} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for result in results:
        print(result.line())
    reads, floor = results
    if reads.elapsed and floor.elapsed:
        share = (len(reads.latencies) / reads.elapsed) / (len(floor.latencies) / floor.elapsed)
        print(f"\ncatalog reads run at {share:.0%} of the constant route's rate on this stack.")
    print(
        "mix: 70% GET /api/v1/features/{id}, 20% GET /api/v1/features?limit=20 (following cursors), "
        "10% GET /api/v1/products"
    )
    failed = [e for r in results for e in r.errors]
    for error in failed[:10]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
