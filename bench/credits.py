"""Credit consumptions and currency checks over real HTTP, driven by wrk, beside a constant async route.

    .venv/bin/python bench/credits.py [--database sqlite|postgresql] [--duration SECONDS] [--diagnose]
    .venv/bin/python bench/credits.py --cpu [--requests N] [--rounds R]

Needs wrk (Debian: `apt-get install wrk`); without it, says so and exits 2 (it installs nothing).

The harness of entitlement_checks.py (a fresh database, Entitle under uvicorn, one worker, in a child
process with the constant async route mounted on that instance only). Seeds one custom currency and 50
customers, each with three grants of different priorities and expiries (so a consumption sorts and draws
on several). wrk's Lua script rotates over the customers:

- POST /api/v1/credits/consumption (amount 1, a new idempotency key each time: every request writes)
- GET /api/v1/customers/{c}/entitlements/check?currencyId=credits&requestedUsage=N (the CREDIT result; from
  the snapshot)
- GET /api/v1/customers/{c}/entitlements/check?featureId=calls&requestedUsage=N: a feature priced at one
  credit a unit on the customer's plan (the FEATURE result, decided on the balance; from the snapshot)
- the constant async route

Each at 1 and 16 connections, one wrk thread. Prints requests/s, p50 and p99 (ms) and the ratio to the
constant route measured in the same run; timing is reported, never asserted. Exits 1 if a request failed.

A consumption drops its customer's held credits (the snapshot reads the wallet again at the next check),
so the two checks are measured apart from it, each from the same start: one consumption of each customer
(which also waits out the consumptions wrk left in flight), then the COLD pass, the first check of each
customer, `connections` at a time (each read from the database in a worker thread; its own table, timed
by the client), then the STEADY run under wrk, every customer held. Measured straight after the
consumption run, as this script once did for the currency check only, a check's p99 at 16 connections
was the cold start's (the reloads, and the writes still committing and dropping wallets), not its own.
`--diagnose` adds what the server saw in each wrk run, snapshot reloads included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_reads import fresh_database, running_server
from entitlement_checks import CONSTANT_ASYNC_PATH, PROBE_ENV, Figure, print_figures, serve, wrk
from serve_probe import PROBE_PATH, print_report

CUSTOMERS = 50
CONNECTIONS = (1, 16)


def seed(base: str, key: str) -> None:
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
        seed_with(api)


def seed_with(api: httpx.Client) -> None:
    """The currency, the customers with their grants, and the plan pricing `calls` in credits."""
    api.post("/api/v1/credits/custom-currencies", json={"id": "credits", "displayName": "Credits"}).raise_for_status()
    for n in range(CUSTOMERS):
        api.post("/api/v1/customers", json={"id": f"c{n}"}).raise_for_status()
        for priority, expire in ((10, "2099-01-01T00:00:00Z"), (50, None), (50, "2098-01-01T00:00:00Z")):
            grant = {
                "customerId": f"c{n}",
                "currencyId": "credits",
                "amount": 10_000_000,
                "displayName": "g",
                "grantType": "PAID",
                "priority": priority,
            }
            if expire is not None:
                grant["expireAt"] = expire
            api.post("/api/v1/credits/grants", json=grant).raise_for_status()
    feature = {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"}
    api.post("/api/v1/features", json=feature).raise_for_status()
    api.post("/api/v1/products", json={"id": "app", "displayName": "App"}).raise_for_status()
    api.post("/api/v1/plans", json={"id": "ai", "displayName": "AI", "productId": "app"}).raise_for_status()
    entitlement = {"type": "FEATURE", "id": "calls", "hasUnlimitedUsage": True}
    api.post("/api/v1/plans/ai/entitlements", json={"entitlements": [entitlement]}).raise_for_status()
    rate = {"billingPeriod": "MONTHLY", "creditRate": {"amount": 1, "currencyId": "credits"}}
    priced = {"billingModel": "CREDIT_BASED", "featureId": "calls", "pricePeriods": [rate]}
    fee = {"billingPeriod": "MONTHLY", "price": {"amount": 10, "currency": "usd"}}
    flat = {"billingModel": "FLAT_FEE", "pricePeriods": [fee]}
    api.patch(
        "/api/v1/plans/ai", json={"charges": {"pricingType": "PAID", "pricingModels": [flat, priced]}}
    ).raise_for_status()
    api.post("/api/v1/plans/ai/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
    for n in range(CUSTOMERS):
        api.post("/api/v1/subscriptions", json={"customerId": f"c{n}", "planId": "ai"}).raise_for_status()


LUA = """
local customers = {customers}
local n = 0
wrk.headers["X-API-KEY"] = "{key}"
wrk.headers["Content-Type"] = "application/json"

