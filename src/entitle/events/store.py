from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from itertools import chain
from typing import Any

from pydantic_core import to_json
from sqlalchemy import text
from sqlalchemy.orm import Session

from entitle.db.sent import fetch_all, run
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
# The batch bound as one JSON document that PostgreSQL reads row by row (`json_to_recordset`, in the
# document's order): psycopg writes a Python list as an array literal in Python, escaping every element
# with a regular expression, which cost several times the insert itself for a batch of 1,000 events.
_POSTGRESQL_INSERT = text(
    f"INSERT INTO events ({', '.join(_COLUMNS)}) "
    "SELECT CAST(:env AS bigint), r.c, r.r, r.n, r.k, r.d, r.t, CAST(:now AS timestamptz), CAST(:now AS timestamptz) "
    "FROM json_to_recordset(CAST(:rows AS json)) AS r(c text, r text, n text, k text, d jsonb, t timestamptz) "
    "ON CONFLICT (environment_id, idempotency_key) DO NOTHING RETURNING idempotency_key"
)
# For keys found free before the transaction: one stored meanwhile is skipped (ON CONFLICT DO NOTHING), and
# the count of rows inserted tells that one was. The rows the statements inserted are then the table's last
# ones: the write transaction holds the lock, and SQLite gives a new row the rowid after the table's largest
# (a row skipped takes none).
_SQLITE_LAST_INSERTED = text("SELECT idempotency_key FROM events ORDER BY pk DESC LIMIT :inserted")
# The keys probed one by one in the unique index, in their (sorted) order: CROSS JOIN keeps `json_each`
# the outer loop (left to choose, the planner may scan the table once per key). ~30% less CPU than
# `IN (SELECT value FROM json_each(?))`, which first builds a temporary index of the keys.
_SQLITE_TAKEN = (
    "SELECT e.idempotency_key FROM json_each(?) AS j CROSS JOIN events AS e "
    "ON e.environment_id = ? AND e.idempotency_key = j.value"
)


# Rows per multi-row INSERT on SQLite. One statement of many rows costs about a quarter less CPU than the
# driver's `executemany` of as many one-row statements (~3.6 against ~4.9 ms per 1,000 rows of the real
# table), and gives the GIL up once rather than once per row (each time, the holder of the write lock
# may wait for another thread to hand it back). Preparing a statement of n rows costs ~1.5 us per row, so
# only these sizes are sent (each prepared once per connection, then found in the driver's statement
# cache); a batch fills the smallest that holds it with copies of its last row, which its ON CONFLICT DO
# NOTHING drops (a copy conflicts with the row, inserted or stored).
_SIZES = (1000, 667, 444, 296, 198, 132, 88, 59, 39, 26, 17, 12, 8, 5, 3, 2, 1)


def sizes_within(variables: int) -> tuple[int, ...]:
    """`_SIZES` whose statements bind at most `variables` parameters."""
    return tuple(size for size in _SIZES if size * len(_COLUMNS) <= variables)


