"""Issue 12: on SQLite a batch's stored keys are looked up before its write transaction (which holds the
database's lock), its counters' slots planned there too, and the transaction inserts the events as they
are. A key another batch stores in between must still count once: the insert skips it (the rows
inserted fall short, and the transaction reads which it inserted) and the batch counts the others, its
plan without the event it did not store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from entitle.clock import set_clock
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.events import ingested
from entitle.events import service as events
from entitle.events import store as event_store
from entitle.events.ingested import NewEvent
from entitle.events.schemas import EventIn
from entitle.usage import counting
from tests.conftest import LiveServer
from tests.test_ingest_bulk import _build, _provision
from tests.test_ingest_prepared import _counted


@pytest.fixture
def built(server: LiveServer, api: httpx.Client) -> tuple[Database, int]:
    _build(api)
    return server.db, ensure_environment(server.db, "development").pk


def _events(customer_ref: str, keys: list[str]) -> list[EventIn]:
    return [
        EventIn.model_validate(
            {"customerId": customer_ref, "eventName": "completion", "idempotencyKey": k, "dimensions": {"tokens": 3}}
        )
        for k in keys
    ]


def test_a_key_stored_between_the_look_up_and_the_insert_counts_once(
    built: tuple[Database, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, env_id = built
    _provision(db, env_id, "raced", "metered")
    events.report_events(db, env_id, _events("raced", ["k1", "k2"]))
    looked_up = event_store.taken_keys
    stale: list[bool] = []

    def before_the_other_batch(session: Any, env: int, keys: list[str]) -> set[str]:
        # The look-up before the transaction misses what another batch stores right after it.
        if not stale:
            stale.append(True)
            return set()
        return looked_up(session, env, keys)

    monkeypatch.setattr(event_store, "taken_keys", before_the_other_batch)
    trimmed: list[set[int]] = []
    without = counting.without

    def plan_without(slots: Any, skipped: set[int]) -> Any:
        trimmed.append(skipped)
        return without(slots, skipped)

    monkeypatch.setattr(counting, "without", plan_without)
    reported = events.report_events(db, env_id, _events("raced", ["k2", "k3", "k4"]))
    # Only SQLite looks keys up before the transaction (PostgreSQL's insert skips what is stored, no lock held).
    assert stale == ([True] if db.dialect == "sqlite" else [])
    # The plan made for all three is used without the one stored already (PostgreSQL plans for all).
    assert trimmed == [{0}]
    assert (reported.new, reported.duplicates) == (2, 1)
    counted = _counted(db, env_id, "raced")
    assert counted["m-count"] == 4
    assert counted["m-sum"] == Decimal(12)


def test_a_batch_resent_whole_stores_and_counts_nothing(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "resent", "metered")
    batch = _events("resent", [f"r{i}" for i in range(5)])
    assert events.report_events(db, env_id, batch).new == 5
    again = events.report_events(db, env_id, batch)
    assert (again.new, again.duplicates) == (0, 5)
    assert _counted(db, env_id, "resent")["m-count"] == 5


def test_a_plan_made_before_the_transaction_counts_as_the_transaction_would(
    built: tuple[Database, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, env_id = built
    for name in ("planned", "unplanned"):
        _provision(db, env_id, name, "metered")
    made: list[counting.Prepared] = []
    planning = True

    def prepare(*args: Any, **kwargs: Any) -> counting.Prepared:
        prepared = counting.prepare(*args, **kwargs)
        made.append(prepared if planning else replace(prepared, plan=None))
        return made[-1]

    counted_slots: list[object] = []
    original = counting._count_in_windows

    def count_in_windows(s: Any, env: int, slots: Any) -> Any:
        counted_slots.append(slots)
        return original(s, env, slots)

    monkeypatch.setattr(ingested.prepare, "_impl", prepare)
    monkeypatch.setattr(counting, "_count_in_windows", count_in_windows)
    for customer_ref in ("planned", "unplanned"):
        planning = customer_ref == "planned"
        events.report_events(db, env_id, _events(customer_ref, [f"{customer_ref}-{i}" for i in range(3)]))
        events.report_events(db, env_id, _events(customer_ref, [f"{customer_ref}-{i}" for i in range(1, 6)]))
    plans = [p.plan for p in made]
    assert plans[0] is not None and plans[1] is not None and plans[2:] == [None, None]
    assert counted_slots[0] is plans[0].slots  # every event new: the plan's slots were counted
    assert _counted(db, env_id, "planned") == _counted(db, env_id, "unplanned")
    assert _counted(db, env_id, "planned")["m-count"] == 6


def test_a_plan_whose_current_window_ended_before_the_transaction_is_not_used(
    built: tuple[Database, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, env_id = built
    start = datetime(2026, 3, 10, 12, tzinfo=UTC)
    clock = [start]
    set_clock(lambda: clock[0])
    try:
        _provision(db, env_id, "late", "metered")
        clock[0] = start + timedelta(days=20)
        batch = [NewEvent("late", None, "completion", {"tokens": 4}, clock[0], i) for i in range(3)]
        prepared = counting.prepare(db, env_id, batch, clock[0])
        assert prepared.plan is not None and prepared.plan.until is not None
        counted_slots: list[Any] = []
        original = counting._count_in_windows

        def count_in_windows(s: Any, env: int, slots: Any) -> Any:
            counted_slots.append(slots)
            return original(s, env, slots)

        monkeypatch.setattr(counting, "_count_in_windows", count_in_windows)
        clock[0] = prepared.plan.until + timedelta(seconds=1)  # the month reset meanwhile
        with db.transaction() as s:
            counting.apply_events(s, env_id, batch, prepared)
    finally:
        set_clock(None)
    [slots] = counted_slots
    assert slots is not prepared.plan.slots
    # The events still count in the window of their instant, which is no longer the current one.
    assert {slot.window.start for slot in slots.values()} == {
        slot.window.start for slot in prepared.plan.slots.values()
    }
    assert not any(slot.in_current_window for slot in slots.values())
    assert _counted(db, env_id, "late")["m-count"] == 3
