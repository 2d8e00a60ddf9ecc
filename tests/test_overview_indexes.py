"""The console overview's per-day charts read through (environment, time) indexes (migration 0031), the
customers' email filter through its expression index (0036), and the migrations build the schema the
models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, event, inspect
from sqlalchemy.orm import Session

import entitle.models  # noqa: F401  (every table on Base.metadata)
from entitle.console.overview import chart_queries
from entitle.customers import store as customer_store
from entitle.db import Database
from entitle.db.base import Base
from entitle.db.pagination import CreatedAtRange, PageRequest

CHART_INDEXES = {
    "subscriptions": "ix_subscriptions_env_created",
    "usage_reports": "ix_usage_records_env_time",
    "events": "ix_events_env_time",
    "one_off": "ix_credit_grants_env_created",
}


@contextmanager
def _sent(conn: Connection) -> Iterator[list[tuple[str, Any]]]:
    """The statements `conn` sends to the driver, with their parameters as the driver gets them."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(conn, "before_cursor_execute", record)


def _plan(conn: Connection, statement: str, parameters: Any) -> str:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "postgresql":
            # An empty table is read fastest whole: forbidding that shows which index the planner would use
            # once there are rows (it still scans the table when no index fits).
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + statement, parameters)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        return "\n".join(" ".join(str(v) for v in row) for row in cursor.fetchall())
    finally:
        cursor.close()


@pytest.mark.parametrize("chart", sorted(CHART_INDEXES))
def test_each_overview_chart_reads_its_environment_time_index(db: Database, chart: str) -> None:
    query = chart_queries(7, datetime(2026, 11, 1, tzinfo=UTC), db.dialect)[chart]
    with db.write_engine.connect() as conn, conn.begin():
        with _sent(conn) as seen:
            conn.execute(query).all()
        [(statement, parameters)] = seen
        plan = _plan(conn, statement, parameters)
    assert CHART_INDEXES[chart] in plan, plan


# SQLite's reflection cannot read an expression index (`ix_customers_env_email`), so there alembic skips
# comparing it, saying so; PostgreSQL's compares it.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_the_migrations_build_what_the_models_declare(db: Database) -> None:
    """`alembic check` in a test: a model's index (or column) without its migration, or the reverse, fails."""
    with db.write_engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []


def test_events_have_no_index_on_the_environment_alone_and_still_find_its_rows_by_index(db: Database) -> None:
    """Migration 0035: each index of `events` begins with `environment_id`, so one on it alone only cost
    every ingested event another entry; a lookup by the environment alone (an environment's deletion)
    still reads an index, not the whole table."""
    with db.write_engine.connect() as conn, conn.begin():
        indexes = inspect(conn).get_indexes("events")
        assert all(index["column_names"][0] == "environment_id" for index in indexes), indexes
        assert [index["column_names"] for index in indexes if index["column_names"] == ["environment_id"]] == []
        parameter = "%(env)s" if conn.dialect.name == "postgresql" else "?"
        plan = _plan(
            conn,
            f"SELECT pk FROM events WHERE environment_id = {parameter}",
            {"env": 1} if conn.dialect.name == "postgresql" else (1,),
        )
    assert "events" in plan and ("USING" in plan.upper() or "Index" in plan), plan
    assert "SCAN events\n" not in plan + "\n" and "Seq Scan" not in plan, plan


def test_the_customers_email_filter_reads_its_expression_index(db: Database) -> None:
    """Migration 0036: `GET /customers?email=` (any case) reads the (environment, lower(email)) index
    rather than every customer of the environment."""
    with db.write_engine.connect() as conn, conn.begin():
        with _sent(conn) as seen, Session(bind=conn) as session:
            customer_store.list_page(
                session, 1, PageRequest(limit=10), email="Ops@Acme.test", name=None, created_at=CreatedAtRange()
            )
        [(statement, parameters)] = [(q, p) for q, p in seen if "customers" in q]
        plan = _plan(conn, statement, parameters)
    assert "ix_customers_env_email" in plan, plan
