"""Recurring credits through time, with the test clock and the job worker, on SQLite and PostgreSQL (one
server per module and engine; each test makes its own product, plan, currency and customer): plans and
add-ons granting credits per cadence (monthly grants on an annual plan), a subscription's own credit
entitlement, changes mid-period, cancellation with and without `prorate`."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import stigg
from sqlalchemy import select

from entitle.clock import utcnow
from entitle.credits import recurring
from entitle.customers.models import Customer
from entitle.jobs.service import Worker
from entitle.subscriptions.models import Subscription
from entitle.usage.waiting import fold_waiting
from tests.conftest import LiveServer
from tests.support.clock import TestClock

_ids = itertools.count()
START = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)  # a month-end anchor: periods must not drift
PRICES = {
    "pricing_type": "PAID",
    "pricing_models": [
        {
            "billing_model": "FLAT_FEE",
            "price_periods": [
                {"billing_period": "MONTHLY", "price": {"amount": 10, "currency": "usd"}},
                {"billing_period": "ANNUALLY", "price": {"amount": 100, "currency": "usd"}},
            ],
        }
    ],
}


class Shop:
    """One product with a plan granting `amount` credits per `cadence`, a currency and a customer."""

    def __init__(self, server: LiveServer, clock: TestClock) -> None:
        self.client = server.stigg()
        self.clock = clock
        self.worker = Worker(server.db)
        n = next(_ids)
        self.n = n
        self.product, self.plan, self.currency, self.customer = f"p{n}", f"plan{n}", f"ai{n}", f"c{n}"
        c = self.client.v1
        c.products.create_product(id=self.product, display_name="App")
        c.credits.custom_currencies.create(id=self.currency, display_name="AI credits")
        c.customers.provision(id=self.customer)

    def make_plan(self, ref: str, entitlements: list[dict[str, Any]], **extra: Any) -> None:
        c = self.client.v1
        c.plans.create(id=ref, display_name=ref, product_id=self.product)
        c.plans.entitlements.create(ref, entitlements=entitlements)
        c.plans.update(ref, charges=PRICES, **extra)
        c.plans.publish(ref, migration_type="NEW_CUSTOMERS")

    def credit(self, amount: float, cadence: str = "MONTH", **extra: Any) -> dict[str, Any]:
        return {"type": "CREDIT", "id": self.currency, "amount": amount, "cadence": cadence, **extra}

    def provision(self, plan: str | None = None, **extra: Any) -> Any:
        return self.client.v1.subscriptions.provision(
            customer_id=self.customer, plan_id=plan or self.plan, **extra
        ).data.subscription

    def pass_time(self, until: datetime) -> None:
        self.clock.set(until)
        self.worker.drain()

    def grants(self) -> list[Any]:
        found = self.client.v1.credits.grants.list(customer_id=self.customer, currency_id=self.currency, limit=100)
        return sorted(found, key=lambda g: (g.effective_at, g.created_at))

    def balance(self) -> Decimal:
        check = self.client.v1.customers.check_entitlement(self.customer, currency_id=self.currency).data
        return Decimal(str(check.usage_limit)) - Decimal(str(check.current_usage))

    def consume(self, amount: float, key: str) -> None:
        self.client.v1.credits.consumption.consume(
            customer_id=self.customer, currency_id=self.currency, amount=amount, idempotency_key=f"{self.n}-{key}"
        )

    def ledger_sum(self) -> Decimal:
        entries = self.client.v1.credits.list_ledger(customer_id=self.customer, currency_id=self.currency, limit=100)
        return sum((Decimal(str(e.amount)) for e in entries), Decimal(0))


@pytest.fixture
def shop(module_server: LiveServer, test_clock: TestClock) -> Iterator[Shop]:
    test_clock.set(START)
    yield Shop(module_server, test_clock)


def _month(k: int) -> datetime:
    """The k-th monthly boundary from START, counted from START (Jan 31 -> Feb 28 -> Mar 31 ...)."""
    year, month = divmod(START.month - 1 + k, 12)
    first = START.replace(year=START.year + year, month=month + 1, day=1)
    last_day = ((first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day
    return first.replace(day=min(START.day, last_day))


def test_an_annual_plan_grants_monthly_credits_for_a_year(shop: Shop) -> None:
    shop.make_plan(shop.plan, [shop.credit(100)])
    shop.provision(billing_period="ANNUALLY")
    assert shop.balance() == 100
    for k in range(12):
        shop.pass_time(_month(k) + timedelta(days=3))
        shop.consume(30, f"m{k}")
        assert shop.balance() == 70  # this month's 100, less what was consumed: last month's rest expired
        check = shop.client.v1.customers.check_entitlement(shop.customer, currency_id=shop.currency).data
        assert check.usage_period_end == _month(k + 1)  # when this month's recurring credits end
        shop.worker.drain()
        shop.pass_time(_month(k + 1) - timedelta(seconds=1))  # a retried renewal changes nothing
        assert shop.balance() == 70
    shop.pass_time(_month(12) + timedelta(seconds=1))  # the 13th month: the plan's second year
    grants = [g for g in shop.grants() if g.grant_type == "RECURRING"]
    assert len(grants) == 13
    assert [g.effective_at for g in grants] == [_month(k) for k in range(13)]
    assert [g.expire_at for g in grants] == [_month(k + 1) for k in range(13)]
    assert {g.status for g in grants[:12]} == {"EXPIRED"} and grants[12].status == "ACTIVE"
    assert all(g.amount == 100 and g.consumed_amount == (30 if i < 12 else 0) for i, g in enumerate(grants))
    assert {g.source_type for g in grants} == {"PLAN_ENTITLEMENT"}
    expired = list(
        shop.client.v1.credits.list_ledger(
            customer_id=shop.customer, currency_id=shop.currency, event_type="CREDITS_EXPIRED", limit=100
        )
    )
    assert sorted(Decimal(str(e.amount)) for e in expired) == [Decimal(-70)] * 12
    assert shop.ledger_sum() == shop.balance() == 100


def test_yearly_cadence_and_add_on_increments(shop: Shop) -> None:
    c = shop.client.v1
    addon = f"more{shop.n}"
    c.addons.create(id=addon, display_name="More", product_id=shop.product)
    c.addons.entitlements.create(addon, entitlements=[shop.credit(50, "YEAR", behavior="Increment")])
    c.addons.publish(addon, migration_type="NEW_CUSTOMERS")
    shop.make_plan(shop.plan, [shop.credit(1000, "YEAR")], compatible_addon_ids=[addon])
    shop.provision(billing_period="MONTHLY", addons=[{"id": addon, "quantity": 2}])
    (grant,) = shop.grants()
    assert (grant.amount, grant.effective_at, grant.expire_at) == (1100, START, _month(12))
    shop.pass_time(_month(3))  # monthly billing, yearly credits: nothing new in between
    assert len(shop.grants()) == 1 and shop.balance() == 1100


def test_a_subscription_credit_entitlement_and_changes_mid_period(shop: Shop) -> None:
    shop.make_plan(shop.plan, [shop.credit(10)])
    sub = shop.provision(entitlements=[shop.credit(200)])
    assert [g.amount for g in shop.grants()] == [200]  # the subscription's own amount overrides the plan's
    assert sub.subscription_entitlements and sub.subscription_entitlements[0].type == "CREDIT"
    shop.pass_time(START + timedelta(days=5))
    shop.consume(150, "a")
    # More mid-period: the difference is granted at once.
    shop.client.v1.subscriptions.update(sub.id, entitlements=[shop.credit(300)])
    assert [g.amount for g in shop.grants()] == [200, 100] and shop.balance() == 150
    # Less: what was granted is voided; what is left of the new amount after what was used is granted.
    shop.client.v1.subscriptions.update(sub.id, entitlements=[shop.credit(180)])
    live = [g for g in shop.grants() if g.status == "ACTIVE"]
    assert [g.amount for g in live] == [30] and shop.balance() == 30
    # Below what was used: nothing more this period.
    shop.client.v1.subscriptions.update(sub.id, entitlements=[shop.credit(100)])
    assert shop.balance() == 0 and all(g.status == "VOIDED" for g in shop.grants())
    assert shop.ledger_sum() == shop.balance()
    # The next period grants the new amount.
    shop.pass_time(_month(1))
    assert shop.balance() == 100


def test_credit_entitlements_on_subscriptions_are_checked(shop: Shop) -> None:
    shop.make_plan(shop.plan, [shop.credit(10)])
    for bad in (
        {"type": "CREDIT", "id": shop.currency, "amount": 5},
        {"type": "CREDIT", "id": shop.currency, "amount": 5, "cadence": "MONTH", "usage_limit": 3},
        {"type": "CREDIT", "id": shop.currency, "amount": 0.1234567, "cadence": "MONTH"},
        {"type": "FEATURE", "id": "x", "amount": 5},
    ):
        with pytest.raises(stigg.BadRequestError):
            shop.provision(entitlements=[bad])
    with pytest.raises(stigg.NotFoundError):
        shop.provision(entitlements=[{"type": "CREDIT", "id": "no-such-currency", "amount": 5, "cadence": "MONTH"}])
    assert shop.client.v1.subscriptions.list(customer_id=shop.customer).data == []  # nothing half-written


@pytest.mark.parametrize("prorate", [True, False])
def test_cancellation_revokes_or_keeps_the_period_grant(shop: Shop, prorate: bool) -> None:
    shop.make_plan(shop.plan, [shop.credit(100)])
    sub = shop.provision()
    shop.pass_time(START + timedelta(days=10))
    shop.consume(40, "a")
    shop.client.v1.subscriptions.cancel(sub.id, cancellation_time="IMMEDIATE", prorate=prorate)
    (grant,) = shop.grants()
    assert grant.status == ("VOIDED" if prorate else "ACTIVE")
    assert shop.balance() == (0 if prorate else 60)
    shop.pass_time(_month(2))  # no renewal after the end
    assert len(shop.grants()) == 1 and shop.balance() == 0
    assert shop.ledger_sum() == 0
    # A subscription after a cancellation is a new purchase, not a plan change: granted in full.
    shop.provision()
    assert shop.balance() == 100


def test_prorated_cancellation_at_period_end_revokes_when_it_ends(shop: Shop) -> None:
    shop.make_plan(shop.plan, [shop.credit(100, "YEAR")])
    sub = shop.provision(billing_period="MONTHLY")
    shop.client.v1.subscriptions.cancel(sub.id, cancellation_time="END_OF_BILLING_PERIOD", prorate=True)
    assert shop.balance() == 100  # still live until the period ends
    shop.pass_time(_month(1) + timedelta(seconds=1))
    (grant,) = shop.grants()
    assert grant.status == "VOIDED" and shop.balance() == 0  # the yearly grant did not outlive the subscription


def test_a_plan_change_counts_what_the_period_already_used(shop: Shop) -> None:
    """docs/credits.md, "Plan changes": the new plan's amount less what the period used, never a refill."""
    shop.make_plan(shop.plan, [shop.credit(100)])
    bigger, smaller = f"big{shop.n}", f"small{shop.n}"
    shop.make_plan(bigger, [shop.credit(500)])
    shop.make_plan(smaller, [shop.credit(50)])
    shop.provision()
    shop.pass_time(START + timedelta(days=5))
    shop.consume(30, "a")
    shop.provision()  # the same plan again
    assert shop.balance() == 70
    shop.provision()
    assert shop.balance() == 70
    shop.provision(bigger)  # an upgrade mid-period: 500 less the 30 used
    assert shop.balance() == 470
    shop.consume(40, "b")  # 70 used in the period
    shop.provision(smaller)  # a downgrade below what was used: nothing more this period
    assert shop.balance() == 0
    sub = shop.provision(shop.plan)  # back to 100: what is left of it
    assert shop.balance() == 30
    live = [(g.amount, g.status) for g in shop.grants() if g.status == "ACTIVE"]
    assert live == [(30, "ACTIVE")]
    assert shop.ledger_sum() == shop.balance()
    shop.pass_time(sub.current_billing_period_end + timedelta(seconds=1))  # the next period grants in full
    assert shop.balance() == 100


