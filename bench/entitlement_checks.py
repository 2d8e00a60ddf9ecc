"""Entitlement checks per second over real HTTP, beside the same stack's constant-answer floor.

    .venv/bin/python bench/entitlement_checks.py [--requests N] [--concurrency C] [--customers K]
                                                 [--database sqlite|postgresql]

Reuses catalog_reads.py's harness: a fresh database, Entitle under uvicorn in a child process with
a constant route mounted on that child's app instance only. Seeds 20 features (boolean, metered with
a monthly reset, fluctuating, enum), one plan granting all of them, and K customers (default 1000)
each provisioned onto the plan with `subscriptionParams`, with some usage reported. Then measures:

- "one customer, 20 features": GET .../entitlements/check for a random feature of one customer
- "K customers": the same for a random customer and feature
- "list 20 entitlements": GET /api/v1/customers/{id}/entitlements for a random customer
- the constant route: the floor of uvicorn + FastAPI + the HTTP client on this machine

Prints requests/s, p50 and p99 (ms); timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_reads import CONSTANT_PATH, Request, constant_route, fresh_database, run_load, running_server

FEATURES = 20


def seed(base: str, key: str, customers: int) -> list[str]:
    ids = [f"feature-{i:02d}" for i in range(FEATURES)]
    entitlements = []
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
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
            api.post("/api/v1/features", json=body).raise_for_status()
        api.post("/api/v1/products", json={"id": "bench", "displayName": "Bench"}).raise_for_status()
        api.post("/api/v1/plans", json={"id": "plan", "displayName": "Plan", "productId": "bench"}).raise_for_status()
        api.post("/api/v1/plans/plan/entitlements", json={"entitlements": entitlements}).raise_for_status()
        api.post("/api/v1/plans/plan/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
        for n in range(customers):
            api.post(
                "/api/v1/customers", json={"id": f"c{n}", "subscriptionParams": {"planId": "plan"}}
            ).raise_for_status()
        usages = [
            {"customerId": f"c{n}", "featureId": ids[1], "value": 3, "idempotencyKey": f"u{n}"}
            for n in range(customers)
        ]
        for chunk in range(0, len(usages), 500):
            api.post("/api/v2/usage", json={"usages": usages[chunk : chunk + 500]}).raise_for_status()
    return ids


def one_customer(ids: list[str]) -> Request:
    def request(client: httpx.Client, rng: random.Random) -> httpx.Response:
        return client.get(
            "/api/v1/customers/c0/entitlements/check", params={"featureId": rng.choice(ids), "requestedUsage": 1}
        )

    return request


def many_customers(ids: list[str], customers: int) -> Request:
    def request(client: httpx.Client, rng: random.Random) -> httpx.Response:
        customer = f"c{rng.randrange(customers)}"
        return client.get(
            f"/api/v1/customers/{customer}/entitlements/check",
            params={"featureId": rng.choice(ids), "requestedUsage": 1},
        )

    return request


def list_entitlements(customers: int) -> Request:
    def request(client: httpx.Client, rng: random.Random) -> httpx.Response:
        return client.get(f"/api/v1/customers/c{rng.randrange(customers)}/entitlements")

    return request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--customers", type=int, default=1000)
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
            ids = seed(base, key, args.customers)
            print(
                f"Entitle entitlement checks: {args.database}; {FEATURES} features, {args.customers} customers; "
                f"{args.requests} requests per scenario from {args.concurrency} threads; 1 server process; "
                f"{os.cpu_count()} CPUs shared by client and server"
            )
            results = [
                run_load(
                    "check: one customer, 20 features", base, key, one_customer(ids), args.requests, args.concurrency
                ),
                run_load(
                    f"check: {args.customers} customers",
                    base,
                    key,
                    many_customers(ids, args.customers),
                    args.requests,
                    args.concurrency,
                ),
                run_load(
                    "list 20 entitlements",
                    base,
                    key,
                    list_entitlements(args.customers),
                    args.requests,
                    args.concurrency,
                ),
                run_load(f"constant route {CONSTANT_PATH}", base, key, constant_route, args.requests, args.concurrency),
            ]
    print(f"\n{'scenario':<34} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for result in results:
        print(result.line())
    failed = [e for r in results for e in r.errors]
    for error in failed[:10]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
