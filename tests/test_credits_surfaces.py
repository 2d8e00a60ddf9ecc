"""Credits where a capability shows up beyond its own endpoints: usage grouped by dimensions (through the
official client), the webhooks a wallet's movements send, and the stream's `credits.updated` events.
SQLite and PostgreSQL alike (the server fixtures are parametrized over both)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stigg
from hypothesis import given
from hypothesis import strategies as st

from entitle.credits.events import WalletBalance, crossed_low, crossed_zero
from entitle.credits.usage import Grouping, parse_group_by, series_key
from entitle.errors import InvalidArgument
from entitle.jobs.service import Worker
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.sse import SSEClient
from tests.test_webhooks import Receiver, create_hook
from tests.test_webhooks import receivers as receivers
from tests.test_webhooks import webhook_env as webhook_env

_ids = itertools.count()
CREDIT_TYPES = [
    "credit_grant.created",
    "credit_grant.expired",
    "credit_grant.voided",
    "credit_balance.low",
    "credit_balance.depleted",
]


def _wallet(client: stigg.Stigg) -> tuple[str, str]:
    n = next(_ids)
    customer, currency = f"surf-{n}", f"surf-credits-{n}"
    client.v1.customers.provision(id=customer)
    client.v1.credits.custom_currencies.create(id=currency, display_name="AI credits")
    return customer, currency


def _consume(client: stigg.Stigg, customer: str, currency: str, amount: float, key: str, **extra: Any) -> Any:
    return client.v1.credits.consumption.consume(
        customer_id=customer, currency_id=currency, amount=amount, idempotency_key=key, **extra
    ).data


# -- usage grouped by dimensions ---------------------------------------------------------------------


def test_credit_usage_grouped_by_dimensions(module_server: LiveServer) -> None:
    client = module_server.stigg()
    customer, currency = _wallet(client)
    client.v1.credits.grants.create(
        customer_id=customer, currency_id=currency, amount=100, display_name="G", grant_type="PROMOTIONAL"
    )
    spent = [("alice", "eu", 3), ("alice", "us", 4), ("bob", "eu", 5), ("alice", "eu", 1.5), (None, None, 2)]
    for n, (user, region, amount) in enumerate(spent):
        dims = {k: v for k, v in (("userId", user), ("region", region)) if v is not None}
        _consume(client, customer, currency, amount, f"{customer}-{n}", dimensions=dims or None)

    by_user = client.v1.credits.get_usage(customer_id=customer, currency_id=currency, group_by="userId").data
    assert [(_tags(s), s.total_credits, s.event_count, s.feature_id) for s in by_user.series] == [
        ({}, 2, 1, None),  # consumptions without the key form the untagged series
        ({"userId": "alice"}, 8.5, 3, None),
        ({"userId": "bob"}, 5, 1, None),
    ]
    assert all(sum(p.value for p in s.points) == s.total_credits for s in by_user.series)

    both = client.v1.credits.get_usage(customer_id=customer, group_by="featureId,userId,region").data
    assert [(_tags(s), s.total_credits) for s in both.series] == [
        ({}, 2),
        ({"userId": "alice", "region": "eu"}, 4.5),
        ({"userId": "alice", "region": "us"}, 4),
        ({"userId": "bob", "region": "eu"}, 5),
    ]

    # Paged both ways over the same order.
    first = client.v1.credits.get_usage(customer_id=customer, group_by="userId,region", limit=3).data
    assert first.pagination.prev is None and first.pagination.next is not None
    rest = client.v1.credits.get_usage(
        customer_id=customer, group_by="userId,region", limit=3, after=first.pagination.next
    ).data
    assert [_tags(s) for s in rest.series] == [{"userId": "bob", "region": "eu"}]
    assert rest.pagination.next is None and rest.pagination.prev is not None
    back = client.v1.credits.get_usage(
        customer_id=customer, group_by="userId,region", limit=3, before=rest.pagination.prev
    ).data
    assert [_tags(s) for s in back.series] == [_tags(s) for s in first.series]

    for bad in ("user id", "a,b,c,d", "userId,userId", "a,,b"):
        with pytest.raises(stigg.BadRequestError) as refused:
            client.v1.credits.get_usage(customer_id=customer, group_by=bad)
        assert refused.value.body["error"]["code"] == "INVALID_ARGUMENT"  # type: ignore[index]


def _tags(series: Any) -> dict[str, str]:
    return {t.key: t.value for t in series.tags or []}


def test_group_by_rules() -> None:
    assert parse_group_by(None) == Grouping(by_feature=True, dimension_keys=())
    assert parse_group_by("userId") == Grouping(by_feature=False, dimension_keys=("userId",))
    assert parse_group_by("a,featureId,b,c") == Grouping(by_feature=True, dimension_keys=("a", "b", "c"))
    with pytest.raises(InvalidArgument):
        parse_group_by("a,b,c,d")
    grouping = parse_group_by("n,flag,s")
    assert series_key(grouping, "f", {"n": 2, "flag": True, "s": "x", "other": 1}) == (
        None,
        (("n", "2"), ("flag", "true"), ("s", "x")),
    )


# -- the low / depleted rule ---------------------------------------------------------------------------

amounts = st.decimals(min_value=-1000, max_value=1000, places=2)


@given(previous=amounts, granted=st.decimals(min_value=0, max_value=1000, places=2), used=amounts)
def test_low_and_depleted_fire_only_on_a_downward_crossing(previous: Any, granted: Any, used: Any) -> None:
    wallet = WalletBalance(
        customer_ref="c", currency_ref="x", resource_ref=None, usage_limit=granted, current_usage=used, reserved=0
    )
    threshold = granted / 10
    assert crossed_low(previous, wallet) == (granted > 0 and previous >= threshold and wallet.balance < threshold)
    assert crossed_zero(previous, wallet) == (previous > 0 and wallet.balance <= 0)
    # Nothing is announced for a movement that does not go down.
    if wallet.balance >= previous:
        assert not crossed_low(previous, wallet) and not crossed_zero(previous, wallet)


# -- webhooks and the stream ---------------------------------------------------------------------------


def _drain(server: LiveServer) -> None:
    Worker(server.db).drain()


def _of(receiver: Receiver, customer: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["data"]) for e in receiver.events() if e["data"].get("customerId") == customer]


def test_wallet_movements_send_webhooks_and_stream_balances(
    server: LiveServer, api: httpx.Client, receivers: Any, test_clock: TestClock
) -> None:
    client = server.stigg()
    test_clock.set(datetime.now(UTC).replace(microsecond=0))
    receiver: Receiver = receivers()
    create_hook(api, receiver.url, CREDIT_TYPES)
    customer, currency = _wallet(client)
    with SSEClient(server.base_url, server.server_key, query=f"?customerId={customer}") as sse:
        grant = client.v1.credits.grants.create(
            customer_id=customer, currency_id=currency, amount=100, display_name="Monthly", grant_type="PAID"
        ).data
        pushed = sse.next_of("credits.updated")
        assert {k: pushed.data[k] for k in ("currencyId", "usageLimit", "currentUsage", "balance", "reserved")} == {
            "currencyId": currency,
            "usageLimit": 100,
            "currentUsage": 0,
            "balance": 100,
            "reserved": 0,
        }

        _consume(client, customer, currency, 85, f"{customer}-a")  # 15 left: not low yet (10%)
        assert sse.next_of("credits.updated").data["balance"] == 15
        _consume(client, customer, currency, 6, f"{customer}-b")  # 9 left: low
        assert sse.next_of("credits.updated").data["balance"] == 9
        _consume(client, customer, currency, 1, f"{customer}-c")  # still low: announced once
        assert sse.next_of("credits.updated").data["balance"] == 8
        held = client.v1.customers.check_entitlement(
            customer, currency_id=currency, reserve_amount=3, reservation_id=f"{customer}-r"
        ).data
        assert held.is_granted
        reserved = sse.next_of("credits.updated")
        assert (reserved.data["balance"], reserved.data["reserved"]) == (5, 3)
        _consume(client, customer, currency, 7, f"{customer}-d")  # overdrawn: depleted
        assert sse.next_of("credits.updated").data["balance"] == -2
        promo = client.v1.credits.grants.create(
            customer_id=customer,
            currency_id=currency,
            amount=50,
            display_name="Promo",
            grant_type="PROMOTIONAL",
            expire_at=test_clock.now() + timedelta(hours=1),
        ).data
        assert sse.next_of("credits.updated").data["balance"] == 48  # the overdraft was settled first
        client.v1.credits.grants.void(grant.id)  # nothing was left on it: the allowance shrinks
        voided_balance = sse.next_of("credits.updated").data
        assert (voided_balance["usageLimit"], voided_balance["balance"]) == (50, 48)
        test_clock.advance(timedelta(hours=2))
        _drain(server)  # the scheduler expires the promotional grant and lets the hold lapse
        expired = sse.next_of("credits.updated").data
        assert (expired["usageLimit"], expired["balance"], expired["reserved"]) == (0, 0, 0)

    _drain(server)
    events = _of(receiver, customer)
    assert [kind for kind, _ in events] == [
        "credit_grant.created",
        "credit_balance.low",
        "credit_balance.depleted",
        "credit_grant.created",
        "credit_grant.voided",
        "credit_grant.expired",
        "credit_balance.depleted",  # the expiry took what was left
    ]
    created, low, depleted, promo_created, voided, promo_expired, emptied = (data for _, data in events)
    assert (created["id"], created["grantType"], created["amount"], created["status"]) == (
        grant.id,
        "PAID",
        100,
        "ACTIVE",
    )
    assert created["currencyId"] == currency
    assert low == {
        "customerId": customer,
        "currencyId": currency,
        "resourceId": None,
        "balance": 9,
        "previousBalance": 15,
        "usageLimit": 100,
        "currentUsage": 91,
        "reserved": 0,
        "lowBalanceThreshold": 10,
    }
    assert (depleted["previousBalance"], depleted["balance"], depleted["reserved"]) == (5, -2, 3)
    assert promo_created["id"] == promo.id and promo_created["expireAt"] is not None
    assert (voided["id"], voided["status"], voided["voidedAt"] is not None) == (grant.id, "VOIDED", True)
    assert (promo_expired["id"], promo_expired["status"]) == (promo.id, "EXPIRED")
    assert (emptied["previousBalance"], emptied["balance"]) == (48, 0)