def test_a_promotional_grant_expiring_mid_consumption(shop: Shop) -> None:
    shop.make_plan(shop.plan, [shop.credit(100)])
    shop.provision()
    promo = shop.client.v1.credits.grants.create(
        customer_id=shop.customer,
        currency_id=shop.currency,
        amount=50,
        display_name="Welcome",
        grant_type="PROMOTIONAL",
        expire_at=START + timedelta(days=10),
    ).data
    shop.consume(20, "a")  # the promotion expires first: drawn first
    shop.pass_time(START + timedelta(days=11))
    shop.consume(20, "b")  # the promotion is gone (30 expired with it): the plan's credits pay
    grants = {g.id: g for g in shop.grants()}
    assert grants[promo.id].status == "EXPIRED" and grants[promo.id].consumed_amount == 20
    recurring = next(g for g in grants.values() if g.grant_type == "RECURRING")
    assert recurring.consumed_amount == 20 and shop.balance() == 80
    assert shop.ledger_sum() == 80


def test_a_soft_limit_grants_the_check_beyond_the_balance(shop: Shop) -> None:
    hard = f"hard{shop.n}"
    shop.make_plan(shop.plan, [shop.credit(10, has_soft_limit=True)])
    shop.make_plan(hard, [shop.credit(10)])
    shop.provision()
    shop.consume(25, "a")  # never refused: 15 overdrawn
    check = shop.client.v1.customers.check_entitlement(shop.customer, currency_id=shop.currency).data
    assert (check.is_granted, check.usage_limit, check.current_usage) == (True, 10, 25)
    shop.provision(hard)
    check = shop.client.v1.customers.check_entitlement(shop.customer, currency_id=shop.currency).data
    assert (check.is_granted, check.access_denied_reason) == (False, "InsufficientCredits")


