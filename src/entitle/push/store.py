"""Queries on the push change log."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from pydantic_core import from_json, to_json
from sqlalchemy import Connection, Dialect, Table, bindparam, delete, func, literal_column, select, text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from entitle.db.rows import PreparedSelect, insert_returning_key
from entitle.db.sent import PreparedText, run_many
from entitle.push.models import KIND_ENTITLEMENTS, KIND_FEATURES, KIND_SETTINGS, KINDS, PushEvent
from entitle.push.schemas import Item

_LOG = cast(Table, PushEvent.__table__)

# One lock for every writer of the log: ids are then handed out in commit order (see models.py).
LOCK_KEY = 0x656E7469746C65  # "entitle"
CHANNEL = "entitle_push"


def lock_for_append(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    # SQLite: the write transaction already holds the database lock (BEGIN IMMEDIATE).


_NEWEST = PreparedText(text("SELECT max(id) FROM push_events"))
_APPENDED = ("environment_id", "kind", "customer_ref", "resource_ref", "data", "created_at")


def append(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert rows; their ids in the order given."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    if len(rows) > 1 and dialect.name == "sqlite":
        # SQLite cannot say which RETURNING row is which in one multi-row insert, so SQLAlchemy would send
        # one INSERT per row. The write transaction holds the database lock: the rows take the next ids,
        # in order (one statement for the batch, and one to read the last id). The driver's executemany:
        # an ingestion batch appends a row per counter it moved, and binding them through SQLAlchemy costs
        # more than the insert. Each document written by pydantic's serializer (the same JSON, compact),
        # the instant (one per commit) once by its column type: each row through the columns' own
        # processors cost about as much as the insert.
        table = cast(Table, PushEvent.__table__)
        instant = table.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
        assert instant is not None
        stamps: dict[datetime, Any] = {}
        connection = session.connection()
        run_many(
            connection,
            f"INSERT INTO push_events ({', '.join(_APPENDED)}) VALUES ({', '.join('?' for _ in _APPENDED)})",
            [
                (
                    row["environment_id"],
                    row["kind"],
                    row["customer_ref"],
                    row.get("resource_ref"),
                    to_json(row["data"]).decode(),
                    stamps[at] if (at := row["created_at"]) in stamps else stamps.setdefault(at, instant(at)),
                )
                for row in rows
            ],
        )
        last = int(_NEWEST.scalar(connection, {}) or 0)
        return list(range(last - len(rows) + 1, last + 1))
    if len(rows) == 1:
        # Sent prepared (`db.rows.insert_returning_key`): every change a transaction announces appends one
        # row, and Core's generic execution of the INSERT cost about as much CPU as the insert itself.
        return [int(insert_returning_key(session.connection(), _LOG, rows[0]))]
    # PostgreSQL: the ids are drawn first (in order: the append lock is held), then the rows inserted with
    # them as one JSON document. SQLAlchemy's bulk insert binds each row's values (its JSONB serialized
    # in Python, one by one) and sorts RETURNING rows back into order: an ingestion batch appends a row
    # per counter it moved, and that cost more than the insert.
    ids = sorted(int(i) for i in session.scalars(_DRAW_IDS, {"n": len(rows)}))
    document = [
        {
            "id": new_id,
            "e": row["environment_id"],
            "k": row["kind"],
            "c": row["customer_ref"],
            "r": row.get("resource_ref"),
            "d": row["data"],
            "t": row["created_at"],
        }
        for new_id, row in zip(ids, rows, strict=True)
    ]
    session.execute(_APPEND_MANY, {"rows": to_json(document).decode()})
    return ids


_DRAW_IDS = text("SELECT nextval(pg_get_serial_sequence('push_events', 'id')) FROM generate_series(1, :n)")
_APPEND_MANY = text(
    "INSERT INTO push_events (id, environment_id, kind, customer_ref, resource_ref, data, created_at) "
    "SELECT r.id, r.e, r.k, r.c, r.r, r.d, r.t FROM json_to_recordset(CAST(:rows AS json)) "
    "AS r(id bigint, e bigint, k text, c text, r text, d jsonb, t timestamptz)"
)


def notify(session: Session, payloads: Iterable[str]) -> None:
    """PostgreSQL delivers these to every listener when the transaction commits (never before)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for payload in payloads:
        session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})


_AFTER = text(
    "SELECT id, environment_id, kind, customer_ref, data, created_at FROM push_events "
    "WHERE id > :after ORDER BY id LIMIT :limit"
)


def after(connection: Connection, after_id: int, limit: int) -> list[Item]:
    """Every environment's events with a larger id, oldest first.

    Plain rows, each value as its column's type reads it (the items equal those read through the ORM):
    the hub reads every row each process's writes append, and loading them as ORM objects to copy them
    out cost it more than the query. The instant once per commit (one per ingestion batch); SQLite's
    documents (JSON objects, as `append` writes them) by pydantic's parser: a quarter of the json
    module's cost.
    """
    dialect = connection.dialect
    table = cast(Table, PushEvent.__table__)
    document: Callable[[Any], dict[str, Any]] = (
        from_json if dialect.name == "sqlite" else _reader(table.c.data.type, dialect)
    )
    instant: Callable[[Any], datetime] = _reader(table.c.created_at.type, dialect)
    instants: dict[Any, datetime] = {}
    return [
        Item(
            id=row_id,
            environment_id=env_id,
            kind=kind,
            customer_ref=customer_ref,
            data=document(data),
            created_at=instants[at] if at in instants else instants.setdefault(at, instant(at)),
        )
        for row_id, env_id, kind, customer_ref, data, at in connection.execute(
            _AFTER, {"after": after_id, "limit": limit}
        ).all()
    ]


