"""Bounded lock holds: the longest SQLite write-lock hold, and another environment's usage-report
latency, while one environment ingests events at full speed.

    .venv/bin/python bench/lock_holds.py [--batches N] [--concurrency C] [--reports N] [--database sqlite|postgresql]
                                         [--explain]

Server: Entitle in its own process (bench/ingest_load.py), which times every write transaction from
the moment BEGIN IMMEDIATE returned (the write lock is held) to the end of its COMMIT or ROLLBACK.
Environment `development` gets one metered feature per aggregation, a plan and 20 customers;
environment `other` gets a feature reported by usage (`POST /api/v2/usage`), a plan and one customer.

1. Idle: this process sends `--reports` usage reports to `other`, one at a time.
2. Under load: C clients post N batches of 1,000 events to `development` as fast as the server takes
   them (bench/event_ingest.py's batches), while one client sends usage reports to `other`, one at a
   time, until the ingestion ends.

Prints the usage-report p50/p99 idle and under load, the ingestion rate, and the SQLite write-lock
holds (count, median, p99, longest) over the whole run, seeding included. Timing is reported, never
asserted; exits 1 only if a request failed.

`--explain` runs this file's server instead (bench/hold_anatomy.py patched into it, a little slower) and
splits each hold into its pieces: its members' CPU, their waits for a CPU the machine's other processes
held (on a shared machine, most of the longest holds), the rest of their time (the GIL, the disk), the
hand-overs and the COMMIT; it prints the longest holds with and without those waits for a CPU, and each
write transaction's queueing, work and commit under load, with how many holds it waited for.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import catalog_reads
import ingest_load
from catalog_reads import fresh_database
from ingest_load import (
    BATCH,
    CUSTOMERS,
    REPORT_STEPS,
    batch_events,
    body,
    lock_holds,
    median,
    percentile,
    post_all,
    provision,
    seed_catalog,
    writer_phases,
)


def seed_other(api: httpx.Client) -> None:
    body = {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"}
    api.post("/api/v1/features", json=body).raise_for_status()
    api.post("/api/v1/products", json={"id": "app", "displayName": "App"}).raise_for_status()
    api.post("/api/v1/plans", json={"id": "basic", "displayName": "Basic", "productId": "app"}).raise_for_status()
    entitlements = [{"type": "FEATURE", "id": "calls", "usageLimit": 10**12, "resetPeriod": "MONTH"}]
    api.post("/api/v1/plans/basic/entitlements", json={"entitlements": entitlements}).raise_for_status()
    api.post("/api/v1/plans/basic/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
    provision(api, ["reporter"], plan="basic")


def report_usage(api: httpx.Client, n: int, errors: list[str]) -> float:
    item = {"customerId": "reporter", "featureId": "calls", "value": 1, "idempotencyKey": f"u{n}"}
    began = time.perf_counter()
    response = api.post("/api/v2/usage", json={"usages": [item]})
    took = time.perf_counter() - began
    if response.status_code != 200:
        errors.append(f"{response.status_code} {response.text[:200]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batches",
        type=int,
        default=120,
        help="batches of 1,000 events under load (default 120: about 100 reports meanwhile)",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="ingesting connections (default 2)")
    parser.add_argument("--reports", type=int, default=200, help="idle usage reports (default 200)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--explain", action="store_true", help="split the longest holds into their pieces (bench/hold_anatomy.py)"
    )
    args = parser.parse_args()

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    customers = [f"c{n}" for n in range(CUSTOMERS)]
    bodies = [body(batch_events(b, customers)) for b in range(args.batches + 2)]
    load_before = os.getloadavg()[0]
    errors: list[str] = []
    with fresh_database(args.database) as (url, data_dir):
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        other_key = create_key(db, "other", KeyKind.SERVER)
        db.dispose()
        # Explained, by this file's server: the ingest_load one, patched (a little slower).
        server = __file__ if args.explain else ingest_load.__file__
        with catalog_reads.running_server(url, data_dir, script=server, startup_seconds=60) as base:
            with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
                seed_catalog(api)
                provision(api, customers)
            post_all(base, key, bodies[:2], 1)
            with httpx.Client(base_url=base, headers={"X-API-KEY": other_key}, timeout=60) as other:
                seed_other(other)
                for n in range(10):  # warm the path
                    report_usage(other, -n - 1, errors)
                writer_phases(base, reset=True)
                idle = [report_usage(other, n, errors) for n in range(args.reports)]
                idle_phases = writer_phases(base, reset=True)
                loaded: list[float] = []
                done = threading.Event()

                def reporter() -> None:
                    n = args.reports
                    while not done.is_set():
                        loaded.append(report_usage(other, n, errors))
                        n += 1

                load_began = hold_anatomy(base, begin_load=True)["clockS"] if args.explain else 0.0
                thread = threading.Thread(target=reporter, daemon=True)
                thread.start()
                elapsed, _, ingest_errors = post_all(base, key, bodies[2:], args.concurrency)
                done.set()
                thread.join()
                loaded_phases = writer_phases(base, reset=True)
            holds = lock_holds(base)
            anatomy = hold_anatomy(base) if args.explain else None
    errors += ingest_errors
    print(
        f"Entitle lock holds: {args.database}; environment `development` ingests {args.batches} batches of {BATCH} "
        f"events over {CUSTOMERS} customers from {args.concurrency} connections (6 meters); environment `other` "
        f"reports usage one request at a time; {os.cpu_count()} CPUs shared by clients and server, load average "
        f"{load_before:.2f} before the run"
    )
    print(f"\n{'usage report to `other`':<40} {'count':>7} {'p50 ms':>9} {'p99 ms':>9}")
    for name, values in (("idle", idle), ("while `development` ingests", loaded)):
        ms = [v * 1000 for v in values]
        print(f"{name:<40} {len(ms):>7} {median(ms):>9.1f} {percentile(ms, 0.99):>9.1f}")
    _print_phases(idle_phases, loaded_phases)
    print(f"\ningestion meanwhile: {args.batches * BATCH / elapsed:.0f} events/s")
    if holds.get("count"):
        print(
            f"SQLite write lock, whole run: {holds['count']} holds, median {holds['medianMs']:.1f} ms, "
            f"p99 {holds['p99Ms']:.1f} ms, longest {holds['longestMs']:.1f} ms (target <= 100 ms)"
        )
        print(
            f"  the longest: {_cpu(holds['longestCpuMs'])} of its thread's CPU, first statement "
            f"`{holds['longestFirstStatement']}`; CPU of the holding thread over the holds one thread began and ended: "
            f"p99 {holds['p99CpuMs']:.1f} ms, max {holds['maxCpuMs']:.1f} ms"
        )
    if anatomy is not None:
        _print_anatomy(anatomy, load_began)
    print("targets: longest hold <= 100 ms; usage report p99 <= 50 ms while another environment ingests")
    for error in errors[:5]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


def _print_phases(idle: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Where the reports' time went, measured in the server (bench/ingest_load.py's WriterPhases)."""
    if not loaded:
        return
    print(f"\n{'server side, ms (p50 / p99)':<40} {'idle':>15} {'while ingesting':>17}")
    rows = [("usage report, whole answer", "reportMs", None)]
    rows += [(f"  {name}", "reportSteps", name) for name in REPORT_STEPS]
    rows += [(f"short write: {name}", "short", name) for name in ("queued", "work", "commit")]
    rows += [(f"ingest batch: {name}", "bulk", name) for name in ("queued", "work", "commit")]
    for label, kind, phase in rows:
        cells = []
        for figures in (idle, loaded):
            spread = figures[kind] if phase is None else figures[kind][phase]
            cells.append(f"{spread['p50']:.1f} / {spread['p99']:.1f}" if spread["count"] else "-")
        print(f"{label:<40} {cells[0]:>15} {cells[1]:>17}")
    checkpoints = loaded.get("checkpoints")
    if checkpoints:
        print(
            f"WAL checkpoints, whole run: {checkpoints['runs']} beside the writers (longest "
            f"{checkpoints['longestMs']:.1f} ms), {checkpoints['restarts']} RESTART in the write turn "
            f"({checkpoints['restarted']} started the WAL over; longest {checkpoints['longestInsideTurnMs']:.1f} ms); "
            f"the WAL held at most {checkpoints['largestWalFrames']} frames, its file is "
            f"{checkpoints['walBytes'] / 2**20:.1f} MiB"
        )