def _priced_plan(shop: Shop, rate: float) -> tuple[str, str]:
    """A plan granting 100 credits a month whose two features cost `rate` credits per unit: `calls`
    (reported usage) and `tokens` (metered events, SUM of the `tokens` dimension)."""
    calls, tokens = f"calls{shop.n}", f"tokens{shop.n}"
    f = shop.client.v1.features
    f.create_feature(id=calls, display_name="Calls", feature_type="NUMBER", meter_type="INCREMENTAL")
    f.create_feature(
        id=tokens,
        display_name="Tokens",
        feature_type="NUMBER",
        meter_type="INCREMENTAL",
        meter={
            "aggregation": {"function": "SUM", "field": "tokens"},
            "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": f"llm{shop.n}"}]}],
        },
    )
    c = shop.client.v1
    c.plans.create(id=shop.plan, display_name="AI", product_id=shop.product)
    unlimited = {"has_unlimited_usage": True}
    c.plans.entitlements.create(
        shop.plan,
        entitlements=[
            shop.credit(100),
            {"type": "FEATURE", "id": calls, **unlimited},
            {"type": "FEATURE", "id": tokens, **unlimited},
        ],
    )
    per_unit = [{"billing_period": "MONTHLY", "credit_rate": {"amount": rate, "currency_id": shop.currency}}]
    charges = {
        "pricing_type": "PAID",
        "pricing_models": [
            *PRICES["pricing_models"],
            {"billing_model": "CREDIT_BASED", "feature_id": calls, "price_periods": per_unit},
            {"billing_model": "CREDIT_BASED", "feature_id": tokens, "price_periods": per_unit},
        ],
    }
    c.plans.update(shop.plan, charges=charges)
    c.plans.publish(shop.plan, migration_type="NEW_CUSTOMERS")
    return calls, tokens


