"""The hub reads the change log as plain rows (`entitle.push.store.after`): what it hands its watchers and
streams must equal what the ORM reads of the same rows, for every kind, on both engines."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.push import rules, service
from entitle.push.models import PushEvent
from entitle.push.schemas import Item
from tests.support.clock import TestClock

# Any text a reference may hold (PostgreSQL stores no NUL character).
refs = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)
amounts = st.decimals(min_value=-(10**15), max_value=10**15, places=6, allow_nan=False, allow_infinity=False)
maybe_ref = st.none() | refs

changes = st.one_of(
    st.tuples(st.just("entitlements"), refs, maybe_ref),
    st.tuples(st.just("usage"), refs, maybe_ref, refs, amounts),
    st.tuples(st.just("credits"), refs, maybe_ref, refs, amounts, amounts, amounts),
    st.tuples(st.just("feature"), refs),
    st.tuples(st.just("currency"), refs),
    st.tuples(st.just("settings"), refs),
)

# A transaction of one change appends through the single-row insert; of several, through the batch one.
transactions = st.lists(st.lists(changes, min_size=1, max_size=6), min_size=1, max_size=4)


def record(session: Any, env: int, change: tuple[Any, ...]) -> None:
    match change:
        case ("entitlements", customer, resource):
            service.entitlements_updated(session, env, customer, resource)
        case ("usage", customer, resource, feature, current):
            service.usage_updated(session, env, customer, resource, feature, current)
        case ("credits", customer, resource, currency, limit, used, reserved):
            service.credits_updated(session, env, customer, resource, currency, limit, used, reserved)
        case ("feature", feature):
            service.feature_changed(session, env, feature)
        case ("currency", currency):
            service.currency_changed(session, env, currency)
        case ("settings", fact):
            service.settings_changed(session, env, fact)


def through_the_orm(db: Database, after_id: int) -> list[Item]:
    with db.read() as session:
        stmt = select(PushEvent).where(PushEvent.id > after_id).order_by(PushEvent.id)
        return [service.detach(row) for row in session.scalars(stmt)]


def sse(item: Item) -> str:
    return rules.frame(item.id, item.kind, item.payload())


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=transactions)
def test_the_hub_reads_the_rows_the_orm_reads(db: Database, batches: list[list[tuple[Any, ...]]]) -> None:
    env = ensure_environment(db, "development").pk
    mark = service.newest_id(db)
    for batch in batches:
        with db.transaction() as session:
            for change in batch:
                record(session, env, change)

    read = service.newer_than(db, mark)
    expected = through_the_orm(db, mark)
    assert len(expected) >= len(batches)
    # repr: the same types too (an int is not a float, every instant in UTC), not only equal values.
    assert [repr(item) for item in read] == [repr(item) for item in expected]
    assert [sse(item) for item in read] == [sse(item) for item in expected]
    # Pages: the hub reads at most `limit` rows past its cursor, oldest first.
    assert service.newer_than(db, mark, limit=1) == expected[:1]
    assert service.newer_than(db, expected[-1].id) == []


def test_each_row_keeps_its_own_commit_instant(db: Database, test_clock: TestClock) -> None:
    env = ensure_environment(db, "development").pk
    mark = service.newest_id(db)
    for customer in ("a", "b", "c"):
        test_clock.advance(timedelta(seconds=1))
        with db.transaction() as session:
            service.usage_updated(session, env, customer, None, "calls", Decimal("1.5"))
            service.usage_updated(session, env, customer, None, "tokens", Decimal(2))

    read = service.newer_than(db, mark)
    assert read == through_the_orm(db, mark)
    assert [item.data["currentUsage"] for item in read] == [1.5, 2] * 3
    start = test_clock.now() - timedelta(seconds=2)
    assert [item.created_at for item in read] == [start + timedelta(seconds=n // 2) for n in range(6)]
