"""Statements sent on the driver's cursor (`entitle.db.sent`) answer and write what
`exec_driver_sql` (and Core's execution of the same text) answers and writes, in and outside a
transaction; the engine's cursor events still see each one once (what the statement-counting tests
count); and a driver error is raised as SQLAlchemy's, as before."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from entitle.db import Database
from entitle.db.sent import PreparedText, fetch_all, run, run_many
from tests.support.statements import statements

_SELECT = PreparedText(text("SELECT id, name FROM sent_probe WHERE id > :low ORDER BY id"))
_NEWEST = PreparedText(text("SELECT max(id) FROM sent_probe WHERE name <> :name"))


def _probe(db: Database) -> None:
    with db.transaction() as s:
        s.execute(text("CREATE TABLE sent_probe (id integer PRIMARY KEY, name varchar(20) NOT NULL)"))
        s.execute(text("INSERT INTO sent_probe (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')"))


def _counted(sql: str) -> bool:
    return "sent_probe" in sql


def test_a_prepared_text_answers_what_core_answers(db: Database) -> None:
    _probe(db)
    with db.transaction() as s:
        connection = s.connection()
        assert connection.in_transaction()
        by_core = [tuple(row) for row in connection.execute(_SELECT.statement, {"low": 1})]
        for _ in range(2):  # compiled, then reused
            with statements(db, counted=_counted) as seen:
                assert [tuple(row) for row in _SELECT.all(connection, {"low": 1})] == by_core == [(2, "b"), (3, "c")]
                assert tuple(_SELECT.first(connection, {"low": 2})) == (3, "c")
                assert _SELECT.first(connection, {"low": 3}) is None
                assert _NEWEST.scalar(connection, {"name": "c"}) == 2
            assert len(seen) == 4
    # Outside a transaction: left to exec_driver_sql, which begins one.
    with db.read_engine.connect() as connection:
        assert not connection.in_transaction()
        assert [tuple(row) for row in _SELECT.all(connection, {"low": 0})] == [(1, "a"), (2, "b"), (3, "c")]
    with db.read_engine.connect() as connection:
        assert _NEWEST.scalar(connection, {"name": "zz"}) == 3


def test_driver_statements_write_and_read_what_exec_driver_sql_does(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("the ingestion path sends these only on SQLite (its driver's parameter style)")
    _probe(db)
    with db.transaction() as s:
        connection = s.connection()
        with statements(db, counted=_counted) as seen:
            assert run(connection, "UPDATE sent_probe SET name = ? WHERE id >= ?", ("z", 2)) == 2
            run_many(connection, "INSERT INTO sent_probe (id, name) VALUES (?, ?)", [(4, "d"), (5, "e")])
            run_many(connection, "INSERT INTO sent_probe (id, name) VALUES (?, ?)", [(6, "f")])
            found = fetch_all(connection, "SELECT id, name FROM sent_probe WHERE id > ? ORDER BY id", (1,))
        # An executemany is one statement to the cursor events, as exec_driver_sql sends it.
        assert len(seen) == 4
        assert found == [(2, "z"), (3, "z"), (4, "d"), (5, "e"), (6, "f")]
        # A driver error is SQLAlchemy's, naming the statement (as exec_driver_sql raises it).
        with pytest.raises(IntegrityError, match="sent_probe"):
            run(connection, "INSERT INTO sent_probe (id, name) VALUES (?, ?)", (1, "again"))
        with pytest.raises(IntegrityError):
            run_many(connection, "INSERT INTO sent_probe (id, name) VALUES (?, ?)", [(1, "g"), (7, "g")])
    with db.read_engine.connect() as connection:
        # Outside a transaction: exec_driver_sql's own path, which begins one. What they wrote is committed.
        assert fetch_all(connection, "SELECT count(*), min(name), max(name) FROM sent_probe", ()) == [(6, "a", "z")]