ANATOMY_PATH = "/_bench/hold_anatomy"


def hold_anatomy(base: str, begin_load: bool = False) -> dict[str, Any]:
    response = httpx.get(f"{base}{ANATOMY_PATH}{'/load' if begin_load else ''}", timeout=30)
    response.raise_for_status()
    report: dict[str, Any] = response.json()
    return report


def _print_anatomy(anatomy: dict[str, Any], load_began: float) -> None:
    """The longest holds of the whole run, each split into its pieces (bench/hold_anatomy.py)."""
    if not anatomy.get("count"):
        return
    totals = anatomy["totalsMs"]
    whole = sum(totals.values()) or 1.0
    print(f"\nwhere the {anatomy['count']} holds' time went, all holds: ", end="")
    print(", ".join(f"{name} {ms / whole:.0%}" for name, ms in sorted(totals.items(), key=lambda kv: -kv[1])))
    for name, spread in sorted(anatomy["commitMs"].items()):
        print(
            f"  COMMIT of {name}: {spread['count']}, p50 {spread['p50']:.1f} ms, p90 {spread['p90']:.1f} ms, "
            f"p99 {spread['p99']:.1f} ms"
        )
    print(f"  {'write transactions under load, ms':<44} {'p50':>6} {'p90':>6} {'p99':>6}")
    for name, spread in anatomy["writers"].items():
        print(f"  {name:<44} {spread['p50']:>6.1f} {spread['p90']:>6.1f} {spread['p99']:>6.1f}")
    for kind, counts in anatomy["waitedBehind"].items():
        print(f"  holds a {kind} waited for: " + ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())))
    print("  the longest by wall time:")
    for hold in anatomy["longest"][:5]:
        _print_hold(hold, load_began)
    print("  the longest once their threads' waits for a CPU are taken out:")
    for hold in anatomy["longestOnCpu"][:5]:
        _print_hold(hold, load_began)


