"""Property tests of the credit ledger, through the services on SQLite and PostgreSQL: for any sequence of
grants, consumptions, voids, reservations, releases and the passing of time, the balance is the sum of
the ledger, no grant goes below zero, consumption follows Stigg's order, and an overdraft never stands
beside available credits (it is settled first)."""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.credits import engine, rules
from entitle.credits import service as credits
from entitle.credits.models import CreditGrant, LedgerEntry, Wallet
from entitle.credits.schemas import ConsumptionIn, CreditCheckRequest, CurrencyCreate, GrantCreate, ReleaseIn
from entitle.customers import store as customers
from entitle.customers.schemas import CustomerProvision
from entitle.customers.service import provision_customer
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.errors import FailedPrecondition
from entitle.jobs.service import Worker
from tests.support.clock import TestClock

_wallets = itertools.count()
START = datetime(2026, 5, 1, tzinfo=UTC)

amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(200), places=6)
grant_op = st.tuples(
    st.just("grant"),
    amounts,
    st.integers(min_value=0, max_value=3),  # priority
    st.sampled_from(["PROMOTIONAL", "PAID"]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=72)),  # expires in hours
    st.one_of(st.just(0), st.just(0), st.integers(min_value=1, max_value=24)),  # effective in hours (0: now)
)
# Grants effective at once, so that most sequences draw on several grants from their first consumption.
opening_grant = st.tuples(
    st.just("grant"),
    amounts,
    st.integers(min_value=0, max_value=3),
    st.sampled_from(["PROMOTIONAL", "PAID"]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=72)),
    st.just(0),
)
consume_op = st.tuples(st.just("consume"), amounts)
void_op = st.tuples(st.just("void"), st.integers(min_value=0, max_value=20))
advance_op = st.tuples(st.just("advance"), st.integers(min_value=1, max_value=30 * 60))  # minutes
reserve_op = st.tuples(st.just("reserve"), amounts, st.integers(min_value=1, max_value=6 * 3600))  # ttl seconds
release_op = st.tuples(st.just("release"), st.integers(min_value=0, max_value=20), amounts)
operations = st.lists(
    st.one_of(grant_op, grant_op, consume_op, consume_op, void_op, advance_op, reserve_op, release_op), max_size=16
)


@pytest.fixture
def env(db: Database) -> int:
    return ensure_environment(db, "development").pk


def _wallet_state(db: Database, env_id: int, customer: str) -> tuple[list[CreditGrant], list[LedgerEntry]]:
    with db.read() as s:
        owner = customers.find(s, env_id, customer)
        assert owner is not None
        wallets = list(s.scalars(select(Wallet).where(Wallet.customer_pk == owner.pk)))
        if not wallets:
            return [], []
        grants = list(s.scalars(select(CreditGrant).where(CreditGrant.wallet_pk == wallets[0].pk)))
        entries = list(s.scalars(select(LedgerEntry).where(LedgerEntry.wallet_pk == wallets[0].pk)))
        return grants, entries


def _check_invariants(db: Database, env_id: int, customer: str, currency: str) -> None:
    grants, entries = _wallet_state(db, env_id, customer)
    checked = credits.check(db, env_id, customer, currency, CreditCheckRequest())
    balance = checked.usage_limit - checked.current_usage
    assert balance == sum((e.amount for e in entries), Decimal(0)), (checked, entries)
    for g in grants:
        assert g.consumed >= 0 and g.reserved >= 0, g.ref_id
        if g.grant_type != rules.OVERDRAFT:
            assert g.consumed + g.reserved <= g.amount, g.ref_id
    debt = sum((g.consumed for g in grants if g.grant_type == rules.OVERDRAFT), Decimal(0))
    if debt > 0:
        free = [
            g
            for g in grants
            if g.status == rules.ACTIVE and g.grant_type != rules.OVERDRAFT and engine.available(g) > 0
        ]
        assert not free, "an overdraft stands beside available credits"


