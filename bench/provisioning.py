"""Customers provisioned with a subscription per second, over real HTTP.

    .venv/bin/python bench/provisioning.py [--customers N] [--concurrency C] [--database sqlite|postgresql]

Server: Entitle in its own process (bench/ingest_load.py), on a fresh database. Seeds one metered
feature per aggregation and a plan granting them. Load: C keep-alive httpx clients in this process
send N `POST /api/v1/customers` with `subscriptionParams` (customer, subscription and its
entitlements in one transaction each).

Prints customers+subscriptions/s, p50 and p99 latency, the server's CPU time per request (all its
threads: one process runs on one core's worth of GIL, so 1000 / that figure bounds its rate whatever
the disk does), and the longest SQLite write-lock hold with the number of holds (one per COMMIT).
Timing is reported, never asserted; exits 1 only if a request failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_reads import fresh_database
from ingest_load import CONSTANT_PATH, drive, lock_holds, median, percentile, running_server, seed_catalog


def provision_all(base: str, key: str, ids: list[str], concurrency: int) -> tuple[float, list[float], list[str]]:
    def provision(api: httpx.Client, customer_id: str) -> httpx.Response:
        return api.post("/api/v1/customers", json={"id": customer_id, "subscriptionParams": {"planId": "plan"}})

    return drive(base, key, ids, concurrency, provision, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000, help="customers provisioned (default 1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="client connections (default 4)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    load_before = os.getloadavg()[0]
    with fresh_database(args.database) as (url, data_dir):
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        db.dispose()
        with running_server(url, data_dir) as base:
            with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
                seed_catalog(api)
            provision_all(base, key, [f"warm-{n}" for n in range(20)], 1)
            cpu_before = lock_holds(base, reset=True)["serverCpuSeconds"]
            elapsed, latencies, errors = provision_all(
                base, key, [f"c{n}" for n in range(args.customers)], args.concurrency
            )
            holds = lock_holds(base)
            cpu_provisioning = holds["serverCpuSeconds"] - cpu_before
            # The floor, from the same clients against the same server: a constant async answer.
            floor, floor_latencies, _ = drive(
                base, key, range(args.customers), args.concurrency, lambda api, _: api.get(CONSTANT_PATH)
            )
            cpu_floor = lock_holds(base)["serverCpuSeconds"] - holds["serverCpuSeconds"]
    ms = [v * 1000 for v in latencies]
    print(
        f"Entitle provisioning: {args.database}; {args.customers} customers with a subscription (plan of 6 metered "
        f"features) from {args.concurrency} connections; {os.cpu_count()} CPUs shared by clients and server, "
        f"load average {load_before:.2f} before the run"
    )
    floor_ms = [v * 1000 for v in floor_latencies]
    rate, floor_rate = args.customers / elapsed, args.customers / floor
    print(f"\n{'path':<44} {'per s':>8} {'p50 ms':>9} {'p99 ms':>9} {'vs constant':>12} {'server CPU ms':>14}")
    print(
        f"{'GET ' + CONSTANT_PATH:<44} {floor_rate:>8.0f} {median(floor_ms):>9.1f} "
        f"{percentile(floor_ms, 0.99):>9.1f} {'100%':>12} {cpu_floor / args.customers * 1000:>14.2f}"
    )
    print(
        f"{'POST /api/v1/customers + subscriptionParams':<44} {rate:>8.0f} "
        f"{median(ms):>9.1f} {percentile(ms, 0.99):>9.1f} {rate / floor_rate:>12.0%} "
        f"{cpu_provisioning / args.customers * 1000:>14.2f}"
    )
    if holds.get("count"):
        print(
            f"\nSQLite write lock: longest hold {holds['longestMs']:.1f} ms over {holds['count']} holds "
            f"(COMMITs: group commit shares one among the writers queued together)"
        )
    print("target: >= 300 customers+subscriptions/s on SQLite")
    for error in errors[:5]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
