"""Push latency across processes: a change committed through one `entitle serve` process reaches an
SSE client (`GET /api/v1/stream`) of ANOTHER `entitle serve` process on the same database.

    .venv/bin/python bench/push_latency.py [--changes N] [--database sqlite|postgresql|both]

For each database (a throwaway PostgreSQL cluster from tests/support/postgres.py, or a SQLite file),
starts two `entitle serve` processes (A and B, embedded worker off), seeds a metered feature, a plan
and a customer through A, opens a stream on B, then commits N usage reports through A, one at a
time: each report waits for its `usage.updated` on B's stream, and a random 0-300 ms, before the
next is sent (unloaded latency, one change in flight, commits at random phases of SQLite's 250 ms poll).

The commit happens inside the request, so the commit instant lies between the request's start and
its response. Two figures bracket the commit -> event latency:
- "response -> event": from the response received (after the commit) to the event (a lower bound;
  negative when the event overtakes the response);
- "request -> event": from the request sent (before the commit) to the event (an upper bound).

Prints p50 / p99 / max of each; timing is reported, never asserted (the issue's bound: within one
second on PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.server import serve_process

from catalog_reads import fresh_database

WAIT = 10.0


@dataclass
class Arrival:
    at: float
    event: str
    data: dict[str, object]


class Stream:
    """Reads an SSE stream in a thread; every event lands in a queue with its arrival instant."""

    def __init__(self, base: str, key: str) -> None:
        self.arrivals: queue.Queue[Arrival] = queue.Queue()
        self._opened = threading.Event()
        self._client = httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=httpx.Timeout(30, read=None))
        threading.Thread(target=self._read, daemon=True).start()
        if not self._opened.wait(WAIT):
            raise RuntimeError("the stream did not open")

    def _read(self) -> None:
        try:
            with self._client.stream("GET", "/api/v1/stream") as response:
                response.raise_for_status()
                self._opened.set()
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == "":
                        if "data" in fields:
                            now = time.perf_counter()
                            self.arrivals.put(Arrival(now, fields.get("event", ""), json.loads(fields["data"])))
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value[1:] if value.startswith(" ") else value
        except httpx.HTTPError:
            pass

    def close(self) -> None:
        self._client.close()


def seed(base: str, key: str) -> None:
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
        api.post(
            "/api/v1/features",
            json={"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
        ).raise_for_status()
        api.post("/api/v1/products", json={"id": "bench", "displayName": "Bench"}).raise_for_status()
        api.post("/api/v1/plans", json={"id": "plan", "displayName": "Plan", "productId": "bench"}).raise_for_status()
        api.post(
            "/api/v1/plans/plan/entitlements",
            json={"entitlements": [{"type": "FEATURE", "id": "calls", "usageLimit": 10**12, "resetPeriod": "MONTH"}]},
        ).raise_for_status()
        api.post("/api/v1/plans/plan/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
        api.post("/api/v1/customers", json={"id": "c-1", "subscriptionParams": {"planId": "plan"}}).raise_for_status()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def measure(kind: str, changes: int) -> tuple[list[float], list[float]]:
    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    with fresh_database(kind) as (url, data_dir):
        db = Database(url)
        try:
            key = create_key(db, "development", KeyKind.SERVER)
        finally:
            db.dispose()
        with serve_process(url, data_dir / "a") as base_a, serve_process(url, data_dir / "b") as base_b:
            seed(base_a, key)
            stream = Stream(base_b, key)
            from_response: list[float] = []
            from_request: list[float] = []
            try:
                with httpx.Client(base_url=base_a, headers={"X-API-KEY": key}, timeout=30) as via_a:
                    body = {"customerId": "c-1", "featureId": "calls", "value": 1}
                    rng = random.Random(5)
                    for n in range(1, changes + 1):
                        # A random pause first, so commits do not lock onto the SQLite hub's polling phase.
                        time.sleep(rng.uniform(0, 0.3))
                        sent = time.perf_counter()
                        via_a.post("/api/v2/usage", json={"usages": [body]}).raise_for_status()
                        answered = time.perf_counter()
                        deadline = time.monotonic() + WAIT
                        while True:
                            arrival = stream.arrivals.get(timeout=max(0.01, deadline - time.monotonic()))
                            if arrival.event == "usage.updated" and arrival.data.get("currentUsage") == n:
                                break
                        from_response.append(arrival.at - answered)
                        from_request.append(arrival.at - sent)
            finally:
                stream.close()
    return from_response, from_request


def report(kind: str, from_response: list[float], from_request: list[float]) -> None:
    def line(name: str, values: list[float]) -> str:
        ms = [v * 1000 for v in values]
        return (
            f"  {name:<18} p50 {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 99):7.1f} ms"
            f"   max {max(ms):7.1f} ms"
        )

    print(f"[{kind}] {len(from_response)} changes committed through process A, read on a stream of process B")
    print(line("response -> event", from_response))
    print(line("request -> event", from_request))
    within = sum(1 for v in from_request if v <= 1.0)
    print(f"  within one second of the request: {within}/{len(from_request)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    kinds = ["postgresql", "sqlite"] if args.database == "both" else [args.database]
    for kind in kinds:
        report(kind, *measure(kind, args.changes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
