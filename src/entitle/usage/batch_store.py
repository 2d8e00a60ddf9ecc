"""Usage storage for a whole ingestion batch at once: a fixed number of statements however many customers
and counters it touches (the owners locked, the counters and waiting usage read and locked, UNIQUE
values added, the tallies written back). The one-row-at-a-time reads and writes are `usage.store`'s."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from pydantic_core import to_json
from sqlalchemy import (
    Dialect,
    Integer,
    Table,
    TextClause,
    TextualSelect,
    column,
    text,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from entitle.clock import utcnow
from entitle.db.sent import fetch_all, run_many
from entitle.usage.models import UsageCounter, WaitingUsage
from entitle.usage.store import digest, insert_of, waiting_written

_COUNTERS = cast(Table, UsageCounter.__table__)
_WAITING = cast(Table, WaitingUsage.__table__)

CounterKey = tuple[int, str, str, datetime]  # customer pk, feature, resource key, window start
WaitingKey = tuple[str, str, str]  # customer id, resource key, feature


def lock_owners(session: Session, env_id: int, customer_refs: Iterable[str]) -> bool:
    """`lock_owner` for several customer ids in one statement, in a fixed order (two batches locking
    overlapping owners cannot deadlock)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    keys = sorted(
        {
            int.from_bytes(
                hashlib.blake2b(f"usage-owner:{env_id}:{ref}".encode(), digest_size=8).digest(), "big", signed=True
            )
            for ref in customer_refs
        }
    )
    if keys:
        # unnest yields the array in order, so the locks are taken in that order.
        session.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"), {"keys": keys}
        )
    return True


@dataclass
class TallyRow:
    """A locked counter or waiting tally as a batch reads and writes it: its key's row, without the ORM
    (loading 100 rows as entities costs more than the statements themselves)."""

    pk: int
    value: Decimal
    samples: int | None
    total: Decimal | None


def _locked_tallies(
    session: Session,
    table: Table,
    key_columns: tuple[str, ...],
    wanted: list[tuple[Any, ...]],
    *,
    unique: list[str],
    defaults: dict[str, Any],
    env_id: int | None = None,
) -> dict[tuple[Any, ...], TallyRow]:
    """The rows of `table` whose `key_columns` are each of `wanted` (sorted, distinct), locked for this
    transaction: those found in primary-key order, then those missing inserted with `defaults` (a row a
    transaction inserts is its own until it ends). A batch mostly finds its rows: one statement then."""
    found = _select_tallies(session, table, key_columns, wanted, env_id)
    missing = [key for key in wanted if key not in found]
    if missing:
        c = table.c
        width = len(key_columns)
        rows = [{**defaults, **dict(zip(key_columns, key, strict=True))} for key in missing]
        stmt = (
            insert_of(session, table)
            .on_conflict_do_nothing(index_elements=unique)
            .returning(*(c[name] for name in key_columns), c.pk, c.value, c.samples, c.total)
        )
        for row in session.execute(stmt, rows):
            found[tuple(row[:width])] = TallyRow(*row[width:])
        # PostgreSQL: another transaction inserted these meanwhile (ON CONFLICT waited for it to end).
        raced = [key for key in missing if key not in found]
        if raced:
            found.update(_select_tallies(session, table, key_columns, raced, env_id))
    return found


def _select_tallies(
    session: Session, table: Table, key_columns: tuple[str, ...], wanted: list[tuple[Any, ...]], env_id: int | None
) -> dict[tuple[Any, ...], TallyRow]:
    """The rows of these keys, locked, in primary-key order. The keys are joined as one bound document
    (SQLite: JSON; PostgreSQL: one array per column), each key an index lookup: SQLite answers a row
    value `IN (VALUES ..)` by scanning the whole table, and binding hundreds of keys through SQLAlchemy
    costs more than the lookups."""
    dialect = session.get_bind().dialect
    stmt = _tallies_statement(dialect.name, table, key_columns, scoped=env_id is not None)
    bound: dict[str, Any] = {} if env_id is None else {"env": env_id}
    if dialect.name == "sqlite":
        bound["keys"] = _sqlite_keys(dialect, table, key_columns, wanted)
    else:
        keyed = [{**dict(zip(key_columns, key, strict=True)), "position": n} for n, key in enumerate(wanted)]
        bound["keys"] = to_json(keyed).decode()
    # Each row names its key by its position in `wanted`: reading the key's columns back (an instant
    # parsed from its text on SQLite) cost more than the lookups.
    if dialect.name == "sqlite":
        # The driver's rows, each number read as `ExactDecimal` reads its text: a batch's hundred rows
        # through SQLAlchemy's typed result cost about as much as the lookups (in the write lock).
        rows = fetch_all(session.connection(), _sql_of(stmt), bound)
        return {
            wanted[position]: TallyRow(pk, _exact(value), samples, None if total is None else _exact(total))
            for position, pk, value, samples, total in rows
        }
    return {wanted[position]: TallyRow(*row) for position, *row in session.execute(stmt, bound)}


