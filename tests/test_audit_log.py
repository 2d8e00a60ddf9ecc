"""The audit log's entries of a transaction go in with one statement at its commit, and exactly the
entries of what the transaction keeps: each flush's, the commit's own flush's, those of a change made by
another `before_commit` listener, none of a savepoint rolled back or of a transaction rolled back."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from entitle import actors
from entitle.audit.models import AuditEntry
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.environments.service import ensure_environment
from tests.conftest import LiveServer
from tests.support.statements import statements

_ids = itertools.count()


class Rollback(Exception):
    pass


@pytest.fixture(scope="module")
def audited(module_server: LiveServer) -> Iterator[tuple[Database, int]]:
    db = module_server.db
    env_id = ensure_environment(db, "development").pk
    with actors.acting_as("cli", "auditor", env_id):
        yield db, env_id


def _customer(env_id: int, ref: str) -> Customer:
    return Customer(environment_id=env_id, ref_id=ref, metadata_={})


def _refs(tag: str, count: int) -> list[str]:
    n = next(_ids)
    return [f"{tag}-{n}-{i}" for i in range(count)]


def _entries(db: Database, refs: list[str]) -> list[tuple[str, str, dict[str, object]]]:
    with db.read() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.entity_id.in_(refs)).order_by(AuditEntry.pk))
        return [(row.entity_id, row.action, row.changes) for row in rows]


def test_a_transactions_entries_go_in_with_one_statement_in_flush_order(audited: tuple[Database, int]) -> None:
    db, env_id = audited
    a, b = _refs("flushes", 2)
    with statements(db, counted=lambda sql: "audit_log" in sql) as inserts, db.transaction() as s:
        first = _customer(env_id, a)
        s.add(first)
        s.flush()
        s.add(_customer(env_id, b))
        s.flush()
        first.name = "Renamed"  # flushed by the commit itself
    assert len(inserts) == 1, inserts
    entries = _entries(db, [a, b])
    assert [(ref, action) for ref, action, _ in entries] == [(a, "create"), (b, "create"), (a, "update")]
    assert entries[2][2] == {"name": [None, "Renamed"]}


def test_a_rolled_back_savepoint_drops_its_entries_and_a_released_one_keeps_them(
    audited: tuple[Database, int],
) -> None:
    db, env_id = audited
    kept, dropped, released, outer, inner = refs = _refs("savepoints", 5)
    with db.transaction() as s:
        s.add(_customer(env_id, kept))
        s.flush()
        with pytest.raises(Rollback), s.begin_nested():
            s.add(_customer(env_id, dropped))
            s.flush()
            raise Rollback
        with s.begin_nested():
            s.add(_customer(env_id, released))
        with s.begin_nested():
            s.add(_customer(env_id, outer))
            s.flush()
            with pytest.raises(Rollback), s.begin_nested():
                s.add(_customer(env_id, inner))
                s.flush()
                raise Rollback
    assert [(ref, action) for ref, action, _ in _entries(db, refs)] == [
        (kept, "create"),
        (released, "create"),
        (outer, "create"),
    ]


def test_a_change_made_by_a_later_before_commit_listener_is_recorded(audited: tuple[Database, int]) -> None:
    db, env_id = audited
    (ref,) = _refs("listener", 1)
    customer = _customer(env_id, ref)

    def rename(session: Session) -> None:
        if customer in session and customer.name is None:
            customer.name = "Named at commit"

    event.listen(Session, "before_commit", rename)  # after the audit's own listener
    try:
        with db.transaction() as s:
            s.add(customer)
            s.flush()
    finally:
        event.remove(Session, "before_commit", rename)
    assert [(action, changes.get("name")) for _, action, changes in _entries(db, [ref])] == [
        ("create", None),
        ("update", [None, "Named at commit"]),
    ]


def test_a_rolled_back_transaction_records_nothing_and_leaves_nothing_behind(audited: tuple[Database, int]) -> None:
    db, env_id = audited
    gone, next_one = _refs("rolled-back", 2)
    with pytest.raises(Rollback), db.transaction() as s:
        s.add(_customer(env_id, gone))
        s.flush()
        raise Rollback
    with db.transaction() as s:
        s.add(_customer(env_id, next_one))
    assert [(ref, action) for ref, action, _ in _entries(db, [gone, next_one])] == [(next_one, "create")]
