from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from entitle.events.models import Event


def insert_new(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert events, skipping idempotency keys already stored (by anyone, even a transaction committing
    concurrently: PostgreSQL waits for it, SQLite serializes writers); return the keys inserted now."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    # The table, not the mapped class: a Core insert of many rows skips the ORM's per-row bookkeeping.
    table = cast(Table, Event.__table__)
    if dialect == "postgresql":
        stmt: Any = pg_insert(table).on_conflict_do_nothing(index_elements=["environment_id", "idempotency_key"])
    elif dialect == "sqlite":
        stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=["environment_id", "idempotency_key"])
    else:  # pragma: no cover - only the two supported databases
        stmt = insert(table)
    return set(session.scalars(stmt.returning(table.c.idempotency_key), rows))
