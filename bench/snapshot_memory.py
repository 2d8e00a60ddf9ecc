"""What 10,000 customers held in one process's entitlement snapshot cost the garbage collector.

    .venv/bin/python bench/snapshot_memory.py [--customers N] [--reloads R] [--database sqlite|postgresql]

bench/entitlement_checks.py and check_cpu.py hold 50 customers: their full (generation 2) collections
scan the app's own objects and hardly any of the snapshot's. A server holds up to
`snapshot.DEFAULT_CUSTOMERS` (10,000), and every object the collector tracks in them is traversed by each
full collection, which lands on whichever request allocated last. This bench, in one process (the app
`entitle serve` builds, `in_process.served_app`, startup objects frozen):

1. seeds 20 features (check_cpu.py's four kinds), a plan granting all of them, an add-on incrementing two
   of them, and N customers on the plan: one in ten also buys the add-on (1 to 3 of it), one in ten has a
   subscription-level override, so not every customer resolves alike; every customer has some usage;
2. loads each into the app's snapshot (the loader the check route calls when memory lacks a customer)
   and prints the objects the collector tracks per held customer (`len(gc.get_objects())`, after a
   collection has untracked what it can), the bytes per held customer (tracemalloc, over the first
   1,000 loads: it makes each several times slower), and the time of
   one full `gc.collect()` with them held, beside the same with the snapshot emptied right after (what
   the rest of the process holds: the seeding's usage reports leave usage's kept resolution of every
   customer), measured once the checks below have run;
3. sends checks through uvicorn's own protocol in this process (`in_process.py`'s transport), rotating
   over customers and features, half of them of a customer just dropped (as an `EntitlementsChanged`
   drops it), so it is read again: the check's p50/p99/max latency (wall) and each full collection seen
   meanwhile (`gc.callbacks`), with its duration;
4. last, the objects the collector tracks per owner (customer, resource) that usage keeps for the
   environment's next reports and ingestion batches (`usage.kept`: the seeding's reports leave every
   customer's), by forgetting them, and a full collection's CPU then.

Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from entitlement_checks import CONSTANT_ASYNC_PATH, FEATURES, feature_catalog
from in_process import connected, served_app

ADDON_FEATURES = (1, 2)  # metered with a monthly reset, fluctuating
OVERRIDDEN_FEATURE = 5  # metered with a monthly reset
MEASURED_BYTES = 1_000


def seed(api: Any, customers: int) -> list[str]:
    """The catalog and `customers` customers (c0, c1, ...) with their subscriptions and some usage."""
    ids, features, entitlements = feature_catalog()
    for body in features:
        _ok(api.post("/api/v1/features", json=body))
    _ok(api.post("/api/v1/products", json={"id": "bench", "displayName": "Bench"}))
    _ok(api.post("/api/v1/addons", json={"id": "boost", "displayName": "Boost", "productId": "bench"}))
    boost = [{"type": "FEATURE", "id": ids[i], "usageLimit": 100} for i in ADDON_FEATURES]
    _ok(api.post("/api/v1/addons/boost/entitlements", json={"entitlements": boost}))
    _ok(api.post("/api/v1/addons/boost/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    _ok(api.post("/api/v1/plans", json={"id": "plan", "displayName": "Plan", "productId": "bench"}))
    _ok(api.patch("/api/v1/plans/plan", json={"compatibleAddonIds": ["boost"]}))
    _ok(api.post("/api/v1/plans/plan/entitlements", json={"entitlements": entitlements}))
    _ok(api.post("/api/v1/plans/plan/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    for n in range(customers):
        params: dict[str, object] = {"planId": "plan"}
        if n % 10 == 3:
            params["addons"] = [{"id": "boost", "quantity": n % 3 + 1}]
        elif n % 10 == 7:
            params["entitlements"] = [
                {"type": "FEATURE", "id": ids[OVERRIDDEN_FEATURE], "usageLimit": 20_000, "resetPeriod": "MONTH"}
            ]
        _ok(api.post("/api/v1/customers", json={"id": f"c{n}", "subscriptionParams": params}))
    for start in range(0, customers, 500):
        usages = [
            {"customerId": f"c{n}", "featureId": ids[1], "value": n % 5 + 1}
            for n in range(start, min(start + 500, customers))
        ]
        _ok(api.post("/api/v2/usage", json={"usages": usages}))
    return ids


def _ok(response: Any) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")


def tracked() -> int:
    """Objects the collector tracks, once a full collection has untracked the tuples and dicts it can."""
    gc.collect()
    gc.collect()
    return len(gc.get_objects())


def full_collections(times: int = 5) -> list[float]:
    """Seconds of CPU (this thread) of each of `times` full collections in a row."""
    spent = []
    for _ in range(times):
        started = time.thread_time()
        gc.collect()
        spent.append(time.thread_time() - started)
    return spent


def forget_usage_kept(db: Any, env_id: int) -> tuple[int, int]:
    """Forget what usage keeps for the environment (reports' and ingestion's): the owners it kept, and the
    objects the collector tracked for them."""
    from entitle.usage import ahead, counting

    reports, batches = ahead._kept.kept(db, env_id), counting._known.kept(db, env_id)
    owners = (len(reports.grants) if reports else 0) + (len(batches.holders) if batches else 0)
    del reports, batches
    with_them = tracked()
    ahead._kept.forget(db, env_id)
    counting._known.forget(db, env_id)
    return owners, with_them - tracked()


def load_all(db: Any, snapshot: Any, env_id: int, refs: list[str]) -> None:
    from entitle.clock import utcnow
    from entitle.entitlements import service

    for ref in refs:
        service._load(db, snapshot, env_id, ref, None, None, utcnow())


class Collections:
    """Every full collection while installed: its wall and CPU (its thread's) durations."""

    def __init__(self) -> None:
        self.durations: list[tuple[float, float]] = []
        self.younger = 0
        self._started = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            self.younger += phase == "start"
        elif phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
        else:
            self.durations.append((time.perf_counter() - self._started[0], time.thread_time() - self._started[1]))


async def checks_while_reloading(
    app: Any, snapshot: Any, env_id: int, key: str, ids: list[str], customers: int, reloads: int
) -> tuple[list[float], list[float]]:
    """Wall seconds of each check of a held customer, and of each check of a customer just dropped."""
    loop = asyncio.get_running_loop()
    protocol, transport = connected(app)
    held: list[float] = []
    reloaded: list[float] = []
    head = f"HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-API-KEY: {key}\r\n\r\n"
    for n in range(2 * reloads):
        # Reloads walk the customers in order, checks of held ones from the other end.
        customer = (n // 2) % customers if n % 2 else customers - 1 - (n // 2) % customers
        feature = ids[n % FEATURES]
        if n % 2:
            snapshot.drop_customer(env_id, f"c{customer}")
        path = f"/api/v1/customers/c{customer}/entitlements/check?featureId={feature}&requestedUsage={n % 7 + 1}"
        transport.written = loop.create_future()
        started = time.perf_counter()
        protocol.data_received(f"GET {path} {head}".encode())
        await transport.written
        (reloaded if n % 2 else held).append(time.perf_counter() - started)
        await asyncio.sleep(0)
    if set(transport.statuses) != {b"200"}:
        raise RuntimeError(f"answers other than 200: {sorted(set(transport.statuses))}")
    return held, reloaded


def _quantiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1e3:7.2f} ms  p99 {p99 * 1e3:7.2f} ms  max {ordered[-1] * 1e3:7.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--customers", type=int, default=10_000, help="customers held (10,000)")
    parser.add_argument("--reloads", type=int, default=5_000, help="customers read again while checks run (5,000)")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from entitle.environments.service import environment_pk

    with served_app(args.database, CONSTANT_ASYNC_PATH, embedded_worker=False) as served:
        app, key = served.app, served.key
        with TestClient(app, headers={"X-API-KEY": key}, backend_options={"use_uvloop": True}) as client:
            started = time.perf_counter()
            ids = seed(client, args.customers)
            seeded = time.perf_counter() - started
            snapshot = app.state.entitlement_snapshot
            env_id = environment_pk(served.db, "development")
            refs = [f"c{n}" for n in range(args.customers)]
            for ref in refs:
                snapshot.drop_customer(env_id, ref)
            load_all(served.db, snapshot, env_id, refs[:50])  # what every load shares, read once
            for ref in refs[:50]:
                snapshot.drop_customer(env_id, ref)
            before = tracked()
            # tracemalloc makes a load several times slower: the bytes are those of the first customers.
            traced = refs[:MEASURED_BYTES]
            tracemalloc.start()
            memory_before = tracemalloc.take_snapshot()
            load_all(served.db, snapshot, env_id, traced)
            memory_after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            grown = sum(stat.size_diff for stat in memory_after.compare_to(memory_before, "filename"))
            del memory_before, memory_after
            started = time.perf_counter()
            load_all(served.db, snapshot, env_id, refs[len(traced) :])
            loaded_in = time.perf_counter() - started
            held = len(snapshot)
            if held != args.customers:
                raise RuntimeError(f"{held} customers held of {args.customers}: is the snapshot live?")
            objects = tracked() - before

            seen = Collections()
            gc.callbacks.append(seen)
            try:
                latencies = client.portal.call(
                    checks_while_reloading, app, snapshot, env_id, key, ids, args.customers, args.reloads
                )
            finally:
                gc.callbacks.remove(seen)
            # Back to back, so that only the customers held differ.
            held_collections = full_collections(7)
            for ref in refs:
                snapshot.drop_customer(env_id, ref)
            gc.collect()
            empty_collections = full_collections(7)
            kept_owners, kept_objects = forget_usage_kept(served.db, env_id)
            forgotten_collections = full_collections(7)

    print(
        f"Entitle snapshot memory: {args.database}; {FEATURES} features x {args.customers} customers "
        f"(seeded in {seeded:.0f} s; {len(refs) - len(traced):,} untraced loads in {loaded_in:.1f} s); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"\nusage kept for the next reports: {kept_owners:,} owners, tracked objects per owner "
        f"{kept_objects / max(kept_owners, 1):.2f} ({kept_objects:,} in all)"
    )
    print(f"tracked objects per held customer: {objects / held:.1f} ({objects:,} in all)")
    print(
        f"bytes per held customer (tracemalloc, over the first {len(traced):,}): {grown / len(traced) / 1024:.1f} KiB"
    )
    full, empty = statistics.median(held_collections), statistics.median(empty_collections)
    print(
        f"one full gc.collect(), CPU: {full * 1e3:.1f} ms median, {min(held_collections) * 1e3:.1f} ms min, "
        f"with {held:,} customers held; snapshot empty {empty * 1e3:.1f} ms: the snapshot's share "
        f"{(full - empty) * 1e3:.1f} ms"
    )
    forgotten = statistics.median(forgotten_collections)
    print(
        f"  then usage's kept owners forgotten: {forgotten * 1e3:.1f} ms: "
        f"their share {(empty - forgotten) * 1e3:.1f} ms"
    )
    held_checks, reloaded_checks = latencies
    print(f"\nchecks through uvicorn's protocol, {args.reloads:,} of them reading the customer again:")
    print(f"  held customer:     {_quantiles(held_checks)}")
    print(f"  customer reloaded: {_quantiles(reloaded_checks)}")
    print(f"  all:               {_quantiles(held_checks + reloaded_checks)}")
    pauses = ", ".join(f"{wall * 1e3:.0f}/{cpu * 1e3:.0f}" for wall, cpu in seen.durations) or "none"
    print(f"  full collections meanwhile: {len(seen.durations)} (ms wall/CPU: {pauses}); younger ones: {seen.younger}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
