"""Issue 12: on SQLite, the keys a batch's events hold that are stored already are looked up before its
write transaction (`store.taken_keys`), by probing the environment's unique index of keys once per key
(`json_each` the outer loop of a CROSS JOIN: left to choose, the planner may scan the table once per
key). The lookup finds exactly the environment's stored keys among those asked, whatever they hold.
And `store.Rows` writes an event's instant the same whether it is the batch's `now` itself (written
once for the batch) or an equal instant given another way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.events import store
from entitle.events.ingested import NewEvent
from entitle.events.models import Event

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
# Keys JSON escapes or writes as UTF-8: `json_each` must read them back as stored.
ODD = ['quote"d', "back\\slash", "ünïcødé", "日本語", "tab\tbed", "", " spaced ", "[1]", "null"]


def _store(db: Database, env_id: int, keys: list[str]) -> None:
    events = [NewEvent("c", None, "call", {}, NOW, i) for i in range(len(keys))]
    with db.transaction() as s:
        assert store.insert_new(s, store.Rows(db.dialect, env_id, NOW, keys, events)) == set(keys)


def test_the_lookup_finds_exactly_the_environments_stored_keys(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("only SQLite looks keys up before its write transaction")
    env_id = ensure_environment(db, "development").pk
    other_env = ensure_environment(db, "production").pk
    stored = [f"s{i}" for i in range(300)] + ODD
    _store(db, env_id, stored)
    _store(db, other_env, [f"o{i}" for i in range(50)] + ["s0"])
    asked = [f"s{i}" for i in range(0, 600, 3)] + ODD + [f"o{i}" for i in range(50)] + ["never", "ODD", "s"]
    with db.read() as s:
        found = store.taken_keys(s, env_id, asked)
        assert store.taken_keys(s, env_id, []) == set()
        assert store.taken_keys(s, other_env, ["s0", "s1", "o7"]) == {"s0", "o7"}
    assert found == {key for key in asked if key in set(stored)}


def test_the_lookup_probes_the_index_and_never_scans_the_table(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("only SQLite looks keys up before its write transaction")
    env_id = ensure_environment(db, "development").pk
    _store(db, env_id, [f"k{i}" for i in range(200)])
    with db.read() as s:
        plan = s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {store._SQLITE_TAKEN}", ("[]", env_id)).all()
    details = [row[-1] for row in plan]
    assert any(d.startswith("SEARCH e USING COVERING INDEX") for d in details), details
    assert not any(d.startswith("SCAN e") for d in details), details


def test_an_event_at_now_itself_is_stored_as_an_equal_instant_given_another_way(db: Database) -> None:
    env_id = ensure_environment(db, "development").pk
    elsewhere = NOW.astimezone(timezone(timedelta(hours=-5)))
    copy = NOW + timedelta(0)
    events = [
        NewEvent("c", None, "call", {}, at, i)
        for i, at in enumerate([NOW, elsewhere, copy, NOW - timedelta(microseconds=1), NOW])
    ]
    keys = [f"n{i}" for i in range(len(events))]
    rows = store.Rows(db.dialect, env_id, NOW, keys, events, free=True)
    if rows.sqlite:
        instants = [row[6] for row in rows.bound]
        assert instants[0] == instants[1] == instants[2] == instants[4] == "2026-03-01 12:00:00.000000"
        assert instants[3] == "2026-03-01 11:59:59.999999"
    with db.transaction() as s:
        assert store.insert_new(s, rows) == set(keys)
    with db.read() as s:
        query = select(Event.idempotency_key, Event.timestamp).where(Event.environment_id == env_id)
        stored = {key: at for key, at in s.execute(query)}
    assert stored == {key: e.timestamp for key, e in zip(keys, events, strict=True)}
