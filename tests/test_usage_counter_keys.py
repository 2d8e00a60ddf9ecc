"""Issue 12: on SQLite a batch's counter keys are bound as one JSON document, each key's text remembered
across batches. A key's text is the same whether written now or remembered, so the same key finds the
same row: an instant in another time zone finds the counter of the same instant, a key differing in any
column another one."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

from entitle.customers.models import Customer
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.usage import batch_store

JANUARY = datetime(2026, 1, 1, tzinfo=UTC)
_names = itertools.count()


def test_a_key_finds_its_own_counter_however_often_it_was_written(db: Database) -> None:
    env_id = ensure_environment(db, f"keys-{next(_names)}").pk
    with db.transaction() as s:
        customers = [Customer(environment_id=env_id, ref_id=f"c{n}") for n in range(2)]
        s.add_all(customers)
        s.flush()
        pks = [c.pk for c in customers]
        keys = [
            (pk, feature, resource, JANUARY + timedelta(days=31 * month))
            for pk in pks
            for feature in ("calls", "tokens")
            for resource in ("", "site")
            for month in range(2)
        ]
        created = batch_store.locked_counters(s, env_id, keys)
        assert sorted(created) == sorted(keys)
        rows = {key: row.pk for key, row in created.items()}
        assert len(set(rows.values())) == len(keys)  # a row per key
    for _ in range(2):  # written afresh, then remembered
        with db.transaction() as s:
            found = batch_store.locked_counters(s, env_id, keys[::3])
            assert {key: row.pk for key, row in found.items()} == {key: rows[key] for key in keys[::3]}
    # The same instants written in another time zone: the same counters, none created.
    elsewhere = timezone(timedelta(hours=-5))
    shifted = [(pk, feature, resource, start.astimezone(elsewhere)) for pk, feature, resource, start in keys]
    with db.transaction() as s:
        found = batch_store.locked_counters(s, env_id, shifted)
        assert sorted(row.pk for row in found.values()) == sorted(rows.values())
