"""Issue 12: on SQLite a batch's events are stored by multi-row inserts of a few fixed sizes, the last one
padded with copies of its last row (dropped by its ON CONFLICT DO NOTHING). Whatever the batch's size,
each event is stored once, as sent, and the keys another batch stored meanwhile (between the look-up
before the transaction and the insert) are skipped and not reported as inserted: the rows inserted fall
short, and the transaction reads which it inserted. Checked on both databases: PostgreSQL's insert
answers the same question its own way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.events import store
from entitle.events.ingested import NewEvent
from entitle.events.models import Event

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _batch(tag: str, size: int) -> tuple[list[str], list[NewEvent]]:
    keys = [f"{tag}-{i}" for i in range(size)]
    events = [
        NewEvent(f"c{i % 7}", None if i % 2 else f"r{i % 3}", "call", {"n": i, "tag": tag}, at, i)
        for i, at in ((i, NOW - timedelta(seconds=i)) for i in range(size))
    ]
    return keys, events


def _store(db: Database, env_id: int, keys: list[str], events: list[NewEvent], *, free: bool) -> set[str]:
    with db.transaction() as s:
        return store.insert_new(s, store.Rows(db.dialect, env_id, NOW, keys, events, free=free))


# Sizes around the statements' sizes (1,000 the largest): one row, a statement filled exactly, one padded,
# several statements.
@pytest.mark.parametrize("size", [1, 2, 4, 39, 40, 667, 999, 1000, 1001, 2345])
def test_every_event_of_a_batch_is_stored_once_as_sent(db: Database, size: int) -> None:
    env_id = ensure_environment(db, "development").pk
    keys, events = _batch("b", size)
    assert _store(db, env_id, keys, events, free=True) == set(keys)
    with db.read() as s:
        rows = s.execute(select(Event).where(Event.environment_id == env_id).order_by(Event.pk)).scalars().all()
        stored = [(r.idempotency_key, r.customer_ref, r.resource_ref, r.dimensions, r.timestamp) for r in rows]
    # In the batch's order, each once.
    assert stored == [
        (k, e.customer_ref, e.resource_ref, e.dimensions, e.timestamp) for k, e in zip(keys, events, strict=True)
    ]


@pytest.mark.parametrize("size", [1, 3, 40, 1000, 1001, 1500])
@pytest.mark.parametrize("free", [True, False])
def test_keys_stored_meanwhile_are_skipped_and_not_reported_inserted(db: Database, size: int, free: bool) -> None:
    env_id = ensure_environment(db, "development").pk
    keys, events = _batch("m", size)
    # Stored by another batch after this one looked its keys up: the first, one in the middle and the last
    # (the row copied to pad the last statement), each with another customer.
    meanwhile = sorted({0, size // 2, size - 1})
    other = [NewEvent("other", None, "call", {}, NOW, i) for i in meanwhile]
    assert _store(db, env_id, [keys[i] for i in meanwhile], other, free=True) == {keys[i] for i in meanwhile}
    inserted = _store(db, env_id, keys, events, free=free)
    assert inserted == {k for i, k in enumerate(keys) if i not in meanwhile}
    with db.read() as s:
        rows = s.execute(select(Event.idempotency_key, Event.customer_ref).where(Event.environment_id == env_id))
        owners = {}
        for key, customer_ref in rows:
            assert key not in owners, key  # stored once
            owners[key] = customer_ref
    assert owners == {k: "other" if i in meanwhile else events[i].customer_ref for i, k in enumerate(keys)}


def test_a_batch_after_another_environments_reports_only_its_own_rows(db: Database) -> None:
    """The rows read back when the insert fell short are this transaction's: the last rows of the table."""
    env_id = ensure_environment(db, "development").pk
    other_env = ensure_environment(db, "production").pk
    keys, events = _batch("e", 50)
    _store(db, other_env, keys, events, free=True)  # the same keys elsewhere conflict with nothing here
    _store(db, env_id, keys[:1], events[:1], free=True)
    assert _store(db, env_id, keys, events, free=True) == set(keys[1:])


def test_an_older_librarys_limit_of_bound_variables_is_kept(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite before 3.32 binds at most 999 variables per statement: smaller statements, the same rows."""
    sizes = store.sizes_within(999)
    assert sizes[0] * 9 <= 999 and sizes[-1] == 1
    monkeypatch.setattr(store, "_sizes", lambda: sizes)
    statements = store._sqlite_statements([(n,) * 9 for n in range(250)])
    assert all(len(bound) <= 999 for _, bound in statements)
    env_id = ensure_environment(db, "development").pk
    keys, events = _batch("old", 250)
    assert _store(db, env_id, keys, events, free=True) == set(keys)
    with db.read() as s:
        stored = s.scalars(select(Event.idempotency_key).where(Event.environment_id == env_id)).all()
    assert sorted(stored) == sorted(keys)
