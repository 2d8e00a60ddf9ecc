"""Fixed textual statements of a hot path sent on the driver's cursor, as `entitle.db.rows` sends its own.

`connection.exec_driver_sql(sql, params)` builds an execution context and a result object around the
driver's execute, and `session.scalar(text(..))` adds the ORM's statement handling and Core's compiled
cache on top: on SQLite that machinery costs about as much CPU again as the driver's query for the short
lookups an ingestion batch sends (the keys already stored, the change log's mark, the credit-priced
features, the counters it locks). `PreparedText` sends such a statement through `rows._executed` (the
engine's cursor events see it as before, its echo, a driver error raised as SQLAlchemy's) and answers
the driver's own rows (tuples of the values the driver read: no column type's result processor runs, so
only for statements whose columns the driver reads as the caller wants them, or the caller converts
them). A connection outside a transaction is left to `exec_driver_sql`, which begins it.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, TextClause

from entitle.db.rows import _executed, _executed_many, _read


class PreparedText:
    """A `text(..)` statement (its parameters untyped: bound as given), compiled once per dialect."""

    def __init__(self, statement: TextClause) -> None:
        self.statement = statement
        self._compiled: weakref.WeakKeyDictionary[Dialect, tuple[str, tuple[str, ...] | None]] = (
            weakref.WeakKeyDictionary()
        )

    def _sql(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
        """The dialect's SQL, and its parameters' names in order when it binds them by position."""
        found = self._compiled.get(dialect)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            found = self._compiled[dialect] = (
                compiled.string,
                tuple(compiled.positiontup or ()) if compiled.positional else None,
            )
        return found

    def _bound(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, Sequence[Any] | Mapping[str, Any]]:
        sql, order = self._sql(dialect)
        return sql, (params if order is None else tuple(params[name] for name in order))

    def all(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row, as the driver answers it."""
        return fetch_all(connection, *self._bound(connection.dialect, params))

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """The first row (None: none), as the driver answers it."""
        sql, bound = self._bound(connection.dialect, params)
        if not connection.in_transaction():
            return connection.exec_driver_sql(sql, bound).first()
        cursor = _executed(connection, sql, bound)
        try:
            return _read(connection, sql, bound, cursor, cursor.fetchone)
        finally:
            cursor.close()

    def scalar(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row (None: no row)."""
        row = self.first(connection, params)
        return None if row is None else row[0]


def fetch_all(connection: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
    """`connection.exec_driver_sql(sql, params).fetchall()` (`sql` in the driver's own parameter style),
    sent on the driver's cursor in an open transaction: the driver's rows."""
    if not connection.in_transaction():
        return list(connection.exec_driver_sql(sql, params).fetchall())
    cursor = _executed(connection, sql, params)
    try:
        rows: list[Any] = _read(connection, sql, params, cursor, cursor.fetchall)
        return rows
    finally:
        cursor.close()


def run(connection: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> int:
    """`connection.exec_driver_sql(sql, params).rowcount` for a statement answering no rows, sent on the
    driver's cursor in an open transaction."""
    if not connection.in_transaction():
        return int(connection.exec_driver_sql(sql, params).rowcount)
    cursor = _executed(connection, sql, params)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


def run_many(connection: Connection, sql: str, rows: list[Any]) -> None:
    """`connection.exec_driver_sql(sql, rows)` for several rows (an executemany), sent on the driver's
    cursor in an open transaction."""
    if not connection.in_transaction() or len(rows) < 2:  # one row: Core sends it as an execute
        connection.exec_driver_sql(sql, rows)
        return
    _executed_many(connection, sql, rows)
