"""A credit write reads the instant its movements happen at once it holds the wallet's lock
(`credits.store.locked_wallet`), not before it waits for it.

Each test has another writer commit in that window, deterministically: the first time the write under
test opens its transaction, the other writer runs to its commit first, with the clock moved on (as it
would have moved while the first waited for the lock). A write that read the clock before would answer
a balance at an instant that precedes what it drew on (a grant, an overdraft), refuse a hold a committed
grant pays for, or write ledger entries dated before the movements they follow. The stored amounts were
right either way; the answers and the ledger's order were not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.credits import service as credits
from entitle.credits.models import LedgerEntry
from entitle.credits.rules import RESERVATION_TTL_DEFAULT
from entitle.credits.schemas import (
    ConsumptionIn,
    ConsumptionOut,
    CreditCheckRequest,
    CurrencyCreate,
    GrantCreate,
    GrantOut,
    ReleaseIn,
)
from entitle.customers.schemas import CustomerProvision
from entitle.customers.service import create_customer
from entitle.db import Database
from entitle.environments.service import ensure_environment
from tests.support.clock import TestClock

_keys = iter(range(1_000_000))


@pytest.fixture
def env(db: Database, test_clock: TestClock) -> int:
    env_id = ensure_environment(db, "development").pk
    with db.transaction() as s:
        create_customer(s, env_id, CustomerProvision(id="c"))
    credits.create_currency(db, env_id, CurrencyCreate(id="credits", display_name="Credits"))
    return env_id


def _meanwhile(db: Database, clock: TestClock, monkeypatch: pytest.MonkeyPatch, other: Callable[[], object]) -> None:
    """The next transaction opened on `db` first lets `other` run to its commit, a second later."""
    opened = db.transaction
    pending = [other]

    @contextmanager
    def transaction() -> Iterator[Session]:
        if pending:
            work = pending.pop()
            clock.advance(timedelta(seconds=1))
            work()
        with opened() as s:
            yield s

    monkeypatch.setattr(db, "transaction", transaction)


def _consume(db: Database, env: int, amount: int) -> ConsumptionOut:
    return credits.consume(
        db, env, ConsumptionIn(customer_id="c", currency_id="credits", amount=amount, idempotency_key=f"k{next(_keys)}")
    )


def _grant(db: Database, env: int, amount: int) -> GrantOut:
    req = GrantCreate(customer_id="c", currency_id="credits", amount=amount, display_name="g", grant_type="PAID")
    return credits.create_grant(db, env, req)


def _balance(db: Database, env: int) -> tuple[Decimal, Decimal]:
    """The wallet's balance read afresh after the writes: what the write's own answer must have said."""
    found = credits.check(db, env, "c", "credits", CreditCheckRequest())
    return found.usage_limit, found.current_usage


def _ledger_in_order(db: Database) -> None:
    """No entry is dated before the entry of the same grant written before it."""
    with db.read() as s:
        entries = list(s.scalars(select(LedgerEntry).order_by(LedgerEntry.pk)))
    latest: dict[int, datetime] = {}
    for e in entries:
        before = latest.get(e.grant_pk)
        assert before is None or e.timestamp >= before, (e.event_type, e.timestamp, before)
        latest[e.grant_pk] = e.timestamp


def test_a_consumption_answers_the_grant_committed_while_it_waited(
    db: Database, env: int, test_clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _meanwhile(db, test_clock, monkeypatch, lambda: _grant(db, env, 100))
    out = _consume(db, env, 10)
    assert (out.credit.usage_limit, out.credit.current_usage) == (100, 10) == _balance(db, env)
    _ledger_in_order(db)


def test_a_consumption_answers_the_overdraft_committed_while_it_waited(
    db: Database, env: int, test_clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _meanwhile(db, test_clock, monkeypatch, lambda: _consume(db, env, 5))
    out = _consume(db, env, 3)
    assert (out.credit.usage_limit, out.credit.current_usage) == (0, 8) == _balance(db, env)
    _ledger_in_order(db)


def test_a_grant_starts_after_the_overdraft_committed_while_it_waited(
    db: Database, env: int, test_clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _meanwhile(db, test_clock, monkeypatch, lambda: _consume(db, env, 5))
    out = _grant(db, env, 100)
    assert out.effective_at == test_clock.now()
    assert _balance(db, env) == (100, 5)
    _ledger_in_order(db)  # the debt moved onto the grant no earlier than it was drawn


def test_a_void_comes_after_the_draw_committed_while_it_waited(
    db: Database, env: int, test_clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = _grant(db, env, 100)
    _meanwhile(db, test_clock, monkeypatch, lambda: _consume(db, env, 10))
    out = credits.void_grant(db, env, grant.id)
    assert out.voided_at == test_clock.now()
    assert out.consumed_amount == 10
    _ledger_in_order(db)


def test_a_hold_is_paid_by_the_grant_committed_while_it_waited(
    db: Database, env: int, test_clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _meanwhile(db, test_clock, monkeypatch, lambda: _grant(db, env, 100))
    found = credits.check(db, env, "c", "credits", CreditCheckRequest(reserve_amount=Decimal(30), reservation_id="r"))
    assert found.is_granted
    assert (found.usage_limit, found.current_usage, found.reserved) == (100, 30, 30)
    assert found.reservation is not None and found.reservation.expires_at == test_clock.now() + RESERVATION_TTL_DEFAULT
    _ledger_in_order(db)


def test_a_release_answers_the_grant_committed_while_it_waited(
    db: Database, env: int, test_clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grant(db, env, 50)
    credits.check(db, env, "c", "credits", CreditCheckRequest(reserve_amount=Decimal(30), reservation_id="r"))
    _meanwhile(db, test_clock, monkeypatch, lambda: _grant(db, env, 100))
    out = credits.release(db, env, "r", ReleaseIn(customer_id="c", currency_id="credits", consumed_amount=20))
    assert (out.credit.usage_limit, out.credit.current_usage) == (150, 20) == _balance(db, env)
    _ledger_in_order(db)
