from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from entitle.events.models import Event


def insert_new(session: Session, rows: list[dict[str, Any]]) -> list[Any]:
    """Insert events, silently skipping idempotency keys already stored; return the new rows as
    (customer_ref, resource_ref, event_name, dimensions, timestamp)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = pg_insert(Event).on_conflict_do_nothing(index_elements=["environment_id", "idempotency_key"])
    elif dialect == "sqlite":
        stmt = sqlite_insert(Event).on_conflict_do_nothing(index_elements=["environment_id", "idempotency_key"])
    else:  # pragma: no cover - only the two supported databases
        stmt = insert(Event)
    returning = stmt.returning(
        Event.customer_ref, Event.resource_ref, Event.event_name, Event.dimensions, Event.timestamp
    )
    return list(session.execute(returning, rows))
