"""Raw events ingested per second in batches of 1,000 with deduplication, over real HTTP, beside a
plain batched insert of the same rows into the same database as the limit.

    .venv/bin/python bench/event_ingest.py [--batches N] [--concurrency C] [--database sqlite|postgresql]

Seeds a metered feature (SUM over a dimension, filtered on the event name), a plan granting it and
100 customers on the plan. Each request posts 1,000 events spread over the customers, 10% of them
repeats of already-sent idempotency keys (deduplicated, not counted). The server stores the batch
and recomputes the meter for the touched customers in the same transaction, so a check sees the
events when the response arrives. The limit is an `INSERT` of 1,000 rows per transaction into the
same `events` table through SQLAlchemy Core, no HTTP, no dedup, no meters.

Prints events/s for both; timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_reads import fresh_database, running_server

CUSTOMERS = 100
BATCH = 1000


def seed(base: str, key: str) -> None:
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
        meter = {
            "aggregation": {"function": "SUM", "field": "tokens"},
            "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "completion"}]}],
        }
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
        api.post("/api/v1/products", json={"id": "bench", "displayName": "Bench"}).raise_for_status()
        api.post("/api/v1/plans", json={"id": "plan", "displayName": "Plan", "productId": "bench"}).raise_for_status()
        api.post(
            "/api/v1/plans/plan/entitlements",
            json={"entitlements": [{"type": "FEATURE", "id": "tokens", "usageLimit": 10**12, "resetPeriod": "MONTH"}]},
        ).raise_for_status()
        api.post("/api/v1/plans/plan/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
        for n in range(CUSTOMERS):
            api.post(
                "/api/v1/customers", json={"id": f"c{n}", "subscriptionParams": {"planId": "plan"}}
            ).raise_for_status()


def http_ingest(base: str, key: str, batches: int, concurrency: int) -> tuple[float, int]:
    counter = itertools.count()
    lock = threading.Lock()
    sent = [0]
    errors: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=120) as api:
            while True:
                with lock:
                    if sent[0] >= batches:
                        return
                    sent[0] += 1
                    start = next(counter) * BATCH
                fresh = [
                    {
                        "customerId": f"c{i % CUSTOMERS}",
                        "eventName": "completion",
                        "idempotencyKey": f"e{i}",
                        "dimensions": {"tokens": i % 97, "model": "small"},
                    }
                    for i in range(start, start + int(BATCH * 0.9))
                ]
                repeats = [dict(fresh[j]) for j in range(0, len(fresh), 9)][: BATCH - len(fresh)]
                response = api.post("/api/v1/events", json={"events": fresh + _renamed(repeats, start)})
                if response.status_code != 200:
                    errors.append(response.text[:200])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    for error in errors[:5]:
        print(f"error: {error}", file=sys.stderr)
    return elapsed, len(errors)


def _renamed(repeats: list[dict[str, object]], start: int) -> list[dict[str, object]]:
    """Repeats of keys from the previous batch (already stored): the server must skip them."""
    previous = max(start - BATCH, 0)
    for offset, event in enumerate(repeats):
        event["idempotencyKey"] = f"e{previous + offset}"
    return repeats if start else []


def plain_insert(url: str, batches: int) -> float:
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from entitle.db import Database
    from entitle.environments.service import ensure_environment
    from entitle.events.models import Event

    db = Database(url)
    env = ensure_environment(db, "plain").pk
    now = datetime.now(UTC)
    began = time.perf_counter()
    for b in range(batches):
        rows = [
            {
                "environment_id": env,
                "customer_ref": f"c{i % CUSTOMERS}",
                "resource_ref": None,
                "event_name": "completion",
                "idempotency_key": f"p{b}-{i}",
                "dimensions": {"tokens": i % 97},
                "timestamp": now,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(BATCH)
        ]
        with db.transaction() as s:
            s.execute(insert(Event), rows)
    elapsed = time.perf_counter() - began
    db.dispose()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    with fresh_database(args.database) as (url, data_dir):
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        db.dispose()
        with running_server(url, data_dir) as base:
            seed(base, key)
            elapsed, errors = http_ingest(base, key, args.batches, args.concurrency)
            with httpx.Client(base_url=base, headers={"X-API-KEY": key}) as api:
                sample = api.get("/api/v1/customers/c1/entitlements/check", params={"featureId": "tokens"}).json()
        plain = plain_insert(url, args.batches)
    events = args.batches * BATCH
    print(
        f"Entitle event ingestion: {args.database}; {args.batches} batches of {BATCH} events (10% repeats), "
        f"{args.concurrency} concurrent clients, {CUSTOMERS} customers, meter SUM recomputed per batch"
    )
    print(f"\n{'path':<44} {'events/s':>10} {'seconds':>9}")
    print(f"{'POST /api/v1/events (dedup + meters)':<44} {events / elapsed:>10.0f} {elapsed:>9.2f}")
    print(f"{'plain batched INSERT, same rows (limit)':<44} {events / plain:>10.0f} {plain:>9.2f}")
    print(f"\nsample check after ingestion: c1 tokens currentUsage={sample['data'].get('currentUsage')}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