def _unchanged(value: Any) -> Any:
    return value


def _reader(column_type: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any]:
    """What the column's type does to a value the driver read (nothing, when the driver did it all)."""
    return column_type.dialect_impl(dialect).result_processor(dialect, None) or _unchanged


def of_environment_after(
    session: Session, env_id: int, after_id: int, customers: Sequence[str] | None, limit: int
) -> list[PushEvent]:
    stmt = select(PushEvent).where(
        PushEvent.environment_id == env_id, PushEvent.id > after_id, PushEvent.kind.in_(KINDS)
    )
    if customers:
        stmt = stmt.where(PushEvent.customer_ref.in_(list(customers)))
    return list(session.scalars(stmt.order_by(PushEvent.id).limit(limit)))


def bounds(session: Session) -> tuple[int | None, int | None]:
    """Smallest and largest retained id (None, None when the log is empty)."""
    low, high = session.execute(select(func.min(PushEvent.id), func.max(PushEvent.id))).one()
    return (None if low is None else int(low)), (None if high is None else int(high))


def delete_older_than(session: Session, cutoff: datetime, limit: int, *, streamed: bool = True) -> int:
    """Delete up to `limit` of the oldest rows created before `cutoff` (of the kinds streams send, or
    of the servers' internal notices), always keeping the newest row (it is what tells a reconnecting
    client whether its Last-Event-ID is still in the window)."""
    newest = select(func.max(PushEvent.id)).scalar_subquery()
    kind = PushEvent.kind.in_(KINDS) if streamed else PushEvent.kind.not_in(KINDS)
    victims = (
        select(PushEvent.id)
        .where(PushEvent.created_at < cutoff, PushEvent.id < newest, kind)
        .order_by(PushEvent.created_at)
        .limit(limit)
    )
    result = session.execute(delete(PushEvent).where(PushEvent.id.in_(victims)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# Asked by every ingestion batch (the `grant_changes` port): written once, not built and compiled per call.
# Read by every ingestion batch (with the two below): sent prepared, the driver's rows (`entitle.db.sent`).
_NEWEST_OF_ENVIRONMENT = PreparedText(text("SELECT max(id) FROM push_events WHERE environment_id = :env"))
_CHANGED_SINCE = PreparedText(
    text(
        "SELECT kind, customer_ref FROM push_events WHERE environment_id = :env AND id > :mark "
        f"AND kind IN ('{KIND_ENTITLEMENTS}', '{KIND_FEATURES}')"
    )
)
# The customers bound as one JSON array (an IN list of bound parameters is compiled anew for each length).
_UNCHANGED_SINCE = {
    dialect: PreparedText(
        text(
            "SELECT id FROM push_events WHERE environment_id = :env AND id > :mark "
            f"AND (kind = '{KIND_FEATURES}' OR (kind = '{KIND_ENTITLEMENTS}' AND customer_ref IN ({customers}))) "
            "LIMIT 1"
        )
    )
    for dialect, customers in (
        ("sqlite", "SELECT value FROM json_each(:refs)"),
        ("postgresql", "SELECT json_array_elements_text(CAST(:refs AS json))"),
    )
}


# Read by every write transaction that trusts what its environment lacks: sent prepared
# (`db.rows.PreparedSelect`), Core's generic execution of it cost about as much CPU as the query.
_SETTINGS_CHANGED_AFTER = PreparedSelect(
    select(_LOG.c.id)
    .where(
        _LOG.c.environment_id == bindparam("env"),
        _LOG.c.id > bindparam("mark"),
        _LOG.c.kind == literal_column(f"'{KIND_SETTINGS}'"),
    )
    .limit(1)
)


def settings_changed_after(session: Session, env_id: int, mark: int) -> bool:
    """A `settings.changed` row of the environment above `mark` (`entitle.environments.facts`): walks the
    environment's ids after the mark, those the hub has not read yet."""
    # On the session's connection: a plain read needs none of the ORM's statement handling.
    return _SETTINGS_CHANGED_AFTER.first(session.connection(), {"env": env_id, "mark": mark}) is not None


def newest_of_environment(session: Session, env_id: int) -> int:
    """The environment's largest id (0: none). Ids follow commit order: a change committed after this
    read gets a larger one."""
    return int(_NEWEST_OF_ENVIRONMENT.scalar(session.connection(), {"env": env_id}) or 0)


def grants_unchanged_since(session: Session, env_id: int, mark: int, customer_refs: Collection[str]) -> bool:
    """No entitlement change of these customers, nor any feature change of the environment, after `mark`
    (`newest_of_environment`). Walks the environment's ids after the mark: those of the moment since."""
    changed = _UNCHANGED_SINCE[session.get_bind().dialect.name]
    refs = to_json(sorted(customer_refs)).decode()
    return changed.first(session.connection(), {"env": env_id, "mark": mark, "refs": refs}) is None


def grants_changed_since(session: Session, env_id: int, mark: int) -> frozenset[str] | None:
    """The customers with an entitlement change after `mark` (`newest_of_environment`); None when a
    feature of the environment changed too. Walks the environment's ids after the mark."""
    customers: set[str] = set()
    for kind, customer_ref in _CHANGED_SINCE.all(session.connection(), {"env": env_id, "mark": mark}):
        if kind == KIND_FEATURES:
            return None
        customers.add(customer_ref)
    return frozenset(customers)