request = function()
  n = n + 1
  local c = n % customers
  if "{kind}" == "consume" then
    local body = '{{"customerId":"c' .. c .. '","currencyId":"credits","amount":1,'
      .. '"idempotencyKey":"{run}-' .. n .. '"}}'
    return wrk.format("POST", "/api/v1/credits/consumption", nil, body)
  elseif "{kind}" == "check" then
    local query = "?currencyId=credits&requestedUsage=" .. (n % 7 + 1)
    return wrk.format("GET", "/api/v1/customers/c" .. c .. "/entitlements/check" .. query)
  elseif "{kind}" == "feature" then
    local query = "?featureId=calls&requestedUsage=" .. (n % 7 + 1)
    return wrk.format("GET", "/api/v1/customers/c" .. c .. "/entitlements/check" .. query)
  end
  return wrk.format("GET", "{constant}")
end

done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99), bad))
end
"""


def run_wrk(base: str, key: str, kind: str, connections: int, seconds: int, tmp: Path, run: str) -> Figure:
    script = tmp / f"{kind}-{run}.lua"
    script.write_text(LUA.format(customers=CUSTOMERS, key=key, kind=kind, constant=CONSTANT_ASYNC_PATH, run=run))
    return wrk(base, script, kind, connections, seconds)


QUERIES = {"check": "currencyId=credits", "feature": "featureId=calls"}


@dataclass(frozen=True)
class ColdPass:
    """The first check of each customer after a consumption of each dropped every held wallet."""

    name: str
    connections: int
    latencies_ms: list[float]
    wall_ms: float
    errors: int


def drop_every_wallet(api: httpx.Client, run: str) -> None:
    """One consumption of each customer, one after the other: each drops its customer's held credits at
    commit, and each waits for the consumptions of its customer that wrk left in flight (the wallet's lock;
    on SQLite the process's writers are served in arrival order), so none of those drops lands later."""
    for n in range(CUSTOMERS):
        body = {"customerId": f"c{n}", "currencyId": "credits", "amount": 1, "idempotencyKey": f"{run}-drop-{n}"}
        api.post("/api/v1/credits/consumption", json=body).raise_for_status()


def cold_pass(api: httpx.Client, kind: str, connections: int) -> ColdPass:
    """One check of each customer, `connections` at a time, each timed by the client."""

    def timed(n: int) -> tuple[float, bool]:
        began = time.perf_counter()
        answer = api.get(f"/api/v1/customers/c{n}/entitlements/check?{QUERIES[kind]}&requestedUsage={n % 7 + 1}")
        return (time.perf_counter() - began) * 1000, answer.status_code == 200

    began = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        done = list(pool.map(timed, range(CUSTOMERS)))
    wall = (time.perf_counter() - began) * 1000
    return ColdPass(kind, connections, [ms for ms, _ in done], wall, sum(1 for _, ok in done if not ok))


def print_cold(passes: list[ColdPass]) -> None:
    print(
        f"\ncold start: after one consumption of each of the {CUSTOMERS} customers (every held wallet dropped),"
        " the first check of each (read from the database in a worker thread, then held); client-side times"
    )
    print(f"{'scenario':<26} {'conns':>5} {'checks':>7} {'p50 ms':>8} {'max ms':>8} {'all ms':>8} {'errors':>7}")
    names = {"check": "currency check", "feature": "credit-priced feature check"}
    for c in passes:
        ordered = sorted(c.latencies_ms)
        print(
            f"{names[c.name]:<26} {c.connections:>5} {len(ordered):>7} {ordered[len(ordered) // 2]:>8.2f}"
            f" {ordered[-1]:>8.2f} {c.wall_ms:>8.1f} {c.errors:>7}"
        )


def cpu(requests: int, rounds: int) -> int:
    """In one process, without wrk or sockets (bench/check_cpu.py's way): the event loop's CPU per warm
    request, beside the constant route, and what a cold check costs: the process's CPU (the worker
    thread's reading included) and its statements, one customer at a time after its credits were dropped."""
    import statistics

    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from check_cpu import through_asgi
    from in_process import served_app

    def path(kind: str, n: int) -> tuple[str, str]:
        if kind == "constant":
            return CONSTANT_ASYNC_PATH, ""
        return f"/api/v1/customers/c{n % CUSTOMERS}/entitlements/check", f"{QUERIES[kind]}&requestedUsage={n % 7 + 1}"

    kinds = ("constant", "check", "feature")
    with served_app("sqlite", CONSTANT_ASYNC_PATH) as served:
        app, key = served.app, served.key
        with TestClient(app, headers={"X-API-KEY": key}, backend_options={"use_uvloop": True}) as client:
            seed_with(client)
            paths = {kind: [path(kind, n) for n in range(requests)] for kind in kinds}
            for kind in kinds:  # warm-up: every customer held
                client.portal.call(through_asgi, app, paths[kind][: 2 * CUSTOMERS], key)
            warm: dict[str, list[float]] = {kind: [] for kind in kinds}
            for _ in range(rounds):
                for kind in kinds:
                    warm[kind].append(client.portal.call(through_asgi, app, paths[kind], key) * 1e6)
            snapshot = app.state.entitlement_snapshot
            env_id = next(iter(snapshot._customers))[0]
            sent = [0]

            def count(*_: object) -> None:
                sent[0] += 1

            event.listen(served.db.read_engine, "before_cursor_execute", count)
            cold: dict[str, tuple[list[float], list[int]]] = {}
            for kind in ("check", "feature"):
                spent, statements = [], []
                for n in range(CUSTOMERS):
                    snapshot.drop_credits(env_id, f"c{n}")  # as a consumption's commit does
                    sent[0], began = 0, time.process_time()
                    client.portal.call(through_asgi, app, [path(kind, n)], key)
                    spent.append((time.process_time() - began) * 1e6)
                    statements.append(sent[0])
                cold[kind] = (spent, statements)
    names = {
        "constant": f"constant {CONSTANT_ASYNC_PATH}",
        "check": "currency check",
        "feature": "credit-priced feature",
    }
    print(
        f"Entitle credits, CPU in process: sqlite; {CUSTOMERS} customers; {rounds} rounds of {requests} warm requests"
        f" each; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"\nwarm (event loop CPU per request)  {'min us':>8} {'median us':>10} {'vs constant':>12}")
    floor = min(warm["constant"])
    for kind in kinds:
        print(
            f"{names[kind]:<34} {min(warm[kind]):>8.1f} {statistics.median(warm[kind]):>10.1f}"
            f" {floor / min(warm[kind]):>11.0%}"
        )
    print(f"\ncold (credits dropped; process CPU)  {'median us':>10} {'min us':>8} {'statements':>11}")
    for kind, (spent, statements) in cold.items():
        figure = f"{statistics.median(spent):>10.0f} {min(spent):>8.0f} {statistics.median(statements):>11.0f}"
        print(f"{names[kind]:<36} {figure}")
    return 0


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
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="instead, CPU per check in one process (no wrk): warm, beside the constant route, and cold",
    )
    parser.add_argument("--requests", type=int, default=2000, help="with --cpu: warm requests per round (2000)")
    parser.add_argument("--rounds", type=int, default=7, help="with --cpu: rounds, alternating the routes (7)")
    args = parser.parse_args()
    if args.cpu:
        return cpu(args.requests, args.rounds)
    if args.diagnose:
        os.environ[PROBE_ENV] = "1"  # read by the server child
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    figures: list[Figure] = []
    passes: list[ColdPass] = []
    seen: list[tuple[str, int, dict[str, object]]] = []
    with fresh_database(args.database) as (url, data_dir), tempfile.TemporaryDirectory() as tmp:
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        db.dispose()
        with running_server(url, data_dir, script=__file__, startup_seconds=180) as base:
            seed(base, key)
            print(
                f"Entitle credits: {args.database}; {CUSTOMERS} customers x 3 grants; wrk, 1 thread, "
                f"{args.duration:g}s per figure; 1 uvicorn worker; {os.cpu_count()} CPUs shared by wrk and the "
                f"server; load average {os.getloadavg()[0]:.2f}"
            )
            for kind in ("consume", "check", "feature"):  # warm-up
                run_wrk(base, key, kind, 4, 1, Path(tmp), f"warm-{kind}")

            def measure(kind: str, connections: int) -> None:
                run = f"{kind}-{connections}"
                if args.diagnose:
                    httpx.get(base + PROBE_PATH)  # forget what came before
                figures.append(run_wrk(base, key, kind, connections, args.duration, Path(tmp), run))
                if args.diagnose:
                    seen.append((kind, connections, httpx.get(base + PROBE_PATH).json()))

            limits = httpx.Limits(max_connections=max(CONNECTIONS))
            with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60, limits=limits) as api:
                for connections in CONNECTIONS:
                    measure("constant", connections)
                    measure("consume", connections)
                    # Each check is measured in its steady state, from the same start: its cold pass (every
                    # wallet dropped just before) has read every customer again. Run right after the
                    # consumptions instead, it would also pay for them: every wallet dropped, and the
                    # writes wrk left in flight still committing (and dropping) for a while.
                    for kind in ("check", "feature"):
                        drop_every_wallet(api, f"{kind}-{connections}")
                        passes.append(cold_pass(api, kind, connections))
                        measure(kind, connections)
            print(f"load average after: {os.getloadavg()[0]:.2f}")

    print_figures(
        figures,
        {
            "consume": "consumption",
            "check": "currency check (steady)",
            "feature": "credit-priced feature check (steady)",
        },
    )
    print_cold(passes)
    if seen:
        print("\nwhat the server saw (bench/serve_probe.py):")
        for kind, connections, found in seen:
            print_report(kind, connections, found)
    return 1 if any(f.errors for f in figures) or any(c.errors for c in passes) else 0


if __name__ == "__main__":
    sys.exit(main())
