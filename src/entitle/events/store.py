from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import text
from sqlalchemy.orm import Session

from entitle.events.ingested import NewEvent

_COLUMNS = (
    "environment_id",
    "customer_ref",
    "resource_ref",
    "event_name",
    "idempotency_key",
    "dimensions",
    "timestamp",
    "created_at",
    "updated_at",
)
_SQLITE_INSERT = f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
_POSTGRESQL_TYPES = ("bigint", "text", "text", "text", "text", "jsonb", "timestamptz", "timestamptz", "timestamptz")
_POSTGRESQL_INSERT = text(
    f"INSERT INTO events ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in zip(_COLUMNS, _POSTGRESQL_TYPES, strict=True))
    + ") ON CONFLICT (environment_id, idempotency_key) DO NOTHING RETURNING idempotency_key"
)
_SQLITE_TAKEN = text(
    "SELECT idempotency_key FROM events WHERE environment_id = :env "
    "AND idempotency_key IN (SELECT value FROM json_each(:keys))"
)


class Rows:
    """A batch's rows in the shape its driver binds them (timestamps and JSON already written), made
    before the write transaction: on SQLite that transaction holds the database's write lock, and
    formatting 1,000 rows costs more than storing them."""

    def __init__(self, dialect: str, env_id: int, now: datetime, keys: list[str], events: Sequence[NewEvent]) -> None:
        self.sqlite = dialect == "sqlite"
        self.keys = keys
        self.env_id = env_id
        # pydantic's serializer writes the same JSON as `json.dumps` (compact) several times faster.
        dimensions = [to_json(e.dimensions).decode() for e in events]
        if self.sqlite:
            instant = _sqlite_instants()
            stamp = instant(now)
            self.bound: Any = [
                (env_id, e.customer_ref, e.resource_ref, e.event_name, key, dims, instant(e.timestamp), stamp, stamp)
                for key, e, dims in zip(keys, events, dimensions, strict=True)
            ]
        else:
            self.bound = {
                "environment_id": [env_id] * len(keys),
                "customer_ref": [e.customer_ref for e in events],
                "resource_ref": [e.resource_ref for e in events],
                "event_name": [e.event_name for e in events],
                "idempotency_key": keys,
                "dimensions": dimensions,
                "timestamp": [e.timestamp for e in events],
                "created_at": [now] * len(keys),
                "updated_at": [now] * len(keys),
            }


def insert_new(session: Session, rows: Rows) -> set[str]:
    """Insert events of one environment with distinct idempotency keys, skipping keys already stored (by
    anyone, even a transaction committing concurrently: PostgreSQL waits for it, SQLite serializes
    writers); return the keys inserted now."""
    if not rows.keys:
        return set()
    if rows.sqlite:
        return _insert_new_sqlite(session, rows)
    # One statement whatever the batch size, its columns bound as arrays (binding each row through
    # SQLAlchemy costs more than the insert itself). ON CONFLICT waits for a concurrent insert of a key.
    return set(session.scalars(_POSTGRESQL_INSERT, rows.bound))


def _insert_new_sqlite(session: Session, rows: Rows) -> set[str]:
    """The write transaction holds the database lock (BEGIN IMMEDIATE), so no one can store a key between
    reading which keys are taken and inserting the others. SQLite cannot answer RETURNING for an
    `executemany`, and binding each row through SQLAlchemy costs more than the insert itself: one
    statement finds the taken keys, one `executemany` of the driver stores the rest."""
    taken = set(session.scalars(_SQLITE_TAKEN, {"env": rows.env_id, "keys": json.dumps(rows.keys)}))
    new = rows.bound if not taken else [r for r in rows.bound if r[_KEY] not in taken]
    if new:
        session.connection().exec_driver_sql(_SQLITE_INSERT, new)
    return {r[_KEY] for r in new}


_KEY = _COLUMNS.index("idempotency_key")


def _sqlite_instants() -> Callable[[datetime], str]:
    """As `UTCDateTime` stores an instant on SQLite: naive UTC, with microseconds. A batch repeats its
    instants (created_at, updated_at, events without a timestamp): each is written once."""
    written: dict[datetime, str] = {}

    def instant(at: datetime) -> str:
        text = written.get(at)
        if text is None:
            text = written[at] = at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return text

    return instant
