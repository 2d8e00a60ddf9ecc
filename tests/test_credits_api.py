"""Every credits endpoint through the official client, on SQLite and PostgreSQL (one server per module
and engine; each test makes its own customer and currency)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import stigg

from entitle.jobs.service import Worker
from tests.conftest import LiveServer
from tests.support.clock import TestClock

_ids = itertools.count()


@pytest.fixture
def client(module_server: LiveServer) -> stigg.Stigg:
    return module_server.stigg()


@pytest.fixture
def wallet(client: stigg.Stigg) -> tuple[str, str]:
    """A new customer and a new currency."""
    n = next(_ids)
    customer, currency = f"cust-{n}", f"credits-{n}"
    client.v1.customers.provision(id=customer)
    client.v1.credits.custom_currencies.create(id=currency, display_name="AI credits")
    return customer, currency


def _grant(client: stigg.Stigg, customer: str, currency: str, amount: float, **extra: Any) -> Any:
    extra.setdefault("display_name", "Grant")
    extra.setdefault("grant_type", "PROMOTIONAL")
    return client.v1.credits.grants.create(customer_id=customer, currency_id=currency, amount=amount, **extra).data


def _balance(client: stigg.Stigg, customer: str, currency: str, **extra: Any) -> Any:
    return client.v1.customers.check_entitlement(customer, currency_id=currency, **extra).data


def test_custom_currency_lifecycle(client: stigg.Stigg) -> None:
    n = next(_ids)
    ref = f"tokens-{n}"
    created = client.v1.credits.custom_currencies.create(
        id=ref,
        display_name="Tokens",
        description="Model tokens",
        symbol="T",
        units={"singular": "token", "plural": "tokens"},
        metadata={"team": "ai"},
    ).data
    assert (created.id, created.display_name, created.description, created.symbol) == (
        ref,
        "Tokens",
        "Model tokens",
        "T",
    )
    assert created.units is not None and (created.units.singular, created.units.plural) == ("token", "tokens")
    assert created.metadata == {"team": "ai"}
    assert created.archived_at is None

    with pytest.raises(stigg.ConflictError):
        client.v1.credits.custom_currencies.create(id=ref, display_name="Again")

    updated = client.v1.credits.custom_currencies.update(ref, display_name="Tokens!", symbol="", metadata=None).data
    assert updated.display_name == "Tokens!"
    assert updated.symbol is None  # an empty string clears it
    assert updated.description == "Model tokens"  # absent: kept
    assert updated.metadata == {}

    listed = [c.id for c in client.v1.credits.custom_currencies.list(limit=100)]
    assert ref in listed
    archived = client.v1.credits.custom_currencies.archive(ref).data
    assert archived.archived_at is not None
    assert ref not in [c.id for c in client.v1.credits.custom_currencies.list(limit=100)]
    assert ref in [c.id for c in client.v1.credits.custom_currencies.list(status=["ARCHIVED"], limit=100)]
    with pytest.raises(stigg.ConflictError):
        client.v1.credits.custom_currencies.update(ref, display_name="No")
    assert client.v1.credits.custom_currencies.unarchive(ref).data.archived_at is None
    assert client.v1.credits.custom_currencies.list_associated_entities(ref).data == []
    with pytest.raises(stigg.NotFoundError):
        client.v1.credits.custom_currencies.archive(f"missing-{n}")


def test_grants_ledger_and_consumption_order(client: stigg.Stigg, wallet: tuple[str, str]) -> None:
    customer, currency = wallet
    far = datetime.now(UTC) + timedelta(days=300)
    near = datetime.now(UTC) + timedelta(days=30)
    paid = _grant(
        client,
        customer,
        currency,
        50,
        grant_type="PAID",
        priority=1,
        expire_at=far,
        cost={"amount": 25, "currency": "usd"},
        payment_collection_method="NONE",
    )
    promo = _grant(client, customer, currency, 20, priority=1, expire_at=far, comment="welcome")
    soon = _grant(client, customer, currency, 100, priority=2, expire_at=near)
    assert paid.status == "ACTIVE" and paid.cost.amount == 25 and paid.payment_collection == "NOT_REQUIRED"
    assert promo.comment == "welcome" and promo.priority == 1

    result = client.v1.credits.consumption.consume(
        customer_id=customer, currency_id=currency, amount=60.5, idempotency_key=f"{customer}-k1"
    ).data
    assert result.amount == 60.5
    assert result.credit is not None
    assert (result.credit.usage_limit, result.credit.current_usage) == (170, 60.5)

    grants = {g.id: g for g in client.v1.credits.grants.list(customer_id=customer)}
    # Priority 1 first; within it, the same expiry: promotional before paid.
    assert grants[promo.id].consumed_amount == 20
    assert grants[paid.id].consumed_amount == 40.5
    assert grants[soon.id].consumed_amount == 0

    consumed = [e for e in client.v1.credits.list_ledger(customer_id=customer, event_type="CREDITS_CONSUMED")]
    assert [(e.credit_grant_id, e.amount) for e in consumed] == [(promo.id, -20), (paid.id, -40.5)]
    assert all(e.event_id == f"{customer}-k1" for e in consumed)
    ledger = list(client.v1.credits.list_ledger(customer_id=customer, currency_id=currency))
    balance = _balance(client, customer, currency)
    assert sum(Decimal(str(e.amount)) for e in ledger) == Decimal(str(balance.usage_limit - balance.current_usage))

    # The same key again: the first answer, nothing drawn twice; another body: 409.
    again = client.v1.credits.consumption.consume(
        customer_id=customer, currency_id=currency, amount=60.5, idempotency_key=f"{customer}-k1"
    ).data
    assert again.amount == 60.5
    assert _balance(client, customer, currency).current_usage == 60.5
    with pytest.raises(stigg.ConflictError) as refused:
        client.v1.credits.consumption.consume(
            customer_id=customer, currency_id=currency, amount=1, idempotency_key=f"{customer}-k1"
        )
    assert refused.value.body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"  # type: ignore[index]

    voided = client.v1.credits.grants.void(soon.id).data
    assert voided.status == "VOIDED" and voided.voided_at is not None
    assert client.v1.credits.grants.void(soon.id).data.voided_at == voided.voided_at  # idempotent
    check = _balance(client, customer, currency)
    assert (check.usage_limit, check.current_usage) == (70, 60.5)
    assert check.type == "CREDIT" and check.is_granted
    assert check.currency.currency_id == currency and check.currency.display_name == "AI credits"


def test_overdraft_is_settled_first_by_the_next_grant(client: stigg.Stigg, wallet: tuple[str, str]) -> None:
    customer, currency = wallet
    _grant(client, customer, currency, 10)
    client.v1.credits.consumption.consume_async(
        consumptions=[
            {"customer_id": customer, "currency_id": currency, "amount": 8, "idempotency_key": f"{customer}-a"},
            {"customer_id": customer, "currency_id": currency, "amount": 7, "idempotency_key": f"{customer}-b"},
        ]
    )
    check = _balance(client, customer, currency)
    assert (check.usage_limit, check.current_usage, check.is_granted) == (10, 15, False)
    assert check.access_denied_reason == "InsufficientCredits"
    overdraft = [g for g in client.v1.credits.grants.list(customer_id=customer) if g.grant_type == "OVERDRAFT"]
    assert len(overdraft) == 1 and overdraft[0].consumed_amount == 5

    topped = _grant(client, customer, currency, 12, grant_type="PAID")
    assert topped.consumed_amount == 5  # the debt moved onto the new grant first
    check = _balance(client, customer, currency)
    assert check.usage_limit - check.current_usage == 7
    transfers = list(
        client.v1.credits.list_ledger(customer_id=customer, event_type="CREDITS_CONSUMPTION_TRANSFER_TARGET")
    )
    assert [(e.credit_grant_id, e.amount) for e in transfers] == [(topped.id, -5)]


def test_reservation_hold_release_and_expiry(
    client: stigg.Stigg, wallet: tuple[str, str], module_server: LiveServer, test_clock: TestClock
) -> None:
    customer, currency = wallet
    test_clock.set(datetime.now(UTC))
    _grant(client, customer, currency, 100)
    held = _balance(
        client, customer, currency, reserve_amount=30, reservation_id=f"{customer}-r1", reservation_ttl_seconds=60
    )
    assert held.is_granted and held.reservation is not None
    assert (held.reservation.amount, held.reservation.status) == (30, "ACTIVE")
    assert (held.reserved, held.current_usage) == (30, 30)
    retried = _balance(client, customer, currency, reserve_amount=30, reservation_id=f"{customer}-r1")
    assert retried.reservation is not None and retried.reservation.expires_at == held.reservation.expires_at
    assert retried.current_usage == 30  # not held twice
    with pytest.raises(stigg.ConflictError):
        _balance(client, customer, currency, reserve_amount=31, reservation_id=f"{customer}-r1")
    denied = _balance(client, customer, currency, reserve_amount=71, reservation_id=f"{customer}-r2")
    assert not denied.is_granted and denied.access_denied_reason == "InsufficientCredits" and denied.reservation is None

    released = client.v1.credits.reservations.release(
        f"{customer}-r1", customer_id=customer, currency_id=currency, consumed_amount=12
    ).data
    assert released.reservation.status == "RELEASED" and released.reservation.consumed_amount == 12
    assert released.credit is not None and released.credit.current_usage == 12
    again = client.v1.credits.reservations.release(
        f"{customer}-r1", customer_id=customer, currency_id=currency, consumed_amount=12
    ).data
    assert again.credit is not None and again.credit.current_usage == 12  # idempotent
    entries = list(client.v1.credits.list_ledger(customer_id=customer, reservation_id=f"{customer}-r1"))
    assert [(e.event_type, e.amount, e.hold_returned_amount) for e in entries] == [
        ("CREDITS_RESERVED", -30, None),
        ("CREDITS_RESERVATION_RELEASED", 18, 30),
    ]

    lapsing = _balance(
        client, customer, currency, reserve_amount=50, reservation_id=f"{customer}-r3", reservation_ttl_seconds=5
    )
    assert lapsing.current_usage == 62
    test_clock.advance(timedelta(seconds=6))
    assert _balance(client, customer, currency).current_usage == 12  # a lapsed hold no longer counts
    Worker(module_server.db).drain()
    expired = list(client.v1.credits.list_ledger(customer_id=customer, event_type="CREDITS_RESERVATION_EXPIRED"))
    assert [(e.amount, e.reservation_id) for e in expired] == [(50, f"{customer}-r3")]
    assert _balance(client, customer, currency).current_usage == 12


def test_scheduled_and_expiring_grants_move_at_their_instant(
    client: stigg.Stigg, wallet: tuple[str, str], module_server: LiveServer, test_clock: TestClock
) -> None:
    customer, currency = wallet
    start = datetime(2026, 3, 1, tzinfo=UTC)
    test_clock.set(start)
    promo = _grant(client, customer, currency, 40, expire_at=start + timedelta(days=1))
    later = _grant(client, customer, currency, 60, grant_type="PAID", effective_at=start + timedelta(hours=12))
    assert (promo.status, later.status) == ("ACTIVE", "SCHEDULED")
    client.v1.credits.consumption.consume(
        customer_id=customer, currency_id=currency, amount=30, idempotency_key=f"{customer}-1"
    )
    test_clock.set(start + timedelta(hours=13))
    Worker(module_server.db).drain()
    statuses = {g.id: g.status for g in client.v1.credits.grants.list(customer_id=customer)}
    assert statuses == {promo.id: "ACTIVE", later.id: "ACTIVE"}
    # Mid-consumption the promotional grant runs out (10 left) and the paid one takes the rest.
    client.v1.credits.consumption.consume(
        customer_id=customer, currency_id=currency, amount=25, idempotency_key=f"{customer}-2"
    )
    test_clock.set(start + timedelta(days=2))
    Worker(module_server.db).drain()
    grants = {g.id: g for g in client.v1.credits.grants.list(customer_id=customer)}
    assert grants[promo.id].status == "EXPIRED" and grants[promo.id].consumed_amount == 40
    assert grants[later.id].consumed_amount == 15
    ledger = list(client.v1.credits.list_ledger(customer_id=customer))
    kinds = [(e.event_type, e.credit_grant_id, e.amount) for e in ledger]
    assert ("CREDITS_GRANTED", later.id, 60) in kinds
    granted_later = next(e for e in ledger if e.event_type == "CREDITS_GRANTED" and e.credit_grant_id == later.id)
    assert granted_later.timestamp == start + timedelta(hours=12)  # at its instant, not when the job ran
    check = _balance(client, customer, currency)
    assert (check.usage_limit, check.current_usage) == (60, 15)
    assert sum(Decimal(str(e.amount)) for e in ledger) == 45


def test_refusals_are_clear(client: stigg.Stigg, wallet: tuple[str, str]) -> None:
    customer, currency = wallet
    # INVOICE and CHARGE collect the cost through a billing integration: with none connected, a clear 400 (and
    # nothing is written); without a cost there is nothing to collect.
    cost = {"amount": 10, "currency": "usd"}
    for method in ("CHARGE", "INVOICE"):
        with pytest.raises(stigg.BadRequestError) as refused:
            _grant(client, customer, currency, 10, grant_type="PAID", payment_collection_method=method, cost=cost)
        assert refused.value.body["error"]["code"] == "BILLING_INTEGRATION_REQUIRED"  # type: ignore[index]
        assert list(client.v1.credits.grants.list(customer_id=customer)) == []
        with pytest.raises(stigg.BadRequestError) as refused:
            _grant(client, customer, currency, 10, grant_type="PAID", payment_collection_method=method)
        assert refused.value.body["error"]["code"] == "INVALID_ARGUMENT"  # type: ignore[index]
    with pytest.raises(stigg.BadRequestError):
        _grant(client, customer, currency, 10, billing_information={"isInvoicePaid": True})
    for bad in (
        {"amount": 0},
        {"amount": 1.0000001},
        {"priority": 101},
        {"expire_at": datetime(2020, 1, 1, tzinfo=UTC)},
    ):
        with pytest.raises(stigg.BadRequestError):
            _grant(client, customer, currency, **{"amount": 5, **bad})
    with pytest.raises(stigg.NotFoundError):
        _grant(client, customer, "no-such-currency", 5)
    with pytest.raises(stigg.NotFoundError):
        _grant(client, "no-such-customer", currency, 5)
    with pytest.raises(stigg.BadRequestError):
        client.v1.credits.consumption.consume_async(
            consumptions=[
                {"customer_id": customer, "currency_id": currency, "amount": 1, "idempotency_key": str(i)}
                for i in range(1001)
            ]
        )
    with pytest.raises(stigg.BadRequestError):
        _balance(client, customer, currency, reserve_amount=5)  # no reservationId
    with pytest.raises(stigg.BadRequestError):
        _balance(client, customer, currency, reserve_amount=5, reservation_id="x", reservation_ttl_seconds=86_401)
    recharge = client.v1.credits.get_auto_recharge(customer_id=customer, currency_id=currency).data
    assert recharge.is_enabled is False and recharge.customer_id == customer


def test_credit_usage_series_per_feature(client: stigg.Stigg, wallet: tuple[str, str]) -> None:
    customer, currency = wallet
    _grant(client, customer, currency, 100)
    for n, amount in enumerate((3, 4.5)):
        client.v1.credits.consumption.consume(
            customer_id=customer, currency_id=currency, amount=amount, idempotency_key=f"{customer}-u{n}"
        )
    usage = client.v1.credits.get_usage(customer_id=customer, currency_id=currency, time_range="LAST_DAY").data
    assert usage.currency is not None and usage.currency.currency_id == currency
    assert [(s.feature_id, s.total_credits, s.event_count) for s in usage.series] == [(None, 7.5, 2)]
    assert sum(p.value for p in usage.series[0].points) == 7.5
    assert usage.pagination.next is None
    earlier = datetime.now(UTC) - timedelta(days=10)
    empty = client.v1.credits.get_usage(customer_id=customer, start_date=earlier, end_date=earlier + timedelta(days=1))
    assert empty.data.series == []


def test_credit_usage_counts_what_released_reservations_charged(client: stigg.Stigg, wallet: tuple[str, str]) -> None:
    """Credits charged by a reservation's release are consumed as much as a direct consumption: the usage
    series used to count only CREDITS_CONSUMED entries, so a hold released in time (RESERVED, then
    RELEASED returning the rest) was missing while the balance had it consumed."""
    customer, currency = wallet
    _grant(client, customer, currency, 20, priority=10)
    _grant(client, customer, currency, 100)
    client.v1.credits.consumption.consume(
        customer_id=customer, currency_id=currency, amount=3, idempotency_key=f"{customer}-direct"
    )
    release = client.v1.credits.reservations.release
    # Held on both grants (20 + 10), 25 charged: 20 on the first, 5 on the second, 5 returned.
    _balance(client, customer, currency, reserve_amount=30, reservation_id=f"{customer}-r1")
    release(f"{customer}-r1", customer_id=customer, currency_id=currency, consumed_amount=25)
    # Nothing charged: not usage.
    _balance(client, customer, currency, reserve_amount=10, reservation_id=f"{customer}-r2")
    release(f"{customer}-r2", customer_id=customer, currency_id=currency, consumed_amount=0)
    # More than held: the hold charged and 3 drawn afresh, one consumption.
    _balance(client, customer, currency, reserve_amount=5, reservation_id=f"{customer}-r3")
    release(f"{customer}-r3", customer_id=customer, currency_id=currency, consumed_amount=8)

    balance = _balance(client, customer, currency)
    assert (balance.current_usage, balance.usage_limit) == (36, 120)
    usage = client.v1.credits.get_usage(customer_id=customer, currency_id=currency, time_range="LAST_DAY").data
    assert [(s.feature_id, s.total_credits, s.event_count) for s in usage.series] == [(None, 36, 3)]
    assert sum(p.value for p in usage.series[0].points) == 36
