"""Checks of a credit-priced feature (`GET .../entitlements/check?featureId=F`, F priced in credits) answer
from the credit balance, on SQLite and PostgreSQL: the FEATURE result is denied `InsufficientCredits` when
the balance cannot pay for the requested usage at the feature's rate. The process's entitlement snapshot
keeps those answers exact: every movement of the wallet (consumption, grant, void, reservation, usage)
reaches the next check in this process, time's own changes (an expiry, a lapsing hold) too without any
write, and another process's movements through the change log (there the currency check, the list's
CREDIT entitlement and a currency's edit too: tests/test_credit_entitlement_answers.py covers them here)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from entitle.credits.checks import NO_CREDITS, FeatureRate, Standing, WalletState
from entitle.credits.engine import Balance
from entitle.credits.events import CreditBalanceChanged, WalletBalance
from entitle.entitlements.snapshot import CustomerView, Snapshot
from entitle.push.feed import SnapshotFeed
from entitle.push.models import KIND_CREDITS, KIND_USAGE
from entitle.push.schemas import Item
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.server import serve_process

_ids = itertools.count()
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PATIENCE = 30.0
"""How long another process may take to follow (far above the push latency): waited for, never timed."""


class PricedShop:
    """A plan granting 10 credits a month, with a feature costing 2 credits a unit, and one customer."""

    def __init__(self, server: LiveServer, *, soft_limit: bool = False) -> None:
        n = next(_ids)
        self.client = server.stigg()
        self.currency, self.feature, self.customer = f"cr{n}", f"calls{n}", f"pc{n}"
        c = self.client.v1
        product, plan = f"pp{n}", f"pplan{n}"
        c.products.create_product(id=product, display_name="App")
        c.credits.custom_currencies.create(id=self.currency, display_name="Credits")
        c.features.create_feature(
            id=self.feature, display_name="Calls", feature_type="NUMBER", meter_type="INCREMENTAL"
        )
        c.plans.create(id=plan, display_name="AI", product_id=product)
        credit = {"type": "CREDIT", "id": self.currency, "amount": 10, "cadence": "MONTH"}
        if soft_limit:
            credit["has_soft_limit"] = True
        c.plans.entitlements.create(
            plan, entitlements=[credit, {"type": "FEATURE", "id": self.feature, "has_unlimited_usage": True}]
        )
        rate = [{"billing_period": "MONTHLY", "credit_rate": {"amount": 2, "currency_id": self.currency}}]
        flat = [{"billing_period": "MONTHLY", "price": {"amount": 10, "currency": "usd"}}]
        c.plans.update(
            plan,
            charges={
                "pricing_type": "PAID",
                "pricing_models": [
                    {"billing_model": "FLAT_FEE", "price_periods": flat},
                    {"billing_model": "CREDIT_BASED", "feature_id": self.feature, "price_periods": rate},
                ],
            },
        )
        c.plans.publish(plan, migration_type="NEW_CUSTOMERS")
        c.customers.provision(id=self.customer)
        c.subscriptions.provision(customer_id=self.customer, plan_id=plan, billing_period="MONTHLY")

    def check(self, requested: int | None = None) -> tuple[bool, str | None]:
        extra: dict[str, Any] = {} if requested is None else {"requested_usage": requested}
        # Twice: the second answer comes from the snapshot when the first was kept; both must agree.
        first, second = (
            self.client.v1.customers.check_entitlement(self.customer, feature_id=self.feature, **extra).data
            for _ in range(2)
        )
        assert first == second
        assert first.type == "FEATURE"
        return first.is_granted, first.access_denied_reason

    def consume(self, amount: float, key: str) -> None:
        self.client.v1.credits.consumption.consume(
            customer_id=self.customer, currency_id=self.currency, amount=amount, idempotency_key=f"{self.customer}{key}"
        )

    def promo(self, amount: float, **extra: Any) -> str:
        return self.client.v1.credits.grants.create(
            customer_id=self.customer,
            currency_id=self.currency,
            amount=amount,
            display_name="Promo",
            grant_type="PROMOTIONAL",
            **extra,
        ).data.id


DENIED = (False, "InsufficientCredits")
GRANTED = (True, None)


def test_a_check_of_a_credit_priced_feature_follows_every_movement_of_the_balance(
    module_server: LiveServer, test_clock: TestClock
) -> None:
    test_clock.set(START)
    shop = PricedShop(module_server)
    assert shop.check(5) == GRANTED  # 5 units cost 10 credits: the whole balance
    assert shop.check(6) == DENIED
    assert shop.check() == GRANTED  # no requested usage: a positive balance

    shop.consume(4, "a")  # 6 left
    assert (shop.check(5), shop.check(3)) == (DENIED, GRANTED)

    promo = shop.promo(100, expire_at=START + timedelta(hours=1))  # 106
    assert shop.check(50) == GRANTED and shop.check(54) == DENIED

    held = shop.client.v1.customers.check_entitlement(
        shop.customer,
        currency_id=shop.currency,
        reserve_amount=100,
        reservation_id=f"{shop.customer}-r",
        reservation_ttl_seconds=60,
    ).data
    assert held.is_granted  # 6 free beside the hold
    assert (shop.check(3), shop.check(4)) == (GRANTED, DENIED)
    test_clock.advance(timedelta(seconds=61))  # the hold lapses: nothing is written until the scheduler runs
    assert shop.check(53) == GRANTED

    shop.client.v1.credits.grants.void(promo)  # back to 6
    assert (shop.check(3), shop.check(4)) == (GRANTED, DENIED)

    shop.promo(20, expire_at=test_clock.now() + timedelta(minutes=30))  # 26
    assert shop.check(13) == GRANTED
    test_clock.advance(timedelta(minutes=30))  # it expires: again no write
    assert (shop.check(3), shop.check(4)) == (GRANTED, DENIED)

    # Usage of the feature draws its credits (3 units: the last 6) and the next check follows.
    (usage,) = shop.client.v2.usage.report(
        usages=[{"customer_id": shop.customer, "feature_id": shop.feature, "value": 3}]
    ).data.usages
    assert usage.credit is not None and usage.credit.consumed == 6
    assert (shop.check(), shop.check(1)) == (DENIED, DENIED)
    shop.promo(2)
    assert (shop.check(1), shop.check(2)) == (GRANTED, DENIED)


def test_a_soft_limit_on_the_currency_never_denies_a_credit_priced_feature(module_server: LiveServer) -> None:
    shop = PricedShop(module_server, soft_limit=True)
    shop.consume(50, "all")  # overdrawn
    assert shop.check(1000) == GRANTED and shop.check() == GRANTED


def test_another_process_follows_the_balance(server: LiveServer, database_url: str, tmp_path: Path) -> None:
    shop = PricedShop(server)
    with (
        serve_process(database_url, tmp_path / "second") as second,
        httpx.Client(base_url=second, headers={"X-API-KEY": server.server_key}, timeout=30) as there,
    ):

        def granted_there(requested: int) -> bool:
            params = {"featureId": shop.feature, "requestedUsage": requested}
            answer = there.get(f"/api/v1/customers/{shop.customer}/entitlements/check", params=params)
            assert answer.status_code == 200, answer.text
            return bool(answer.json()["data"]["isGranted"])

        def becomes(expected: bool, requested: int) -> None:
            deadline = time.monotonic() + PATIENCE
            while granted_there(requested) != expected:
                assert time.monotonic() < deadline, (expected, requested)
                time.sleep(0.02)

        def follows(read: Callable[[], Any], expected: Any) -> None:
            deadline = time.monotonic() + PATIENCE
            while (found := read()) != expected:
                assert time.monotonic() < deadline, (found, expected)
                time.sleep(0.02)

        def balance_there() -> list[tuple[Any, Any, str]]:
            """The currency check there (from its snapshot once held), then the list's CREDIT entitlement
            (read one after the other: a change may land between them, so each is compared, not the two)."""
            path = f"/api/v1/customers/{shop.customer}/entitlements"
            answer = there.get(f"{path}/check", params={"currencyId": shop.currency}).json()["data"]
            listed = there.get(path).json()["data"]["entitlements"]
            balances = [answer] + [e for e in listed if e["type"] == "CREDIT"]
            return [(b["usageLimit"], b["currentUsage"], b["currency"]["displayName"]) for b in balances]

        becomes(True, 5)
        assert granted_there(5)  # held there now
        follows(balance_there, [(10, 0, "Credits")] * 2)
        shop.consume(4, "there")  # made here: the other process hears it from the change log
        becomes(False, 5)
        follows(balance_there, [(10, 4, "Credits")] * 2)
        shop.promo(10)
        becomes(True, 8)
        follows(balance_there, [(20, 4, "Credits")] * 2)
        shop.client.v1.credits.custom_currencies.update(shop.currency, display_name="Renamed")
        follows(balance_there, [(20, 4, "Renamed")] * 2)


# -- the snapshot's own rules, without a server -------------------------------------------------------


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _view() -> CustomerView:
    rate = FeatureRate("credits", Decimal(2), soft_limit=False)
    return CustomerView(
        customer_pk=1,
        archived=False,
        has_subscription=True,
        grants={},
        loaded_at=NOW,
        valid_until=None,
        credit_rates={"calls": (rate,)},
    )


def _kept(snapshot: Snapshot, changes_at: datetime | None = None) -> None:
    balance = Balance(Decimal(10), Decimal(0), Decimal(0), Decimal(0), None)
    state = Standing({"credits": WalletState(balance, changes_at)}, {})
    assert snapshot.keep_customer(1, "acme", None, _view(), {}, snapshot.version(), state)
    assert snapshot.credits(1, "acme", None, NOW) == state


def test_balances_held_are_dropped_by_a_movement_here_or_elsewhere_and_lapse_with_time() -> None:
    snapshot = Snapshot()
    snapshot.caught_up()
    _kept(snapshot)
    wallet = WalletBalance(
        customer_ref="acme",
        currency_ref="credits",
        resource_ref=None,
        usage_limit=Decimal(10),
        current_usage=Decimal(1),
        reserved=Decimal(0),
    )
    snapshot.committed(1, [CreditBalanceChanged(env_id=1, wallet=wallet, previous=Decimal(10))])
    assert snapshot.credits(1, "acme", None, NOW) is None
    assert snapshot.customer(1, "acme", None, NOW) is not None  # the entitlements themselves still hold

    feed = SnapshotFeed(snapshot, "sqlite:///elsewhere.db")
    _kept(snapshot)
    feed.changed([Item(id=1, environment_id=1, kind=KIND_USAGE, customer_ref="acme", data={}, created_at=NOW)])
    assert snapshot.credits(1, "acme", None, NOW) is not None  # usage alone leaves balances
    feed.changed([Item(id=2, environment_id=1, kind=KIND_CREDITS, customer_ref="acme", data={}, created_at=NOW)])
    assert snapshot.credits(1, "acme", None, NOW) is None

    _kept(snapshot, changes_at=NOW + timedelta(minutes=5))
    assert snapshot.credits(1, "acme", None, NOW + timedelta(minutes=4)) is not None
    assert snapshot.credits(1, "acme", None, NOW + timedelta(minutes=5)) is None

    began = snapshot.version()
    snapshot.drop_credits(1, "acme")  # a read begun before a movement is not kept
    assert not snapshot.keep_credits(1, "acme", None, NO_CREDITS, began)
