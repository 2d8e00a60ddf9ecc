"""Issue 12: a batch's counters and waiting tallies are found by their keys, each key an index lookup:
the lookup answers exactly the rows asked for (creating the missing ones), and on SQLite its plan never
scans the table (a row-value `IN (VALUES ..)` list did: every counter of the database, in the write lock)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event

from entitle.customers.models import Customer
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.usage import batch_store
from entitle.usage.models import UsageCounter

JANUARY, FEBRUARY = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
_names = itertools.count()


def test_counters_and_waiting_tallies_are_found_by_key_and_created_when_missing(db: Database) -> None:
    env_id = ensure_environment(db, f"lookup-{next(_names)}").pk
    with db.transaction() as s:
        customers = [Customer(environment_id=env_id, ref_id=f"c{n}") for n in range(3)]
        s.add_all(customers)
        s.flush()
        pks = [c.pk for c in customers]
        stored = [(pk, f, "", w) for pk in pks for f in ("calls", "tokens") for w in (JANUARY, FEBRUARY)]
        first = batch_store.locked_counters(s, env_id, stored)
        assert sorted(first) == sorted(stored)
        for n, key in enumerate(sorted(stored)):
            first[key].value = Decimal(n)
        batch_store.save_tallies(s, UsageCounter, [first[k] for k in sorted(stored)])
    with db.transaction() as s:
        wanted = [(pks[1], "tokens", "", FEBRUARY), (pks[2], "calls", "", JANUARY), (pks[0], "calls", "site", JANUARY)]
        found = batch_store.locked_counters(s, env_id, wanted)
        assert sorted(found) == sorted(wanted)
        assert found[wanted[0]].value == Decimal(sorted(stored).index(wanted[0]))
        assert found[wanted[1]].value == Decimal(sorted(stored).index(wanted[1]))
        assert found[wanted[2]].value == 0 and found[wanted[2]].pk not in {first[k].pk for k in stored}
        waiting = [("nobody", "", "calls"), ("nobody", "", "tokens")]
        created = batch_store.locked_waitings(s, env_id, waiting)
    other_env = ensure_environment(db, f"lookup-{next(_names)}").pk
    with db.transaction() as s:
        again = batch_store.locked_waitings(s, env_id, [waiting[1]])
        assert list(again) == [waiting[1]] and again[waiting[1]].pk == created[waiting[1]].pk
        elsewhere = batch_store.locked_waitings(s, other_env, [waiting[1]])
        assert elsewhere[waiting[1]].pk != created[waiting[1]].pk


def test_the_sqlite_lookup_searches_the_index(db: Database) -> None:
    if db.dialect != "sqlite":
        return  # PostgreSQL's planner picks by its statistics; the lookup above holds there too
    env_id = ensure_environment(db, f"plan-{next(_names)}").pk
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "json_each" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.write_engine, "before_cursor_execute", record)
    try:
        with db.transaction() as s:
            customer = Customer(environment_id=env_id, ref_id="c")
            s.add(customer)
            s.flush()
            batch_store.locked_counters(s, env_id, [(customer.pk, "calls", "", JANUARY)])
            batch_store.locked_waitings(s, env_id, [("nobody", "", "calls")])
            plans = [s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all() for sql, params in seen]
    finally:
        event.remove(db.write_engine, "before_cursor_execute", record)
    assert len(plans) == 2, seen
    for plan in plans:
        details = [str(row[-1]) for row in plan]
        assert any(d.startswith("SEARCH t USING") and "INDEX" in d for d in details), details
        assert not any(d.startswith("SCAN t") for d in details), details