def test_a_credit_priced_feature_draws_credits_when_used(shop: Shop) -> None:
    calls, tokens = _priced_plan(shop, 0.333333)
    shop.provision(billing_period="MONTHLY")
    report = {"customer_id": shop.customer, "feature_id": calls, "value": 3, "idempotency_key": f"{shop.n}-u1"}
    answer = shop.client.v2.usage.report(usages=[report]).data
    (first,) = answer.usages
    assert first.credit is not None
    assert (first.credit.consumed, first.credit.currency_id) == (0.999999, shop.currency)
    assert answer.credits is not None
    (wallet,) = answer.credits
    assert (wallet.customer_id, wallet.currency_id, wallet.usage_limit, wallet.current_usage) == (
        shop.customer,
        shop.currency,
        100,
        0.999999,
    )
    answer = shop.client.v2.usage.report(usages=[report]).data  # a retry draws nothing
    assert answer.usages[0].credit is not None and answer.usages[0].credit.consumed == 0
    assert answer.credits is not None and answer.credits[0].current_usage == 0.999999
    # SET lowers the counter: nothing drawn, nothing returned; raising it again draws the difference.
    shop.client.v2.usage.report(
        usages=[{"customer_id": shop.customer, "feature_id": calls, "value": 1, "update_behavior": "SET"}]
    )
    (raised,) = shop.client.v2.usage.report(
        usages=[{"customer_id": shop.customer, "feature_id": calls, "value": 4, "update_behavior": "SET"}]
    ).data.usages
    assert raised.credit is not None and raised.credit.consumed == 0.999999
    shop.client.v1.events.report(
        events=[
            {
                "customer_id": shop.customer,
                "event_name": f"llm{shop.n}",
                "idempotency_key": f"{shop.n}-e{i}",
                "dimensions": {"tokens": 300},
            }
            for i in range(2)
        ]
    )
    assert shop.balance() == Decimal(100) - Decimal("1.999998") - Decimal("199.9998")  # overdrawn, never refused
    consumed = list(
        shop.client.v1.credits.list_ledger(
            customer_id=shop.customer, currency_id=shop.currency, event_type="CREDITS_CONSUMED", limit=100
        )
    )
    by_feature: dict[str | None, Decimal] = {}
    for e in consumed:
        by_feature[e.feature_id] = by_feature.get(e.feature_id, Decimal(0)) - Decimal(str(e.amount))
    assert by_feature == {calls: Decimal("1.999998"), tokens: Decimal("199.9998")}
    assert shop.ledger_sum() == shop.balance()


