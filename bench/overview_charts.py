"""CPU of the console overview's per-day charts with and without their (environment, time) indexes
(migration 0031), and what the events index costs a batch of 1,000 events stored, in one process.

    .venv/bin/python bench/overview_charts.py [--database sqlite|postgresql] [--days D] [--per-day N]
                                              [--rounds R]

Seeds one environment with D days (default 365) of N events and N usage reports a day (default 500),
and a second environment with as many (the index must also skip other environments' rows). Then, in
rounds: the overview's chart queries (`chart_queries`: new subscriptions, usage reports, events, paid
credit grants over 30 days) and the whole `overview()`, each timed in process CPU (`time.process_time`:
the database is in this process on SQLite; on PostgreSQL only the client side counts, so its figure is
the wall time). The indexes are then dropped and the same is measured again; last, batches of 1,000
events are inserted (`executemany`, one transaction each) without the events index, then with it
(rebuilt, and the WAL checkpointed before timing). Prints minimum and median per scenario and the
ratios. Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from sqlalchemy import insert, select, text

from catalog_reads import fresh_database
from entitle.db import Database

INDEXES = (
    "ix_subscriptions_env_created",
    "ix_usage_records_env_time",
    "ix_events_env_time",
    "ix_credit_grants_env_created",
)


def _clock(wall: bool) -> Callable[[], float]:
    return time.perf_counter if wall else time.process_time


def seed(db: Database, days: int, per_day: int, now: datetime) -> int:
    from entitle.customers.models import Customer
    from entitle.environments.service import ensure_environment
    from entitle.events.models import Event
    from entitle.usage.models import UsageRecord

    measured = ensure_environment(db, "development").pk
    other = ensure_environment(db, "other").pk
    for env_id in (measured, other):
        with db.transaction() as s:
            customer = Customer(environment_id=env_id, ref_id="bench")
            s.add(customer)
            s.flush()
            customer_pk = customer.pk
        for day in range(days):
            at = now - timedelta(days=day)
            events = [
                {
                    "environment_id": env_id,
                    "customer_ref": "bench",
                    "event_name": "call",
                    "idempotency_key": uuid.uuid4().hex,
                    "dimensions": {},
                    "timestamp": at - timedelta(seconds=i),
                    "created_at": at,
                    "updated_at": at,
                }
                for i in range(per_day)
            ]
            reports = [
                {
                    "environment_id": env_id,
                    "customer_pk": customer_pk,
                    "feature_ref": "calls",
                    "resource_ref": "",
                    "idempotency_key": None,
                    "update_behavior": "DELTA",
                    "value": Decimal(1),
                    "resulting_value": Decimal(i),
                    "window_start": at,
                    "timestamp": at - timedelta(seconds=i),
                    "created_at": at,
                    "updated_at": at,
                }
                for i in range(per_day)
            ]
            with db.transaction() as s:
                s.execute(insert(Event.__table__), events)
                s.execute(insert(UsageRecord.__table__), reports)
    if db.dialect == "postgresql":
        # As autovacuum would leave a table loaded long ago: statistics, and the visibility map an
        # index-only scan needs to skip the table's pages.
        with db.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with db.transaction() as s:
            s.execute(text("ANALYZE"))
    return measured


def measure(fn: Callable[[], object], rounds: int, clock: Callable[[], float]) -> list[float]:
    times = []
    for _ in range(rounds):
        started = clock()
        fn()
        times.append(clock() - started)
    return times


def show(label: str, times: list[float]) -> float:
    low, mid = min(times), statistics.median(times)
    print(f"  {label:<42} min {low * 1000:8.2f} ms   median {mid * 1000:8.2f} ms")
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from entitle.console.overview import CHART_DAYS, chart_queries, overview
    from entitle.events.models import Event

    clock = _clock(args.database == "postgresql")
    with fresh_database(args.database) as (url, _):
        db = Database(url)
        now = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        env_id = seed(db, args.days, args.per_day, now)
        print(
            f"seeded 2 environments x {args.days} days x {args.per_day} events and usage reports a day "
            f"in {time.perf_counter() - started:.1f} s ({args.database})"
        )
        since = (now - timedelta(days=CHART_DAYS - 1)).replace(hour=0, minute=0, second=0)

        def charts() -> None:
            with db.read() as s:
                for query in chart_queries(env_id, since, db.dialect).values():
                    s.execute(query).all()

        def whole() -> None:
            overview(db, env_id, now)

        found: dict[str, float] = {}
        for indexed in (True, False):
            if not indexed:
                with db.transaction() as s:
                    for name in INDEXES:
                        s.execute(text(f"DROP INDEX {name}"))
            state = "with" if indexed else "without"
            print(f"{state} the (environment, time) indexes:")
            charts()  # warm the caches once
            found[f"charts {state}"] = show("chart queries (30 days)", measure(charts, args.rounds, clock))
            found[f"overview {state}"] = show("overview()", measure(whole, args.rounds, clock))
        print(f"  charts: without / with = {found['charts without'] / found['charts with']:.1f}x")
        print(f"  overview(): without / with = {found['overview without'] / found['overview with']:.1f}x")

        batch_at = now + timedelta(days=1)

        def batch() -> None:
            rows = [
                {
                    "environment_id": env_id,
                    "customer_ref": f"c{i % 20}",
                    "event_name": "call",
                    "idempotency_key": uuid.uuid4().hex,
                    "dimensions": {},
                    "timestamp": batch_at,
                    "created_at": batch_at,
                    "updated_at": batch_at,
                }
                for i in range(1000)
            ]
            with db.transaction() as s:
                s.execute(insert(Event.__table__), rows)

        def settle() -> None:
            # A WAL checkpoint of the index just built would otherwise run (in another thread of this
            # process) during the first batches timed.
            if db.checkpointer is not None:
                db.checkpointer.checkpoint()
            batch()

        settle()
        without_index = measure(batch, args.rounds, clock)
        with db.transaction() as s:
            s.execute(text("CREATE INDEX ix_events_env_time ON events (environment_id, timestamp)"))
        settle()
        with_index = measure(batch, args.rounds, clock)
        print("a batch of 1,000 events stored (executemany, one transaction):")
        low_with = show("with ix_events_env_time", with_index)
        low_without = show("without it", without_index)
        print(f"  with / without = {low_with / low_without:.2f}x")
        with db.read() as s:
            total = s.scalar(select(text("count(*)")).select_from(Event.__table__))
        print(f"events in the table at the end: {total}")
        db.dispose()


if __name__ == "__main__":
    main()
