from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from entitle.usage.models import UsageCounter, UsageRecord


def record_by_key(session: Session, env_id: int, idempotency_key: str) -> UsageRecord | None:
    return session.scalars(
        select(UsageRecord).where(UsageRecord.environment_id == env_id, UsageRecord.idempotency_key == idempotency_key)
    ).one_or_none()


def locked_counter(
    session: Session, env_id: int, customer_pk: int, feature_ref: str, resource_ref: str, window_start: datetime
) -> UsageCounter:
    """The counter row, created if missing, locked for this transaction."""
    values: dict[str, Any] = {
        "environment_id": env_id,
        "customer_pk": customer_pk,
        "feature_ref": feature_ref,
        "resource_ref": resource_ref,
        "window_start": window_start,
        "value": Decimal(0),
    }
    keys = ["customer_pk", "feature_ref", "resource_ref", "window_start"]
    dialect = session.get_bind().dialect.name
    insert_stmt: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(UsageCounter)
    session.execute(insert_stmt.values(**values).on_conflict_do_nothing(index_elements=keys))
    return session.scalars(
        select(UsageCounter)
        .where(
            UsageCounter.customer_pk == customer_pk,
            UsageCounter.feature_ref == feature_ref,
            UsageCounter.resource_ref == resource_ref,
            UsageCounter.window_start == window_start,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def counter_values(
    session: Session, customer_pk: int, wanted: Iterable[tuple[str, str, datetime]]
) -> dict[tuple[str, str, datetime], Decimal]:
    """Current values for (feature, resource, window start) triples; missing ones are absent."""
    keys = list(wanted)
    if not keys:
        return {}
    rows = session.scalars(
        select(UsageCounter).where(
            UsageCounter.customer_pk == customer_pk,
            tuple_(UsageCounter.feature_ref, UsageCounter.resource_ref, UsageCounter.window_start).in_(keys),
        )
    )
    return {(r.feature_ref, r.resource_ref, r.window_start): r.value for r in rows}


def records_between(
    session: Session, customer_pk: int, feature_ref: str, resource_ref: str | None, start: datetime, end: datetime
) -> list[UsageRecord]:
    stmt = select(UsageRecord).where(
        UsageRecord.customer_pk == customer_pk,
        UsageRecord.feature_ref == feature_ref,
        UsageRecord.timestamp >= start,
        UsageRecord.timestamp < end,
    )
    if resource_ref is not None:
        stmt = stmt.where(UsageRecord.resource_ref == resource_ref)
    return list(session.scalars(stmt.order_by(UsageRecord.timestamp, UsageRecord.pk)))


def insert_record_if_new(session: Session, values: dict[str, Any]) -> int | None:
    """Insert a usage record; None when its idempotency key was already used (by anyone, even a
    transaction committing concurrently: PostgreSQL waits for it, SQLite serializes writers)."""
    dialect = session.get_bind().dialect.name
    insert_stmt: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(UsageRecord)
    stmt = insert_stmt.values(**values).on_conflict_do_nothing(index_elements=["environment_id", "idempotency_key"])
    pk = session.execute(stmt.returning(UsageRecord.pk)).scalar_one_or_none()
    return None if pk is None else int(pk)


def events_in_window(
    session: Session, env_id: int, customer_ref: str, resource_ref: str | None, start: datetime, end: datetime | None
) -> list[tuple[str, dict[str, Any]]]:
    from entitle.events.models import Event

    stmt = select(Event.event_name, Event.dimensions).where(
        Event.environment_id == env_id, Event.customer_ref == customer_ref, Event.timestamp >= start
    )
    if end is not None:
        stmt = stmt.where(Event.timestamp < end)
    same_resource = Event.resource_ref == resource_ref if resource_ref else Event.resource_ref.is_(None)
    stmt = stmt.where(same_resource)
    return [(name, dict(dims or {})) for name, dims in session.execute(stmt)]
