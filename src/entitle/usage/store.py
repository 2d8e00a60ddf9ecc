from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    Table,
    bindparam,
    delete,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from entitle.db.rows import PreparedSelect
from entitle.usage.models import DistinctValue, UsageCounter, UsageRecord, WaitingUsage

_COUNTERS = cast(Table, UsageCounter.__table__)
_WAITING = cast(Table, WaitingUsage.__table__)


def insert_of(session: Session, model: Any) -> Any:
    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(model)


def lock_owner(session: Session, env_id: int, customer_ref: str) -> bool:
    """Serialize, until this transaction ends, everyone deciding where a customer's event usage goes:
    an ingestion finding no grant (the usage waits) and a grant change folding what waits must not
    interleave, or usage could wait behind a grant that already folded. A PostgreSQL advisory lock (the
    customer may not exist yet: there is no row to lock); SQLite serializes writers already (False)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    digest = hashlib.blake2b(f"usage-owner:{env_id}:{customer_ref}".encode(), digest_size=8).digest()
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int.from_bytes(digest, "big", signed=True)})
    return True


def record_by_key(session: Session, env_id: int, idempotency_key: str) -> UsageRecord | None:
    return session.scalars(
        select(UsageRecord).where(UsageRecord.environment_id == env_id, UsageRecord.idempotency_key == idempotency_key)
    ).one_or_none()


def keys_taken(session: Session, env_id: int, idempotency_keys: Sequence[str]) -> frozenset[str]:
    """Which of these idempotency keys a usage record holds already."""
    if not idempotency_keys:
        return frozenset()
    return frozenset(
        session.scalars(
            select(UsageRecord.idempotency_key).where(
                UsageRecord.environment_id == env_id, UsageRecord.idempotency_key.in_(idempotency_keys)
            )
        )
    )


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
    session.execute(insert_of(session, UsageCounter).values(**values).on_conflict_do_nothing(index_elements=keys))
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


def count_records_between(
    session: Session, customer_pk: int, feature_ref: str, resource_ref: str | None, start: datetime, end: datetime
) -> int:
    stmt = select(func.count()).where(
        UsageRecord.customer_pk == customer_pk,
        UsageRecord.feature_ref == feature_ref,
        UsageRecord.timestamp >= start,
        UsageRecord.timestamp < end,
    )
    if resource_ref is not None:
        stmt = stmt.where(UsageRecord.resource_ref == resource_ref)
    return int(session.scalar(stmt) or 0)


def insert_record_if_new(session: Session, values: dict[str, Any]) -> int | None:
    """Insert a usage record; None when its idempotency key was already used (by anyone, even a
    transaction committing concurrently: PostgreSQL waits for it, SQLite serializes writers)."""
    insert_stmt = insert_of(session, UsageRecord)
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


def locked_waiting(
    session: Session, env_id: int, customer_ref: str, resource_ref: str, feature_ref: str
) -> WaitingUsage:
    """The waiting tally of a customer id, resource and feature, created if missing, locked."""
    values: dict[str, Any] = {
        "environment_id": env_id,
        "customer_ref": customer_ref,
        "resource_ref": resource_ref,
        "feature_ref": feature_ref,
        "value": Decimal(0),
        "samples": 0,
    }
    keys = ["environment_id", "customer_ref", "resource_ref", "feature_ref"]
    waiting_written(session)
    session.execute(insert_of(session, WaitingUsage).values(**values).on_conflict_do_nothing(index_elements=keys))
    return session.scalars(
        select(WaitingUsage)
        .where(
            WaitingUsage.environment_id == env_id,
            WaitingUsage.customer_ref == customer_ref,
            WaitingUsage.resource_ref == resource_ref,
            WaitingUsage.feature_ref == feature_ref,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


# Owners (environment, customer id, resource key) this transaction found nothing waiting for: until it
# writes waiting usage itself, nothing can wait for them before it ends (`lock_owner` holds them on
# PostgreSQL; SQLite lets one writer in at a time), so looking again finds nothing.
_NOTHING_WAITS = "entitle.usage.nothing_waits"


def nothing_waits(session: Session) -> set[tuple[int, str, str]]:
    found: set[tuple[int, str, str]] = session.info.setdefault(_NOTHING_WAITS, set())
    return found


def waiting_written(session: Session) -> None:
    session.info.pop(_NOTHING_WAITS, None)


@dataclass(frozen=True, slots=True)
class WaitingRow:
    """A waiting tally as a fold reads it (the fold deletes it by its key, never writes it back)."""

    pk: int
    feature_ref: str
    value: Decimal
    samples: int | None
    total: Decimal | None


# Every change of a customer's entitlements asks (a new customer's first subscription too), and almost
# always finds nothing: sent prepared (`db.rows.PreparedSelect`), its few columns read as plain rows. The
# ORM's loading of the same statement, even of no row, cost several times the query itself.
_WAITING_OF = PreparedSelect(
    select(_WAITING.c.pk, _WAITING.c.feature_ref, _WAITING.c.value, _WAITING.c.samples, _WAITING.c.total)
    .where(
        _WAITING.c.environment_id == bindparam("env_id"),
        _WAITING.c.customer_ref == bindparam("customer_ref"),
        _WAITING.c.resource_ref == bindparam("resource_ref"),
    )
    .order_by(_WAITING.c.feature_ref)
    .with_for_update()
)


def waiting_of(session: Session, env_id: int, customer_ref: str, resource_ref: str) -> list[WaitingRow]:
    """What waits for a customer id and resource, locked, in a stable order (read now: a tally written
    earlier in the transaction reads as written)."""
    params = {"env_id": env_id, "customer_ref": customer_ref, "resource_ref": resource_ref}
    if session.autoflush:
        session.flush()  # as the ORM's read flushed first (the same statements, in the same order)
    return [WaitingRow(*row) for row in _WAITING_OF.all(session.connection(), params)]


def delete_waiting(session: Session, waiting_pk: int) -> None:
    session.execute(delete(DistinctValue).where(DistinctValue.waiting_pk == waiting_pk))
    session.execute(delete(WaitingUsage).where(WaitingUsage.pk == waiting_pk))


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def add_distinct(
    session: Session, values: Iterable[str], *, counter_pk: int | None = None, waiting_pk: int | None = None
) -> int:
    """Remember the distinct values of a UNIQUE meter for a counter (or a waiting tally); how many were new."""
    digests = sorted({digest(v) for v in values})
    if not digests:
        return 0
    owner = "counter_pk" if counter_pk is not None else "waiting_pk"
    rows = [{"counter_pk": counter_pk, "waiting_pk": waiting_pk, "digest": d} for d in digests]
    stmt = insert_of(session, DistinctValue).on_conflict_do_nothing(index_elements=[owner, "digest"])
    return len(list(session.scalars(stmt.returning(DistinctValue.pk), rows)))


def move_distinct(session: Session, waiting_pk: int, counter_pk: int) -> int:
    """Add a waiting tally's distinct values to a counter's; how many were new to the counter."""
    waiting = session.scalars(select(DistinctValue.digest).where(DistinctValue.waiting_pk == waiting_pk)).all()
    if not waiting:
        return 0
    rows = [{"counter_pk": counter_pk, "waiting_pk": None, "digest": d} for d in waiting]
    stmt = insert_of(session, DistinctValue).on_conflict_do_nothing(index_elements=["counter_pk", "digest"])
    return len(list(session.scalars(stmt.returning(DistinctValue.pk), rows)))


def clear_distinct(session: Session, counter_pk: int) -> None:
    session.execute(delete(DistinctValue).where(DistinctValue.counter_pk == counter_pk))