def _check_order(db: Database, env_id: int, customer: str, key: str) -> None:
    """The grants a consumption drew come in draw order, and every grant before the last one drawn is empty."""
    grants, entries = _wallet_state(db, env_id, customer)
    by_pk = {g.pk: g for g in grants}
    drawn = [by_pk[e.grant_pk] for e in entries if e.event_id == key and e.event_type == "CREDITS_CONSUMED"]
    regular = [g for g in drawn if g.grant_type != rules.OVERDRAFT]
    assert [rules.draw_key(g) for g in regular] == sorted(rules.draw_key(g) for g in regular)
    if not drawn:
        return
    last = rules.draw_key(regular[-1]) if regular else None
    for g in grants:
        if g.status != rules.ACTIVE or g.grant_type == rules.OVERDRAFT:
            continue
        if drawn[-1].grant_type == rules.OVERDRAFT or (last is not None and rules.draw_key(g) < last):
            assert engine.available(g) == 0, (g.ref_id, "skipped in the draw order")


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opening=st.lists(opening_grant, min_size=1, max_size=4), steps=operations)
def test_any_sequence_keeps_the_ledger_exact(
    db: Database, env: int, opening: list[tuple[Any, ...]], steps: list[tuple[Any, ...]]
) -> None:
    clock = TestClock(START)
    clock.install()
    try:
        n = next(_wallets)
        customer, currency = f"prop-{n}", f"cur-{n}"
        provision_customer(db, env, CustomerProvision(id=customer))
        credits.create_currency(db, env, CurrencyCreate(id=currency, display_name="C"))
        grant_ids: list[str] = []
        reservation_ids: list[str] = []
        for index, step in enumerate(opening + steps):
            kind = step[0]
            if kind == "grant":
                _, amount, priority, grant_type, expires_in, effective_in = step
                now = clock.now()
                effective = now + timedelta(hours=effective_in)
                expire = None if expires_in is None else effective + timedelta(hours=expires_in)
                req = GrantCreate(
                    customer_id=customer,
                    currency_id=currency,
                    amount=amount,
                    display_name="g",
                    grant_type=grant_type,
                    priority=priority,
                    effective_at=effective if effective_in else None,
                    expire_at=expire,
                )
                grant_ids.append(credits.create_grant(db, env, req).id)
            elif kind == "consume":
                key = f"{customer}-{index}"
                credits.consume(
                    db,
                    env,
                    ConsumptionIn(customer_id=customer, currency_id=currency, amount=step[1], idempotency_key=key),
                )
                _check_order(db, env, customer, key)
            elif kind == "void" and grant_ids:
                with contextlib.suppress(FailedPrecondition):  # an expired grant cannot be voided
                    credits.void_grant(db, env, grant_ids[step[1] % len(grant_ids)])
            elif kind == "advance":
                clock.advance(timedelta(minutes=step[1]))
                Worker(db).drain()
            elif kind == "reserve":
                rid = f"{customer}-r{index}"
                request = CreditCheckRequest(
                    reserve_amount=step[1], reservation_id=rid, reservation_ttl_seconds=step[2]
                )
                if credits.check(db, env, customer, currency, request).reservation is not None:
                    reservation_ids.append(rid)
            elif kind == "release" and reservation_ids:
                rid = reservation_ids.pop(step[1] % len(reservation_ids))
                body = ReleaseIn(customer_id=customer, currency_id=currency, consumed_amount=step[2])
                credits.release(db, env, rid, body)
            _check_invariants(db, env, customer, currency)
    finally:
        clock.uninstall()


def _terms(pk: int, priority: int, expire: int | None, kind: str, effective: int, created: int) -> Any:
    class Terms:
        pass

    t = Terms()
    t.pk, t.priority, t.grant_type = pk, priority, kind  # type: ignore[attr-defined]
    t.expire_at = None if expire is None else START + timedelta(days=expire)  # type: ignore[attr-defined]
    t.effective_at = START + timedelta(days=effective)  # type: ignore[attr-defined]
    t.created_at = START + timedelta(days=created)  # type: ignore[attr-defined]
    return t


def test_draw_order_is_stiggs() -> None:
    # Stigg's documented example: A (1, Sep 1, paid), B (1, Sep 1, promotional), C (2, Aug 15, promotional).
    a, b, c = (
        _terms(1, 1, 120, "PAID", 0, 0),
        _terms(2, 1, 120, "PROMOTIONAL", 0, 0),
        _terms(3, 2, 105, "PROMOTIONAL", 0, 0),
    )
    assert rules.in_draw_order([a, c, b]) == [b, a, c]
    # The soonest expiry first and never-expiring last; then the earlier effective date; then the older grant.
    never, late, soon = (
        _terms(1, 5, None, "PROMOTIONAL", 0, 0),
        _terms(2, 5, 30, "PAID", 0, 0),
        _terms(3, 5, 10, "PAID", 0, 0),
    )
    assert rules.in_draw_order([never, late, soon]) == [soon, late, never]
    first, second = _terms(9, 5, None, "PAID", 1, 5), _terms(4, 5, None, "PAID", 2, 1)
    assert rules.in_draw_order([second, first]) == [first, second]
    older, newer = _terms(9, 5, None, "PAID", 1, 1), _terms(4, 5, None, "PAID", 1, 2)
    assert rules.in_draw_order([newer, older]) == [older, newer]
    # Recurring (plan) credits come after promotional and before paid ones.
    paid, recurring, promo = (
        _terms(1, 5, 9, "PAID", 0, 0),
        _terms(2, 5, 9, "RECURRING", 0, 0),
        _terms(3, 5, 9, "PROMOTIONAL", 0, 0),
    )
    assert rules.in_draw_order([paid, recurring, promo]) == [promo, recurring, paid]


@given(
    available=st.lists(st.decimals(min_value=0, max_value=100, places=6), max_size=8),
    amount=st.decimals(min_value=0, max_value=500, places=6),
)
def test_a_draw_takes_each_grant_down_to_zero_before_the_next(available: list[Decimal], amount: Decimal) -> None:
    draw = rules.spread(available, amount)
    taken = {index: take for index, take in draw.takes}
    assert sum(taken.values(), Decimal(0)) + draw.remainder == amount
    assert draw.remainder >= 0 and all(0 < take <= available[i] for i, take in taken.items())
    if taken:
        last = max(taken)
        assert all(taken.get(i, Decimal(0)) == available[i] for i in range(last))
    if draw.remainder > 0:
        assert all(taken.get(i, Decimal(0)) == free for i, free in enumerate(available))


def test_conversions_round_half_even_at_six_places() -> None:
    assert rules.credits_for(Decimal("0.0000005"), Decimal(1)) == Decimal("0.000000")
    assert rules.credits_for(Decimal("0.0000015"), Decimal(1)) == Decimal("0.000002")
    assert rules.credits_for(Decimal(3), Decimal("0.3333335")) == Decimal("1.000000")
    assert rules.places_problem(Decimal("1.0000001")) is not None and rules.places_problem(Decimal("1.000001")) is None
