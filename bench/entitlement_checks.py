"""Entitlement checks and lists over real HTTP, driven by wrk, beside a constant async route.

    .venv/bin/python bench/entitlement_checks.py [--database sqlite|postgresql] [--duration SECONDS] [--diagnose]

Needs wrk (Debian: `apt-get install wrk`); without it, says so and exits 2 (it installs nothing).

A fresh database (catalog_reads.py's harness: a SQLite file, or a throwaway PostgreSQL cluster), and
Entitle under uvicorn, one worker, in a child process, with a constant *async* route mounted on that
child's app instance only: a fixed small JSON document, no key check, no database, behind the same
middleware, first in the route table (so it pays no route matching). It is the floor of this stack on
this machine; each figure is printed beside the floor measured in the same run at the same connection
count, as a ratio.

Seeds 20 features (boolean, metered with a monthly reset, fluctuating, enum), one plan granting all of
them, and 50 customers on it with some usage. wrk's Lua script rotates over the 50 customers x 20
features and over requestedUsage 1..7, so no two consecutive requests are the same and no cache of
response bytes could answer them. Each scenario runs at 1 and at 32 connections (one wrk thread; the
machine's cores are shared by wrk and the server), after a warm-up pass over every customer:

- GET /api/v1/customers/{c}/entitlements/check?featureId=F&requestedUsage=N
- GET /api/v1/customers/{c}/entitlements (the list of 20)
- the constant async route

Also prints what a held customer costs in memory (the basis of the snapshot's size bound). Prints
requests/s, p50 and p99 (ms); timing is reported, never asserted. Exits 1 if a request failed.

--diagnose also prints, for each run, what the server saw (bench/serve_probe.py): its event loop's CPU
per request (which the machine's load does not change), the time spent inside the app, how late the
event loop woke, each garbage collection's pause (wall and CPU), the CPU of the server's other threads,
how often the kernel took the loop's CPU away, and how many answers missed the snapshot.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_reads import fresh_database, running_server
from serve_probe import PROBE_PATH, print_report

FEATURES = 20
CUSTOMERS = 50
CONSTANT_ASYNC_PATH = "/_bench/constant-async"
CONNECTIONS = (1, 32)
PROBE_ENV = "ENTITLE_BENCH_PROBE"


def serve(database_url: str, port: int, data_dir: str) -> None:
    """Child: Entitle's own app, plus the constant async route on this instance only."""
    import uvicorn
    from fastapi.responses import JSONResponse

    from entitle.app import create_app
    from entitle.config import Settings

    settings = Settings(
        database_url=database_url,
        data_dir=Path(data_dir),
        console_base_url=f"http://127.0.0.1:{port}",
        embedded_worker=database_url.startswith("sqlite"),
        freeze_startup_objects=True,  # as `entitle serve` does
    )
    app = create_app(settings)
    constant = JSONResponse({"data": {"status": "constant"}})

    async def constant_answer() -> JSONResponse:
        return constant

    app.add_api_route(CONSTANT_ASYNC_PATH, constant_answer, methods=["GET"], include_in_schema=False)
    # First in the route table: appended last, every request of it was matched against each of the
    # app's ~250 routes before its own (about 0.6 ms of CPU, twice a check's whole cost), and the
    # "floor" was no floor. Every Entitle route pays its own place in the table; this one pays none.
    app.router.routes.insert(0, app.router.routes.pop())
    if os.environ.get(PROBE_ENV):
        from serve_probe import Probe

        uvicorn.run(Probe().wrap(app), host="127.0.0.1", port=port, log_level="warning")
    else:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def seed(base: str, key: str, customers: int = CUSTOMERS) -> list[str]:
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
        return seed_with(api, customers)


def feature_catalog() -> tuple[list[str], list[dict[str, object]], list[dict[str, object]]]:
    """The bench's feature ids, their creation bodies and the plan's entitlements of them: a quarter each
    boolean, incremental with a monthly reset, fluctuating, and enum."""
    ids = [f"feature-{i:02d}" for i in range(FEATURES)]
    features: list[dict[str, object]] = []
    entitlements: list[dict[str, object]] = []
    for i, ref in enumerate(ids):
        kind = i % 4
        body: dict[str, object] = {"id": ref, "displayName": ref}
        if kind == 0:
            body["featureType"] = "BOOLEAN"
            entitlements.append({"type": "FEATURE", "id": ref})
        elif kind == 1:
            body |= {"featureType": "NUMBER", "meterType": "INCREMENTAL"}
            entitlements.append({"type": "FEATURE", "id": ref, "usageLimit": 10_000, "resetPeriod": "MONTH"})
        elif kind == 2:
            body |= {"featureType": "NUMBER", "meterType": "FLUCTUATING"}
            entitlements.append({"type": "FEATURE", "id": ref, "usageLimit": 50})
        else:
            body |= {"featureType": "ENUM", "enumConfiguration": [{"value": v, "displayName": v} for v in "abc"]}
            entitlements.append({"type": "FEATURE", "id": ref, "enumValues": ["a", "b"]})
        features.append(body)
    return ids, features, entitlements


