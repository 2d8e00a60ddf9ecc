"""What a parent plan's publish costs when plans built on it grant inherited recurring credits.

    .venv/bin/python bench/inherited_credits.py [--database sqlite|postgresql] [--children N] [--others M]
        [--rounds R] [--no-actor]

A parent plan grants 100 credits a month and a feature; a child plan inherits both; N customers are on
the child, M on a plan of their own granting credits (not built on the parent). Each round publishes two
new parent versions by the catalog's own use case (`publishing.publish_package`, no HTTP, under an API
key's actor as a publish through the API runs, so the audit log names it; `--no-actor`: none): one changing
only the feature's limit (the inherited credits stay as they were), one changing the monthly amount
(every child subscription's period is regranted). Printed per kind: SQL statements of the publish, the
process CPU it took, and on SQLite how long its transaction held the write lock (`ingest_load.LockHolds`:
BEGIN IMMEDIATE returned -> COMMIT done; issue 12 asks at most about 100 ms) and the CPU its thread spent
meanwhile (on a shared machine the wall time also counts waits for a CPU), each as the median and the
minimum over the rounds. Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from in_process import served_app
from ingest_load import LockHolds


def seed(api: Any, children: int, others: int) -> None:
    def ok(response: Any) -> None:
        response.raise_for_status()

    ok(api.post("/api/v1/products", json={"id": "bench", "displayName": "Bench"}))
    ok(api.post("/api/v1/credits/custom-currencies", json={"id": "ai", "displayName": "AI credits"}))
    ok(api.post("/api/v1/features", json={"id": "seats", "displayName": "Seats", "featureType": "NUMBER"}))
    credit = {"type": "CREDIT", "id": "ai", "amount": 100, "cadence": "MONTH"}
    for plan, parent, rows in (
        ("parent", None, [credit, {"type": "FEATURE", "id": "seats", "usageLimit": 5}]),
        ("child", "parent", []),
        ("own", None, [credit]),
    ):
        body: dict[str, Any] = {"id": plan, "displayName": plan, "productId": "bench"}
        if parent:
            body["parentPlanId"] = parent
        ok(api.post("/api/v1/plans", json=body))
        if rows:
            ok(api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": rows}))
        ok(api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    for i in range(children + others):
        plan = "child" if i < children else "own"
        body = {"id": f"c{i}", "subscriptionParams": {"planId": plan}}
        ok(api.post("/api/v1/customers", json=body))


@contextmanager
def running(served: Any) -> Iterator[Any]:
    """A client of the app started as `entitle serve` starts it (its lifespan: the startup objects frozen
    out of the garbage collector's sight, the change-log hub that keeps the environment facts and the
    entitlement snapshot): without it, every full collection walked the ~300,000 startup objects (about
    200 ms, in whichever publish allocated at the wrong moment) and every webhook event asked for the
    environment's endpoints again."""
    from fastapi.testclient import TestClient

    with TestClient(served.app, headers={"X-API-KEY": served.key}) as api:
        yield api


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--children", type=int, default=50)
    parser.add_argument("--others", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--no-actor",
        dest="actor",
        action="store_false",
        help="publish with no one acting (as a job would): the audit log then records nothing",
    )
    args = parser.parse_args()

    from sqlalchemy import event

    from entitle.actors import acting_as
    from entitle.catalog.packages.publishing import create_draft, publish_package
    from entitle.environments.models import Environment

    with served_app(args.database, None, embedded_worker=False) as served, running(served) as api:
        seed(api, args.children, args.others)
        with served.db.transaction() as s:
            env_id = s.query(Environment.pk).filter(Environment.name == "development").scalar()
        statements = [0]

        def counted(*_: Any) -> None:
            statements[0] += 1

        event.listen(served.db.write_engine, "before_cursor_execute", counted)
        holds = LockHolds(served.db.write_engine) if args.database == "sqlite" else None
        Run = tuple[int, float, tuple[float, float] | None]
        figures: dict[str, list[Run]] = {"feature only": [], "credit amount": []}
        for r in range(args.rounds):
            for kind in figures:
                create_draft(served.db, env_id, "PLAN", "parent")
                if kind == "feature only":
                    body = {"type": "FEATURE", "usageLimit": 6 + r}
                    api.patch("/api/v1/plans/parent/entitlements/seats", json=body).raise_for_status()
                else:
                    body = {"type": "CREDIT", "amount": 200 if r % 2 == 0 else 100}
                    api.patch("/api/v1/plans/parent/entitlements/ai", json=body).raise_for_status()
                statements[0] = 0
                if holds is not None:
                    holds.report(reset=True)
                started = time.process_time()
                with acting_as("api_key", "server-bench", env_id) if args.actor else nullcontext():
                    publish_package(served.db, env_id, "PLAN", "parent", "NEW_CUSTOMERS")
                cpu = time.process_time() - started
                report = holds.report(reset=True) if holds is not None else None
                held = (report["longestMs"], report["longestCpuMs"] or 0.0) if report is not None else None
                figures[kind].append((statements[0], cpu, held))
        print(f"{args.database}: {args.children} subscriptions on the child, {args.others} on their own plan")
        for kind, runs in figures.items():
            cpu = [c * 1000 for _, c, _ in runs]
            counts = sorted({n for n, _, _ in runs})
            held = [h for _, _, h in runs if h is not None]
            lock = ""
            if held:
                wall, thread = [h[0] for h in held], [h[1] for h in held]
                lock = (
                    f", write lock held median {statistics.median(wall):.1f} ms (min {min(wall):.1f}),"
                    f" its CPU {statistics.median(thread):.1f} ms (min {min(thread):.1f})"
                )
            print(
                f"  publish, {kind:13}: statements {counts}, process CPU median {statistics.median(cpu):.1f} ms"
                f" (min {min(cpu):.1f}){lock} over {len(runs)} publishes"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