def test_estimates_say_what_usage_and_events_would_cost_and_write_nothing(shop: Shop) -> None:
    calls, tokens = _priced_plan(shop, 0.5)
    c = shop.client.v1
    unknown = c.usage.estimate(customer_id=shop.customer, feature_id="nope", value=1).data
    assert (unknown.estimates, unknown.warnings) == ([], ["FEATURE_NOT_FOUND"])
    shop.provision(billing_period="MONTHLY")
    shop.client.v2.usage.report(usages=[{"customer_id": shop.customer, "feature_id": calls, "value": 10}])
    ledger_before = shop.ledger_sum()

    (usage,) = c.usage.estimate(customer_id=shop.customer, feature_id=calls, value=7).data.estimates
    assert (usage.currency_id, usage.current_balance, usage.estimated_cost) == (shop.currency, 95, 3.5)
    assert (usage.balance_after_estimate, usage.would_overdraft) == (91.5, False)
    assert [(b.feature_id, b.cost) for b in usage.breakdown] == [(calls, 3.5)]
    (as_set,) = c.usage.estimate(
        customer_id=shop.customer, feature_id=calls, value=12, update_behavior="SET"
    ).data.estimates
    assert as_set.estimated_cost == 1  # 12 - the 10 already counted, at 0.5
    big = c.usage.estimate(customer_id=shop.customer, feature_id=calls, value=1000).data.estimates[0]
    assert (big.balance_after_estimate, big.would_overdraft) == (-405, True)

    event = c.events.estimate(customer_id=shop.customer, event_name=f"llm{shop.n}", dimensions={"tokens": 40}).data
    (priced,) = event.estimates
    assert (priced.estimated_cost, [(b.feature_id, b.cost) for b in priced.breakdown]) == (20, [(tokens, 20)])
    assert event.warnings == []
    assert c.events.estimate(customer_id=shop.customer, event_name="other").data.warnings == ["FEATURE_NOT_FOUND"]
    plain = f"plain{shop.n}"
    c.features.create_feature(id=plain, display_name="Plain", feature_type="NUMBER", meter_type="INCREMENTAL")
    answer = c.usage.estimate(customer_id=shop.customer, feature_id=plain, value=1).data
    assert (answer.estimates, answer.warnings) == ([], ["FEATURE_NOT_CREDIT_BASED"])
    with pytest.raises(stigg.NotFoundError):
        c.usage.estimate(customer_id="nobody", feature_id=calls, value=1)
    with pytest.raises(stigg.BadRequestError):
        c.usage.estimate(customer_id=shop.customer, feature_id=calls, value=1, dimensions={"a": "b"})
    assert shop.ledger_sum() == ledger_before and shop.balance() == 95  # nothing was written