# Each key's JSON as `_sqlite_keys` writes it, per table, across batches: a customer's next batch mostly
# moves the same counters (the same features and windows). A key's text depends on the key alone.
# Bounded: forgotten wholesale when full.
_KEY_TEXTS: dict[tuple[str, tuple[Any, ...]], str] = {}
_KEY_TEXTS_HELD = 50_000


def _sqlite_keys(dialect: Dialect, table: Table, key_columns: tuple[str, ...], wanted: list[tuple[Any, ...]]) -> str:
    """The keys as one JSON array of arrays, each value as its column type writes it for SQLite (an
    instant: its exact text)."""
    texts = _KEY_TEXTS
    if len(texts) > _KEY_TEXTS_HELD:
        texts.clear()
    name = table.name
    written: list[Callable[[Any], Any] | None] | None = None
    parts = []
    for key in wanted:
        # One lookup (`get`, never `in` then `[]`): batches of other threads may empty the dictionary.
        text_ = texts.get((name, key))
        if text_ is None:
            if written is None:
                processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in key_columns]
                # A batch's new keys repeat their values (a few windows, a few features): each written once.
                written = [_remembered(p) if p else None for p in processors]
            text_ = texts[(name, key)] = json.dumps([w(v) if w else v for w, v in zip(written, key, strict=True)])
        parts.append(text_)
    return f"[{','.join(parts)}]"


def _exact(stored: Any) -> Decimal:
    return Decimal(str(stored)).normalize()


_SQL_OF: dict[TextClause | TextualSelect, str] = {}


def _sql_of(stmt: TextClause | TextualSelect) -> str:
    """A textual statement's SQL, written once (its `:name` parameters are the driver's too)."""
    sql = _SQL_OF.get(stmt)
    if sql is None:
        sql = _SQL_OF[stmt] = str(stmt)
    return sql


def _remembered(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    done: dict[Any, Any] = {}

    def written(value: Any) -> Any:
        try:
            return done[value]
        except KeyError:
            result = done[value] = process(value)
            return result

    return written


_TALLY_STATEMENTS: dict[tuple[str, str, tuple[str, ...], bool], TextualSelect] = {}
_KEY_TYPES = {"customer_pk": "bigint", "window_start": "timestamptz"}


def _tallies_statement(dialect: str, table: Table, key_columns: tuple[str, ...], *, scoped: bool) -> TextualSelect:
    cache_key = (dialect, table.name, key_columns, scoped)
    found = _TALLY_STATEMENTS.get(cache_key)
    if found is not None:
        return found
    selected = ["pk", "value", "samples", "total"]
    columns = ", ".join(f"t.{name}" for name in selected)
    if dialect == "sqlite":
        # CROSS JOIN keeps SQLite's planner from reordering: the keys drive, each one an index lookup.
        on = " AND ".join(f"t.{name} = json_extract(k.value, '$[{n}]')" for n, name in enumerate(key_columns))
        sql = f"SELECT k.key AS position, {columns} FROM json_each(:keys) AS k CROSS JOIN {table.name} AS t ON {on}"
        lock = ""
    else:
        # One JSON document rather than an array per column: psycopg writes arrays in Python, escaping each
        # element with a regular expression.
        record = ", ".join(f"{name} {_KEY_TYPES.get(name, 'text')}" for name in key_columns)
        on = " AND ".join(f"t.{name} = k.{name}" for name in key_columns)
        keys = f"json_to_recordset(CAST(:keys AS json)) AS k({record}, position bigint)"
        sql = f"SELECT k.position, {columns} FROM {keys} JOIN {table.name} AS t ON {on}"
        lock = " FOR UPDATE OF t"
    if scoped:
        sql += " WHERE t.environment_id = :env"
    stmt = text(sql + " ORDER BY t.pk" + lock).columns(
        column("position", Integer), *(table.c[name] for name in selected)
    )
    _TALLY_STATEMENTS[cache_key] = stmt
    return stmt


def locked_counters(session: Session, env_id: int, keys: Iterable[CounterKey]) -> dict[CounterKey, TallyRow]:
    """The counter rows of these keys, created where missing, locked for this transaction (in key order)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    key_columns = ("customer_pk", "feature_ref", "resource_ref", "window_start")
    return _locked_tallies(
        session,
        _COUNTERS,
        key_columns,
        list(wanted),
        unique=list(key_columns),
        defaults={"environment_id": env_id, "value": Decimal(0), "samples": 0},
    )


def locked_waitings(session: Session, env_id: int, keys: Iterable[WaitingKey]) -> dict[WaitingKey, TallyRow]:
    """The waiting tallies of these keys, created where missing, locked for this transaction."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    waiting_written(session)
    key_columns = ("customer_ref", "resource_ref", "feature_ref")
    return _locked_tallies(
        session,
        _WAITING,
        key_columns,
        list(wanted),
        unique=["environment_id", *key_columns],
        defaults={"environment_id": env_id, "value": Decimal(0), "samples": 0},
        env_id=env_id,
    )


# The pairs of a batch bound as one parameter each side, not as a row of parameters per pair: binding
# hundreds of rows through SQLAlchemy costs more than the insert. `WHERE true` tells SQLite's parser the
# ON CONFLICT belongs to the INSERT, not to a join.
_ADD_DISTINCT = {
    (dialect, owner): text(
        f"INSERT INTO usage_distinct_values ({owner}, digest) "
        + (
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:pairs) WHERE true"
            if dialect == "sqlite"
            else "SELECT CAST(p->>0 AS bigint), p->>1 FROM json_array_elements(CAST(:pairs AS json)) AS p"
        )
        + f" ON CONFLICT DO NOTHING RETURNING {owner}"
    )
    for dialect in ("sqlite", "postgresql")
    for owner in ("counter_pk", "waiting_pk")
}