@cache
def _sizes() -> tuple[int, ...]:
    """`_SIZES` within the SQLite library's limit of bound variables (32,766 by default since 3.32, 999
    before)."""
    probe = sqlite3.connect(":memory:")
    try:
        return sizes_within(probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    finally:
        probe.close()


@cache
def _sqlite_insert_of(size: int) -> str:
    values = ", ".join([f"({', '.join('?' for _ in _COLUMNS)})"] * size)
    conflict = "ON CONFLICT (environment_id, idempotency_key) DO NOTHING"
    return f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES {values} {conflict}"


def _sqlite_statements(bound: list[tuple[Any, ...]]) -> list[tuple[str, tuple[Any, ...]]]:
    """The rows as multi-row inserts of `_sizes()` rows (the last one padded), each with its parameters."""
    sizes = _sizes()
    largest = sizes[0]
    statements = []
    for start in range(0, len(bound), largest):
        chunk = bound[start : start + largest]
        size = min(size for size in sizes if size >= len(chunk))
        padded = chunk + [chunk[-1]] * (size - len(chunk))
        statements.append((_sqlite_insert_of(size), tuple(chain.from_iterable(padded))))
    return statements


def taken_keys(session: Session, env_id: int, keys: list[str]) -> set[str]:
    """Which of these idempotency keys an event of the environment holds (SQLite). Sent to the driver as
    it is: the ORM's statement handling and row processing cost a third of the lookup itself. Sorted:
    the index is probed in its order (the pages just read are read again). pydantic's serializer writes
    the keys' JSON (read by `json_each` as `json.dumps`'s) in half the time."""
    if not keys:
        return set()
    found = fetch_all(session.connection(), _SQLITE_TAKEN, (to_json(sorted(keys)).decode(), env_id))
    return {key for (key,) in found}


class Rows:
    """A batch's rows in the shape its driver binds them (timestamps and JSON already written), made
    before the write transaction: on SQLite that transaction holds the database's write lock, and
    formatting 1,000 rows costs more than storing them. `free`: the keys were found free before the
    transaction (SQLite), so it need not look them up (`insert_new`)."""

    def __init__(
        self,
        dialect: str,
        env_id: int,
        now: datetime,
        keys: list[str],
        events: Sequence[NewEvent],
        *,
        free: bool = False,
    ) -> None:
        self.sqlite = dialect == "sqlite"
        self.keys = keys
        self.events = list(events)
        self.env_id = env_id
        self.free = free and self.sqlite
        if self.sqlite:
            # pydantic's serializer writes the same JSON as `json.dumps` (compact) several times faster.
            dimensions = [to_json(e.dimensions).decode() for e in events]
            instant = _sqlite_instants()
            stamp = instant(now)
            # Most events have no instant of their own: theirs is `now` itself, written once.
            self.bound: Any = [
                (
                    env_id,
                    e.customer_ref,
                    e.resource_ref,
                    e.event_name,
                    key,
                    dims,
                    stamp if (at := e.timestamp) is now else instant(at),
                    stamp,
                    stamp,
                )
                for key, e, dims in zip(keys, events, dimensions, strict=True)
            ]
            # Flattened here too, not holding the write lock.
            self.statements = _sqlite_statements(self.bound) if self.free else []
        else:
            # pydantic's serializer writes the document in one pass (instants as ISO 8601 with their offset).
            self.bound = {
                "env": env_id,
                "now": now,
                "rows": to_json(
                    [
                        {
                            "c": e.customer_ref,
                            "r": e.resource_ref,
                            "n": e.event_name,
                            "k": key,
                            "d": e.dimensions,
                            "t": e.timestamp,
                        }
                        for key, e in zip(keys, events, strict=True)
                    ]
                ).decode(),
            }


def insert_new(session: Session, rows: Rows) -> set[str]:
    """Insert events of one environment with distinct idempotency keys, skipping keys already stored (by
    anyone, even a transaction committing concurrently: PostgreSQL waits for it, SQLite serializes
    writers); return the keys inserted now."""
    if not rows.keys:
        return set()
    if rows.sqlite:
        return _insert_new_sqlite(session, rows)
    # One statement whatever the batch size, the rows bound as one document (binding each row through
    # SQLAlchemy costs more than the insert itself). ON CONFLICT waits for a concurrent insert of a key.
    return set(session.scalars(_POSTGRESQL_INSERT, rows.bound))


def _insert_new_sqlite(session: Session, rows: Rows) -> set[str]:
    """The write transaction holds the database lock (BEGIN IMMEDIATE), so no one can store a key between
    reading which keys are taken and inserting the others. Binding each row through SQLAlchemy costs
    more than the insert itself: the driver's multi-row inserts (`_sqlite_statements`)."""
    connection = session.connection()
    if rows.free:  # looked up before the transaction: inserted as they are, unless stored meanwhile
        inserted = sum(run(connection, sql, bound) for sql, bound in rows.statements)
        if inserted == len(rows.bound):
            return set(rows.keys)
        return set(session.scalars(_SQLITE_LAST_INSERTED, {"inserted": inserted})) if inserted else set()
    taken = taken_keys(session, rows.env_id, rows.keys)
    new = rows.bound if not taken else [r for r in rows.bound if r[_KEY] not in taken]
    for sql, bound in _sqlite_statements(new) if new else ():
        run(connection, sql, bound)
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