@pytest.mark.parametrize("cadence", ["MONTHLY", "BEGINNING_OF_BILLING_PERIOD"])
def test_a_price_granting_credits_on_an_annual_plan(shop: Shop, cadence: str) -> None:
    def period(billing_period: str, amount: int) -> dict[str, Any]:
        return {
            "billing_period": billing_period,
            "price": {"amount": amount, "currency": "usd"},
            "credit_rate": {"amount": 250, "currency_id": shop.currency},
            "credit_grant_cadence": cadence,
        }

    c = shop.client.v1
    c.plans.create(id=shop.plan, display_name="Credits", product_id=shop.product)
    model = {"billing_model": "CREDIT_BASED", "price_periods": [period("MONTHLY", 20), period("ANNUALLY", 200)]}
    c.plans.update(shop.plan, charges={"pricing_type": "PAID", "pricing_models": [model]})
    c.plans.publish(shop.plan, migration_type="NEW_CUSTOMERS")
    shop.provision(billing_period="ANNUALLY")
    shop.pass_time(_month(1) + timedelta(days=1))
    shop.pass_time(_month(2) + timedelta(days=1))
    grants = shop.grants()
    assert {g.source_type for g in grants} == {"PRICE"} and {g.amount for g in grants} == {250}
    if cadence == "MONTHLY":
        assert [g.expire_at for g in grants] == [_month(1), _month(2), _month(3)]
    else:  # the annual billing period
        assert [g.expire_at for g in grants] == [_month(12)]


def test_credits_per_unit_of_a_feature_quantity(shop: Shop) -> None:
    seats = f"seats{shop.n}"
    c = shop.client.v1
    c.features.create_feature(id=seats, display_name="Seats", feature_type="NUMBER", meter_type="FLUCTUATING")
    c.plans.create(id=shop.plan, display_name="Team", product_id=shop.product)
    c.plans.entitlements.create(
        shop.plan,
        entitlements=[
            shop.credit(10, dependency_feature_id=seats),
            {"type": "FEATURE", "id": seats, "usage_limit": 50},
        ],
    )
    per_seat = {
        "billing_model": "PER_UNIT",
        "feature_id": seats,
        "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 5, "currency": "usd"}}],
    }
    c.plans.update(shop.plan, charges={"pricing_type": "PAID", "pricing_models": [per_seat]})
    c.plans.publish(shop.plan, migration_type="NEW_CUSTOMERS")
    sub = shop.provision(billing_period="MONTHLY", charges=[{"id": seats, "quantity": 3, "type": "FEATURE"}])
    assert [g.amount for g in shop.grants()] == [30]
    shop.client.v1.subscriptions.update(sub.id, charges=[{"id": seats, "quantity": 5, "type": "FEATURE"}])
    assert [g.amount for g in shop.grants()] == [30, 20] and shop.balance() == 50  # two more seats: 20 more


