from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

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


def insert_new(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert events of one environment with distinct idempotency keys, skipping keys already stored (by
    anyone, even a transaction committing concurrently: PostgreSQL waits for it, SQLite serializes
    writers); return the keys inserted now."""
    if not rows:
        return set()
    if session.get_bind().dialect.name == "sqlite":
        return _insert_new_sqlite(session, rows)
    # One statement whatever the batch size, its columns bound as arrays (binding each row through
    # SQLAlchemy costs more than the insert itself). ON CONFLICT waits for a concurrent insert of a key.
    columns = {name: [r[name] for r in rows] for name in _COLUMNS}
    columns["dimensions"] = [json.dumps(d) for d in columns["dimensions"]]
    return set(session.scalars(_POSTGRESQL_INSERT, columns))


def _insert_new_sqlite(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """The write transaction holds the database lock (BEGIN IMMEDIATE), so no one can store a key between
    reading which keys are taken and inserting the others. SQLite cannot answer RETURNING for an
    `executemany`, and binding each row through SQLAlchemy costs more than the insert itself: one
    statement finds the taken keys, one `executemany` of the driver stores the rest."""
    taken = set(
        session.scalars(
            _SQLITE_TAKEN, {"env": rows[0]["environment_id"], "keys": json.dumps([r["idempotency_key"] for r in rows])}
        )
    )
    new = [r for r in rows if r["idempotency_key"] not in taken]
    if new:
        session.connection().exec_driver_sql(
            _SQLITE_INSERT,
            [
                (
                    r["environment_id"],
                    r["customer_ref"],
                    r["resource_ref"],
                    r["event_name"],
                    r["idempotency_key"],
                    json.dumps(r["dimensions"]),  # as the JSON column writes it
                    _sqlite_instant(r["timestamp"]),
                    _sqlite_instant(r["created_at"]),
                    _sqlite_instant(r["updated_at"]),
                )
                for r in new
            ],
        )
    return {r["idempotency_key"] for r in new}


def _sqlite_instant(at: datetime) -> str:
    """As `UTCDateTime` stores an instant on SQLite: naive UTC, with microseconds."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