def _print_hold(hold: dict[str, Any], load_began: float) -> None:
    kind = "ingest batch" if hold["bulk"] else f"group of {hold['members']}"
    pieces = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(hold["pieces"].items(), key=lambda kv: -kv[1]))
    checkpoints = ", ".join(f"{mode} {ms:.1f}" for mode, ms in hold["checkpointMs"].items()) or "none"
    phase = "under load" if hold["atS"] >= load_began else "before the load"
    print(
        f"  {hold['wallMs']:.1f} ms, {kind} ({phase}, at {hold['atS']:.1f} s); process CPU "
        f"{hold['processCpuMs']:.1f} ms; checkpoints meanwhile: {checkpoints}; less its threads' waits for a "
        f"CPU: {hold['lessRunqueueMs']:.1f} ms\n    {pieces}"
    )
    for member in hold["memberTimeline"][:12]:
        print(
            f"    +{member['atMs']:7.1f} {member['thread'][:22]:<22} wall {member['wallMs']:6.1f} cpu "
            f"{member['cpuMs']:5.1f} runq {member['runqueueMs']:5.1f}  {member['first'][:60]}"
        )
        print(
            f"             {member['statements']} statements, {member['sqlMs']:.1f} ms in them; slowest "
            f"{member['slowestMs']:.1f} ms: {member['slowest'][:60]}"
        )


def _serve_explained() -> None:
    """bench/ingest_load.py's server, its holds explained (`--explain`)."""
    import hold_anatomy as anatomy_module
    from ingest_load import serve

    def add_route(app: Any, anatomy: anatomy_module.HoldAnatomy) -> None:
        app.add_api_route(ANATOMY_PATH, anatomy.report, methods=["GET"], include_in_schema=False)
        app.add_api_route(f"{ANATOMY_PATH}/load", anatomy.load_begins, methods=["GET"], include_in_schema=False)

    anatomy_module.install(add_route)
    serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])


def _cpu(ms: float | None) -> str:
    return "n/a (a group commit: begun and ended by two writers' threads)" if ms is None else f"{ms:.1f} ms"


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        _serve_explained()
    else:
        sys.exit(main())
