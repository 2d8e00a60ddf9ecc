"""`Entitle.get_entitlement` from a warm local cache, in process, beside a plain dict lookup.

    .venv/bin/python bench/sdk_cache.py [--calls N] [--customers K] [--database sqlite|postgresql]

Reuses catalog_reads.py's harness (a fresh database, Entitle under uvicorn in a child process) and
entitlement_checks.py's seed: 20 features (boolean, metered with a monthly reset, fluctuating, enum),
one plan granting all of them, K customers (default 100) on it, some usage reported. An `Entitle`
client (push stream on, memory backend) warms its cache with one list request per customer, then:

- `get_entitlement(customer, feature, requested_usage=1)` for random customers and features, all
  answered from the cache (the figures count the answers' sources; no request is made);
- the same with a different `requested_usage` on every call: an answer is memoized on the cached
  state per (feature, requested usage, values), so this one computes the decision every time;
- the same through `AsyncEntitle`, awaited in a loop (no suspension: the cache answers);
- the limit: a plain `dict[(customer, feature)]` lookup of the same wire entitlements.

Throughput is timed over an untimed loop (calls/s); p50/p99 come from a second pass timing each call
with `perf_counter_ns` (its own overhead, printed as "timer floor", is included in every figure).
Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_reads import fresh_database, running_server
from entitle.sdk import AsyncEntitle, Entitle
from entitlement_checks import seed


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    us = sorted(x / 1000 for x in samples_ns)
    return statistics.median(us), us[min(len(us) - 1, int(len(us) * 0.99))]


def measure(name: str, call: Callable[[int], Any], n: int) -> tuple[str, float, float, float]:
    for i in range(min(n, 1000)):  # warm the path
        call(i)
    began = time.perf_counter()
    for i in range(n):
        call(i)
    rate = n / (time.perf_counter() - began)
    samples = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        call(i)
        samples.append(clock() - t0)
    p50, p99 = percentiles(samples)
    return name, rate, p50, p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per scenario (default 200000)")
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    rng = random.Random(7)
    with fresh_database(args.database) as (url, data_dir):
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        db.dispose()
        with running_server(url, data_dir) as base:
            ids = seed(base, key, args.customers)
            customers = [f"c{n}" for n in range(args.customers)]
            picks = [(rng.choice(customers), rng.choice(ids)) for _ in range(args.calls)]

            client = Entitle(key, base, cache_ttl=3600)
            pushed = client.wait_for_push(10)
            for customer in customers:
                client.get_entitlements(customer)
            sources: Counter[str] = Counter()

            def sdk_call(i: int) -> Any:
                customer, feature = picks[i]
                return client.get_entitlement(customer, feature, requested_usage=1)

            for i in range(0, args.calls, 97):
                sources[sdk_call(i).source.value] += 1

            plain: dict[tuple[str, str], dict[str, Any]] = {}
            with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
                for customer in customers:
                    listed = api.get(f"/api/v1/customers/{customer}/entitlements").json()["data"]["entitlements"]
                    for entry in listed:
                        plain[(customer, entry["feature"]["id"])] = entry

            fresh_amounts = itertools.count(1)

            def sdk_call_distinct(i: int) -> Any:
                customer, feature = picks[i]
                return client.get_entitlement(customer, feature, requested_usage=next(fresh_amounts))

            def dict_call(i: int) -> Any:
                return plain[picks[i]]

            def nothing(i: int) -> None:
                return None

            results = [
                measure("Entitle.get_entitlement (cache)", sdk_call, args.calls),
                measure("  same, a new requested_usage each call", sdk_call_distinct, args.calls),
                measure("dict[(customer, feature)]", dict_call, args.calls),
                measure("empty call (timer floor)", nothing, args.calls),
            ]

            async def async_bench() -> tuple[str, float, float, float]:
                async with AsyncEntitle(key, base, cache_ttl=3600) as aclient:
                    for customer in customers:
                        await aclient.get_entitlements(customer)
                    loop_n = args.calls // 4
                    for i in range(1000):
                        await aclient.get_entitlement(*picks[i], requested_usage=1)
                    began = time.perf_counter()
                    for i in range(loop_n):
                        await aclient.get_entitlement(*picks[i], requested_usage=1)
                    rate = loop_n / (time.perf_counter() - began)
                    samples = []
                    for i in range(loop_n):
                        t0 = time.perf_counter_ns()
                        await aclient.get_entitlement(*picks[i], requested_usage=1)
                        samples.append(time.perf_counter_ns() - t0)
                    p50, p99 = percentiles(samples)
                    return "AsyncEntitle.get_entitlement (cache)", rate, p50, p99

            results.insert(2, asyncio.run(async_bench()))
            client.close()

    print(
        f"Entitle SDK local cache: {args.customers} customers x 20 features warm in memory; {args.calls} calls per "
        f"scenario, one thread; push stream {'connected' if pushed else 'NOT connected (TTL 3600 s)'}; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"\n{'scenario':<40} {'calls/s':>12} {'p50 us':>9} {'p99 us':>9}")
    for name, rate, p50, p99 in results:
        print(f"{name:<40} {rate:>12,.0f} {p50:>9.2f} {p99:>9.2f}")
    sdk_rate, dict_rate = results[0][1], results[3][1]
    print(f"\nget_entitlement runs at {sdk_rate / dict_rate:.1%} of the plain dict lookup's rate.")
    print(f"answer sources (sampled every 97th call): {dict(sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