@pytest.mark.parametrize("behavior", ["CONVERT_TO_PAID", "CANCEL_SUBSCRIPTION"])
def test_a_trial_grants_until_it_ends_then_the_paid_cycle_grants(shop: Shop, behavior: str) -> None:
    trial = {"duration": 14, "units": "DAY", "trial_end_behavior": behavior}
    shop.make_plan(shop.plan, [shop.credit(100)], default_trial_config=trial)
    sub = shop.provision(billing_period="MONTHLY")
    assert sub.status == "IN_TRIAL"
    trial_end = START + timedelta(days=14)
    assert [(g.effective_at, g.expire_at) for g in shop.grants()] == [(START, trial_end)]
    shop.pass_time(trial_end + timedelta(seconds=1))
    grants = shop.grants()
    assert grants[0].status == "EXPIRED"
    if behavior == "CONVERT_TO_PAID":
        assert [(g.effective_at, g.status) for g in grants[1:]] == [(trial_end, "ACTIVE")]
        assert shop.balance() == 100
    else:  # the trial expired: nothing granted beyond it
        assert all(g.status != "ACTIVE" for g in grants) and shop.balance() == 0


def test_renewals_racing_each_other_grant_a_period_once(shop: Shop, module_server: LiveServer) -> None:
    """Four renewals of the same subscription at the same instant (a retried job, two workers), in parallel
    transactions: one grant for the period, whatever the interleaving (PostgreSQL locks the wallet and reads
    the period's grants under the lock; SQLite serializes writers)."""
    shop.make_plan(shop.plan, [shop.credit(100)])
    sub = shop.provision()
    shop.clock.set(_month(1))  # the renewal is due; the worker does not run it

    def renew() -> None:
        with module_server.db.transaction() as s:
            # Not even the subscription's lock: the wallet's lock and the re-read under it must suffice.
            row = s.scalars(select(Subscription).where(Subscription.ref_id == sub.id)).one()
            recurring.sync_subscription(s, row, utcnow())

    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(renew) for _ in range(4)]:
            done.result()
    shop.worker.drain()  # the scheduled renewal too
    grants = shop.grants()
    assert [(g.effective_at, g.amount) for g in grants] == [(START, 100), (_month(1), 100)]
    assert shop.balance() == 100


def test_usage_that_waited_draws_its_credits_once_when_it_is_folded_in(shop: Shop, module_server: LiveServer) -> None:
    _, tokens = _priced_plan(shop, 0.333333)
    waited = [7, 11, 5]
    shop.client.v1.events.report(
        events=[
            {
                "customer_id": shop.customer,
                "event_name": f"llm{shop.n}",
                "idempotency_key": f"{shop.n}-w{i}",
                "dimensions": {"tokens": amount},
            }
            for i, amount in enumerate(waited)
        ]
    )
    assert shop.ledger_sum() == 0  # no subscription yet: the events wait, nothing is drawn
    shop.provision(billing_period="MONTHLY")  # folds what waited (at once, and again before commit)
    check = shop.client.v1.customers.check_entitlement(shop.customer, feature_id=tokens).data
    assert check.current_usage == sum(waited)
    cost = Decimal(sum(waited)) * Decimal("0.333333")  # one draw for the fold, rounded as the events' draws
    consumed = list(
        shop.client.v1.credits.list_ledger(
            customer_id=shop.customer, currency_id=shop.currency, event_type="CREDITS_CONSUMED", limit=100
        )
    )
    assert sum(-Decimal(str(e.amount)) for e in consumed) == cost
    assert {e.feature_id for e in consumed} == {tokens}
    assert shop.balance() == Decimal(100) - cost
    assert shop.ledger_sum() == shop.balance()
    with module_server.db.transaction() as s:  # a later fold (another entitlement change) draws nothing
        customer = s.scalars(select(Customer).where(Customer.ref_id == shop.customer)).one()
        fold_waiting(s, customer.environment_id, shop.customer, None)
    assert shop.ledger_sum() == Decimal(100) - cost