def seed_with(api: httpx.Client, customers: int = CUSTOMERS) -> list[str]:
    """The features, the plan and its customers, through `api` (a client holding a server key)."""
    ids, features, entitlements = feature_catalog()
    for body in features:
        api.post("/api/v1/features", json=body).raise_for_status()
    api.post("/api/v1/products", json={"id": "bench", "displayName": "Bench"}).raise_for_status()
    api.post("/api/v1/plans", json={"id": "plan", "displayName": "Plan", "productId": "bench"}).raise_for_status()
    api.post("/api/v1/plans/plan/entitlements", json={"entitlements": entitlements}).raise_for_status()
    api.post("/api/v1/plans/plan/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
    for n in range(customers):
        api.post("/api/v1/customers", json={"id": f"c{n}", "subscriptionParams": {"planId": "plan"}}).raise_for_status()
    usages = [{"customerId": f"c{n}", "featureId": ids[1], "value": 3} for n in range(customers)]
    api.post("/api/v2/usage", json={"usages": usages}).raise_for_status()
    return ids


LUA = """
local customers = {customers}
local features = {{ {features} }}
local key = "{key}"
local n = 0
wrk.headers["X-API-KEY"] = key

request = function()
  n = n + 1
  local c = n % customers
  local path
  if "{kind}" == "check" then
    -- customer, feature and requested usage all rotate: 50 x 20 x 7 distinct requests
    local f = features[(math.floor(n / customers) % #features) + 1]
    path = "/api/v1/customers/c" .. c .. "/entitlements/check?featureId=" .. f .. "&requestedUsage=" .. (n % 7 + 1)
  elseif "{kind}" == "list" then
    path = "/api/v1/customers/c" .. c .. "/entitlements"
  else
    path = "{constant}"
  end
  return wrk.format("GET", path)
end

done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99), bad))
end
"""


@dataclass
class Figure:
    name: str
    connections: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(base: str, key: str, ids: list[str], kind: str, connections: int, seconds: int, tmp: Path) -> Figure:
    script = tmp / f"{kind}.lua"
    script.write_text(
        LUA.format(
            customers=CUSTOMERS,
            features=", ".join(f'"{i}"' for i in ids),
            key=key,
            kind=kind,
            constant=CONSTANT_ASYNC_PATH,
        )
    )
    return wrk(base, script, kind, connections, seconds)


def wrk(base: str, script: Path, kind: str, connections: int, seconds: int) -> Figure:
    """One wrk run (1 thread) of a Lua script whose `done` prints `RESULT requests duration_us p50_us p99_us
    errors`, as this file's and bench/credits.py's scripts do."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), base]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, duration_us, p50_us, p99_us, errors = (int(g) for g in found.groups())
    return Figure(kind, connections, requests / (duration_us / 1e6), p50_us / 1000, p99_us / 1000, errors)


def print_figures(figures: list[Figure], names: dict[str, str]) -> None:
    """The table: each figure beside the constant route's at the same connections, as a ratio."""
    floor = {f.connections: f for f in figures if f.name == "constant"}
    print(f"\n{'scenario':<26} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs constant':>12}")
    for f in figures:
        ratio = f.rate / floor[f.connections].rate if floor[f.connections].rate else float("nan")
        name = {"constant": f"constant {CONSTANT_ASYNC_PATH}", **names}[f.name]
        figure = f"{f.rate:>9.0f} {f.p50_ms:>8.2f} {f.p99_ms:>8.2f} {f.errors:>7}"
        print(f"{name:<26} {f.connections:>5} {figure} {ratio:>11.0%}")


def bytes_per_customer(url: str) -> float:
    """Memory a held customer (20 granted features, their usage) takes in the snapshot."""
    from entitle.clock import utcnow
    from entitle.db import Database
    from entitle.entitlements import service
    from entitle.entitlements.snapshot import Snapshot
    from entitle.environments.service import environment_pk

    db = Database(url)
    try:
        env = environment_pk(db, "development")
        snapshot = Snapshot()
        snapshot.caught_up()
        service._load(db, snapshot, env, "c0", None, None, utcnow())  # warm what every load shares
        snapshot = Snapshot()
        snapshot.caught_up()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for n in range(CUSTOMERS):
            service._load(db, snapshot, env, f"c{n}", None, None, utcnow())
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert len(snapshot) == CUSTOMERS
        return grown / CUSTOMERS
    finally:
        db.dispose()


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also print what the server saw in each run (bench/serve_probe.py): time in the app, event loop "
        "lateness, garbage collections, CPU of its other threads, snapshot misses",
    )
    args = parser.parse_args()
    if args.diagnose:
        os.environ[PROBE_ENV] = "1"  # read by the server child
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    figures: list[Figure] = []
    seen: list[tuple[str, int, dict[str, object]]] = []
    with fresh_database(args.database) as (url, data_dir), tempfile.TemporaryDirectory() as tmp:
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        db.dispose()
        with running_server(url, data_dir, script=__file__) as base:
            ids = seed(base, key)
            held = bytes_per_customer(url)
            print(
                f"Entitle entitlement checks: {args.database}; {FEATURES} features x {CUSTOMERS} customers; "
                f"wrk, 1 thread, {args.duration:g}s per figure; 1 uvicorn worker; "
                f"{os.cpu_count()} CPUs shared by wrk and the server; load average {os.getloadavg()[0]:.2f}"
            )
            for kind in ("check", "list"):  # warm-up: every customer read once
                run_wrk(base, key, ids, kind, 4, 1, Path(tmp))
            for connections in CONNECTIONS:
                for kind in ("constant", "check", "list"):
                    if args.diagnose:
                        httpx.get(base + PROBE_PATH)  # forget what came before
                    figures.append(run_wrk(base, key, ids, kind, connections, args.duration, Path(tmp)))
                    if args.diagnose:
                        seen.append((kind, connections, httpx.get(base + PROBE_PATH).json()))

    print_figures(figures, {"check": "check (rotating)", "list": "list 20"})
    print(f"\nmemory per held customer (20 features): {held / 1024:.1f} KiB")
    if seen:
        print("\nwhat the server saw (bench/serve_probe.py):")
        for kind, connections, found in seen:
            print_report(kind, connections, found)
    return 1 if any(f.errors for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
