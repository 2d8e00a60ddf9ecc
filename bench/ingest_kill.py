"""Kill -9 during ingestion: nothing acknowledged is lost, nothing is counted twice.

    .venv/bin/python bench/ingest_kill.py [--database sqlite|postgresql] [--events N] [--kills K]

An `entitle serve` process (its own process, so SIGKILL is real) ingests batches of raw events for a
metered feature (SUM of a dimension) over HTTP while this script kills it with SIGKILL at random
moments and starts it again. The client behaves as the SDK does: a batch that got no answer is sent
again with the same idempotency keys until it is acknowledged. At the end it checks, from the database:

- every acknowledged event is stored, exactly once (stored rows == distinct keys sent);
- each customer's counter equals the meter recomputed from the stored events (nothing counted twice,
  nothing acknowledged left uncounted).

Prints the events acknowledged, the kills, the retries and the checks; exits 1 when a check fails.
Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.support.server import start_serve  # noqa: E402

from catalog_reads import fresh_database  # noqa: E402

CUSTOMERS = 20
BATCH = 500


def seed(base: str, key: str) -> None:
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
        meter = {"aggregation": {"function": "SUM", "field": "tokens"}, "filters": []}
        api.post(
            "/api/v1/features",
            json={
                "id": "tokens",
                "displayName": "Tokens",
                "featureType": "NUMBER",
                "meterType": "INCREMENTAL",
                "meter": meter,
            },
        ).raise_for_status()
        api.post("/api/v1/products", json={"id": "p", "displayName": "P"}).raise_for_status()
        api.post("/api/v1/plans", json={"id": "plan", "displayName": "Plan", "productId": "p"}).raise_for_status()
        api.post(
            "/api/v1/plans/plan/entitlements",
            json={"entitlements": [{"type": "FEATURE", "id": "tokens", "usageLimit": 10**12}]},
        ).raise_for_status()
        api.post("/api/v1/plans/plan/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
        for n in range(CUSTOMERS):
            api.post(
                "/api/v1/customers", json={"id": f"c{n}", "subscriptionParams": {"planId": "plan"}}
            ).raise_for_status()


def batch(number: int) -> list[dict[str, object]]:
    first = number * BATCH
    return [
        {
            "customerId": f"c{i % CUSTOMERS}",
            "eventName": "call",
            "idempotencyKey": f"k{i}",
            "dimensions": {"tokens": i % 13 + 1},
        }
        for i in range(first, first + BATCH)
    ]


class Server:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir = url, data_dir
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.start()

    def start(self) -> None:
        with self.lock:
            self.proc, self.base = start_serve(self.url, self.data_dir)

    def kill(self) -> None:
        with self.lock:
            if self.proc is not None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                self.proc = None

    def stop(self) -> None:
        with self.lock:
            if self.proc is not None:
                self.proc.terminate()
                self.proc.wait(timeout=20)
                self.proc = None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    batches = max(1, args.events // BATCH)

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    with fresh_database(args.database) as (url, data_dir):
        key = create_key(Database(url), "development", KeyKind.SERVER)
        server = Server(url, data_dir)
        seed(server.base, key)
        done = threading.Event()
        acknowledged = [0]
        retries = [0]

        def client() -> None:
            number = 0
            while number < batches:
                try:
                    response = httpx.post(
                        f"{server.base}/api/v1/events",
                        json={"events": batch(number)},
                        headers={"X-API-KEY": key},
                        timeout=30,
                    )
                except httpx.HTTPError:
                    retries[0] += 1
                    time.sleep(0.05)
                    continue
                if response.status_code != 200:
                    retries[0] += 1
                    time.sleep(0.05)
                    continue
                acknowledged[0] += BATCH
                number += 1
            done.set()

        thread = threading.Thread(target=client, daemon=True)
        began = time.perf_counter()
        thread.start()
        kills = 0
        while kills < args.kills and not done.wait(rng.uniform(0.3, 1.5)):
            server.kill()
            kills += 1
            server.start()
        thread.join()
        elapsed = time.perf_counter() - began
        server.stop()
        ok = verify(url, batches)
        print(
            f"{args.database}: {acknowledged[0]:,} events acknowledged in {elapsed:.1f} s across {kills} kill -9s, "
            f"{retries[0]} resent batches; {'all checks passed' if ok else 'CHECKS FAILED'}"
        )
        return 0 if ok else 1


def verify(url: str, batches: int) -> bool:
    from sqlalchemy import func, select

    from entitle.db import Database
    from entitle.events.models import Event
    from entitle.usage.models import UsageCounter

    db = Database(url)
    sent_keys = {f"k{i}" for i in range(batches * BATCH)}
    expected: dict[str, Decimal] = {}
    for i in range(batches * BATCH):
        customer = f"c{i % CUSTOMERS}"
        expected[customer] = expected.get(customer, Decimal(0)) + (i % 13 + 1)
    with db.read() as s:
        stored = list(s.scalars(select(Event.idempotency_key)))
        counters: dict[str, Decimal] = {}
        from entitle.customers.models import Customer

        rows = s.execute(
            select(Customer.ref_id, func.sum(UsageCounter.value))
            .join(Customer, Customer.pk == UsageCounter.customer_pk)
            .where(UsageCounter.feature_ref == "tokens")
            .group_by(Customer.ref_id)
        ).all()
        counters = {ref: Decimal(total) for ref, total in rows}
    db.dispose()
    ok = True
    if len(stored) != len(set(stored)):
        print(f"duplicate stored events: {len(stored) - len(set(stored))}")
        ok = False
    missing = sent_keys - set(stored)
    if missing:
        print(f"acknowledged events missing: {len(missing)}")
        ok = False
    wrong = {c: (counters.get(c), v) for c, v in expected.items() if counters.get(c) != v}
    if wrong:
        print(f"counters differ from the stored events (customer: counted, expected): {dict(list(wrong.items())[:5])}")
        ok = False
    print(
        f"stored events {len(stored):,} (distinct keys sent {len(sent_keys):,}); counters checked for {len(expected)}"
    )
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