# The digests of distinct values hashed lately, across batches: batches repeat their values (the same
# users, the same models), within one and from one to the next. Bounded: forgotten wholesale when full.
_DIGESTS: dict[str, str] = {}
_DIGESTS_HELD = 10_000


def digests_of(values: Iterable[str]) -> list[str]:
    """The digests of these values, sorted and distinct (as `usage_distinct_values` holds them)."""
    digests = _DIGESTS
    if len(digests) > _DIGESTS_HELD:
        digests.clear()
    # One lookup per value (`get`, never `in` then `[]`): batches prepare concurrently, and another may
    # empty the dictionary between the two.
    found: set[str] = set()
    for value in values:
        known = digests.get(value)
        if known is None:
            known = digests[value] = digest(value)
        found.add(known)
    return sorted(found)


def add_distinct_many(session: Session, values: Iterable[tuple[int, str]], *, owner: str) -> dict[int, int]:
    """Remember distinct values of UNIQUE meters, given as (owner pk, value) with `owner` "counter_pk" or
    "waiting_pk"; how many were new per owner (a value already stored for that owner adds nothing)."""
    by_owner: dict[int, list[str]] = {}
    for pk, value in values:
        by_owner.setdefault(pk, []).append(value)
    return add_digests(session, [(pk, digests_of(found)) for pk, found in by_owner.items()], owner=owner)


def add_digests(session: Session, digests: Iterable[tuple[int, list[str]]], *, owner: str) -> dict[int, int]:
    """`add_distinct_many` for values already digested (`digests_of`: sorted and distinct), per owner pk."""
    pairs = [(pk, d) for pk, found in sorted(digests, key=lambda owned: owned[0]) for d in found]
    if not pairs:
        return {}
    dialect = session.get_bind().dialect.name
    # One JSON document on both: psycopg writes arrays in Python, escaping each element with a regular expression.
    bound = {"pairs": to_json(pairs).decode()}
    stmt = _ADD_DISTINCT[(dialect, owner)]
    if dialect == "sqlite":  # the driver's rows: one per value new to its owner
        inserted = [pk for (pk,) in fetch_all(session.connection(), _sql_of(stmt), bound)]
    else:
        inserted = list(session.scalars(stmt, bound))
    added: dict[int, int] = {}
    for pk in inserted:
        added[pk] = added.get(pk, 0) + 1
    return added


_POSTGRESQL_SAVE = {
    name: text(
        f"UPDATE {name} AS t SET value = r.value, samples = r.samples, total = r.total, updated_at = :now "
        "FROM json_to_recordset(CAST(:rows AS json)) AS r(pk bigint, value numeric, samples bigint, total numeric) "
        "WHERE t.pk = r.pk"
    )
    for name in (_COUNTERS.name, _WAITING.name)
}


def _text(number: Decimal | None) -> str | None:
    return None if number is None else str(number)


def save_tallies(session: Session, model: type[UsageCounter | WaitingUsage], rows: Sequence[TallyRow]) -> None:
    """Write the tallies (value, samples, total) of locked rows in one statement. A row this session
    also holds as an entity shows the new tally."""
    if not rows:
        return
    now = utcnow()
    table = cast(Table, model.__table__)
    dialect = session.get_bind().dialect
    if dialect.name == "sqlite":
        # The driver's executemany, each value written as its column type writes it: binding a hundred
        # rows through SQLAlchemy costs more than the update (and this runs holding the write lock).
        c = table.c
        number, instant = (
            c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in ("value", "updated_at")
        )
        assert number is not None and instant is not None
        stamp = instant(now)
        run_many(
            session.connection(),
            f"UPDATE {table.name} SET value = ?, samples = ?, total = ?, updated_at = ? WHERE pk = ?",
            [(number(r.value), r.samples, number(r.total), stamp, r.pk) for r in rows],
        )
    else:
        # One statement and one round trip, the rows as one JSON document (numbers as exact decimal text).
        document = [{"pk": r.pk, "value": str(r.value), "samples": r.samples, "total": _text(r.total)} for r in rows]
        session.execute(_POSTGRESQL_SAVE[table.name], {"rows": to_json(document).decode(), "now": now})
    held = {entity.pk: entity for entity in session.identity_map.values() if isinstance(entity, model)}
    for row in rows if held else ():
        loaded = held.get(row.pk)
        if loaded is not None:
            set_committed_value(loaded, "value", row.value)
            set_committed_value(loaded, "samples", row.samples)
            set_committed_value(loaded, "total", row.total)
            set_committed_value(loaded, "updated_at", now)
