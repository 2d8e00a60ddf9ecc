"""The batched recurring-credit sync (`recurring.sync_all`: the reads of many subscriptions at once,
`recurring_reads.py`) leaves exactly what syncing each subscription alone, in turn, leaves: the same wallets,
grants (amounts, status, consumed, effective and expiry instants, revisions), ledger entries and scheduled
jobs, on SQLite and PostgreSQL.

One catalog and one set of customers are made per server (two products, one of them with a subscription
per resource; plans with and without a parent; credit entitlements and a credit-priced charge in two
currencies; an add-on bought in quantities; consumption; a cancelled subscription; a plan change
mid-period; an overdraft in a wallet two subscriptions share; credit holds). Each example then changes,
inside one transaction, what the subscriptions are granted (the parent's, the child's and another plan's
amounts, the price's rate, add-on quantities, an override, cancellations, a delegation, a transfer, more
consumption), picks an instant (within the period, on a period boundary, some periods later) and a list of
subscriptions, and syncs them in a batch in one savepoint and one by one in another; the transaction is
rolled back, so no example sees another's writes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from entitle.catalog.packages.events import ParentPlansChanged
from entitle.catalog.packages.models import Package, PackageCharge, PackageEntitlement
from entitle.credits import inherited, recurring
from entitle.credits.models import CreditGrant, CustomCurrency, LedgerEntry, Wallet
from entitle.credits.rules import ACTIVE
from entitle.customers.models import Customer
from entitle.jobs.models import Job
from entitle.subscriptions.models import Subscription, SubscriptionAddon, SubscriptionEntitlement
from entitle.subscriptions.rules import LIVE
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.test_credits_recurring import PRICES

START = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)  # a month-end anchor
FEB_END, MAR_END = datetime(2026, 2, 28, 9, 0, tzinfo=UTC), datetime(2026, 3, 31, 9, 0, tzinfo=UTC)
_ids = itertools.count()


class _Rollback(Exception):
    """Raised to discard an example's transaction."""


@dataclass
class World:
    """What `_build` made: the refs the examples change, and every subscription (ended ones too)."""

    env_id: int
    parent: str
    child: str
    solo: str
    res: str
    addon: str
    currency_a: str
    currency_b: str
    override_sub: int
    customers: list[str]
    subs: list[int]  # every subscription's pk, in creation order (a plan change keeps the ref)


_worlds: dict[str, World] = {}


def _credit(currency: str, amount: float, cadence: str = "MONTH", **extra: Any) -> dict[str, Any]:
    return {"type": "CREDIT", "id": currency, "amount": amount, "cadence": cadence, **extra}


def _build(server: LiveServer, clock: TestClock) -> World:
    n = next(_ids)
    clock.set(START)
    c = server.stigg().v1
    single, multi = f"eqs{n}", f"eqm{n}"
    a, b = f"eqa{n}", f"eqb{n}"
    parent, child, solo, res, addon = f"eqpar{n}", f"eqchi{n}", f"eqsolo{n}", f"eqres{n}", f"eqadd{n}"
    c.products.create_product(id=single, display_name="Single")
    c.products.create_product(id=multi, display_name="Per resource")
    c.products.update_product(multi, multiple_subscriptions=True)
    for currency in (a, b):
        c.credits.custom_currencies.create(id=currency, display_name=currency)
    c.addons.create(id=addon, display_name="More", product_id=single)
    c.addons.entitlements.create(addon, entitlements=[_credit(a, 30, behavior="Increment")])
    c.addons.publish(addon, migration_type="NEW_CUSTOMERS")

    def plan(ref: str, product: str, entitlements: list[dict[str, Any]], charges: dict[str, Any], **extra: Any) -> None:
        c.plans.create(id=ref, display_name=ref, product_id=product, **extra)
        if entitlements:
            c.plans.entitlements.create(ref, entitlements=entitlements)
        c.plans.update(ref, charges=charges, compatible_addon_ids=[addon] if product == single else [])
        c.plans.publish(ref, migration_type="NEW_CUSTOMERS")

    def priced(currency: str, rate: int) -> dict[str, Any]:
        periods = [
            {
                "billing_period": period,
                "price": {"amount": amount, "currency": "usd"},
                "credit_rate": {"amount": rate, "currency_id": currency},
                "credit_grant_cadence": "MONTHLY",
            }
            for period, amount in (("MONTHLY", 20), ("ANNUALLY", 200))
        ]
        return {"pricing_type": "PAID", "pricing_models": [{"billing_model": "CREDIT_BASED", "price_periods": periods}]}

    plan(parent, single, [_credit(a, 100)], PRICES)
    plan(child, single, [_credit(b, 40)], PRICES, parent_plan_id=parent)
    plan(solo, single, [_credit(a, 200)], priced(a, 250))  # two grants in one wallet: entitlement and price
    plan(res, multi, [_credit(a, 80)], priced(b, 25))

    customers = [f"eqc{n}-{i}" for i in range(7)]
    for ref in customers:
        c.customers.provision(id=ref)
    k0, k1, k2, k3, k4, k5, k6 = customers
    subs: list[str] = []

    def provision(customer: str, plan_ref: str, **extra: Any) -> None:
        made = c.subscriptions.provision(customer_id=customer, plan_id=plan_ref, billing_period="MONTHLY", **extra)
        subs.append(made.data.subscription.id)

    def consume(customer: str, currency: str, amount: float, **extra: Any) -> None:
        key = f"{customer}-{currency}-{amount}-{clock.now().isoformat()}"
        c.credits.consumption.consume(
            customer_id=customer, currency_id=currency, amount=amount, idempotency_key=key, **extra
        )

    provision(k0, child, addons=[{"id": addon, "quantity": 2}])
    provision(k1, solo)
    provision(k2, res, resource_id="ra")
    provision(k2, res, resource_id="rb")
    provision(k3, child)
    provision(k4, child)
    provision(k5, solo, entitlements=[_credit(b, 70)])
    override_sub = subs[-1]
    c.subscriptions.provision(
        customer_id=k6, plan_id=child, billing_period="ANNUALLY", addons=[{"id": addon, "quantity": 1}]
    )
    subs.append(c.subscriptions.list(customer_id=k6).data[0].id)
    provision(k0, res)  # another product's, no resource: the child subscription's wallets
    clock.set(START + timedelta(days=1))
    consume(k0, a, 50)
    consume(k0, a, 250)  # 60 beyond the 240 the two subscriptions granted: an overdraft, paid by new grants
    consume(k1, a, 220)  # beyond the entitlement's grant: the price's too
    consume(k2, a, 30, resource_id="ra")
    consume(k3, a, 60)
    consume(k4, b, 10)
    consume(k5, a, 5)
    clock.set(START + timedelta(days=2))
    provision(
        k3, solo, schedule_strategy="IMMEDIATE"
    )  # a plan change mid-period: the child subscription replaced, its use carried
    clock.set(START + timedelta(days=3))
    c.subscriptions.cancel(subs[5], cancellation_time="IMMEDIATE", prorate=False)
    # Holds (a day at most), held at the earliest instants drawn and released by the catch-up at later ones.
    for customer, amount, hours, extra in ((k1, 40, 24, {}), (k5, 15, 24, {}), (k2, 10, 12, {"resource_id": "ra"})):
        held = c.customers.check_entitlement(
            customer,
            currency_id=a,
            reserve_amount=amount,
            reservation_id=f"{customer}-hold",
            reservation_ttl_seconds=hours * 3600,
            **extra,
        ).data
        assert held.reservation is not None
    with server.db.transaction() as s:
        env_id = s.scalars(select(Customer.environment_id).where(Customer.ref_id == k0)).one()
        pks = s.scalars(
            select(Subscription.pk)
            .join(Customer, Customer.pk == Subscription.customer_pk)
            .where(Customer.environment_id == env_id, Customer.ref_id.in_(customers))
            .order_by(Subscription.pk)
        ).all()
        reasons = [s.get(Subscription, pk).cancel_reason for pk in pks]  # type: ignore[union-attr]
        assert reasons.count("UPGRADE_OR_DOWNGRADE") == 1  # the plan change made a new subscription
        debts = s.scalars(
            select(CreditGrant.consumed)
            .join(Wallet, Wallet.pk == CreditGrant.wallet_pk)
            .join(Customer, Customer.pk == Wallet.customer_pk)
            .where(Customer.ref_id == k0, CreditGrant.grant_type == "OVERDRAFT")
        ).all()
        assert debts == [Decimal(60)]
        override_pk = s.scalars(select(Subscription.pk).where(Subscription.ref_id == override_sub)).one()
    assert len(pks) == len(subs) == 10
    return World(env_id, parent, child, solo, res, addon, a, b, override_pk, customers, list(pks))


@pytest.fixture
def world(module_server: LiveServer, test_clock: TestClock) -> Iterator[World]:
    if module_server.base_url not in _worlds:
        _worlds[module_server.base_url] = _build(module_server, test_clock)
    yield _worlds[module_server.base_url]


@dataclass(frozen=True)
class Changes:
    parent_a: int | None
    child_b: int | None
    res_a: int | None
    solo_rate: int | None
    addon_quantities: tuple[int | None, ...]  # per subscription with the add-on (0: removed)
    override_b: int | None
    cancelled: frozenset[int]  # subscription indexes
    delegated: bool  # the second customer's subscription handed to the first (its grants stay in its wallets)
    transferred: bool  # the third customer's subscription on resource "ra" moved to "rc"
    consumed: tuple[int, ...]  # per customer, drawn from its first live grant of currency A


def _latest(s: Session, env_id: int, ref: str) -> Package:
    return s.scalars(
        select(Package)
        .where(Package.environment_id == env_id, Package.ref_id == ref, Package.status == "PUBLISHED")
        .order_by(Package.version_number.desc())
        .limit(1)
    ).one()


def _set_entitlement(s: Session, package: Package, currency: str, amount: int) -> None:
    row = s.scalars(
        select(PackageEntitlement).where(
            PackageEntitlement.package_pk == package.pk, PackageEntitlement.ref_id == currency
        )
    ).one()
    row.amount = Decimal(amount)


def _apply(s: Session, w: World, subs: list[Subscription], changes: Changes) -> None:
    """The changes of an example, written in its transaction (so rolled back with it)."""
    if changes.parent_a is not None:
        _set_entitlement(s, _latest(s, w.env_id, w.parent), w.currency_a, changes.parent_a)
    if changes.child_b is not None:
        _set_entitlement(s, _latest(s, w.env_id, w.child), w.currency_b, changes.child_b)
    if changes.res_a is not None:
        _set_entitlement(s, _latest(s, w.env_id, w.res), w.currency_a, changes.res_a)
    if changes.solo_rate is not None:
        for charge in s.scalars(
            select(PackageCharge).where(PackageCharge.package_pk == _latest(s, w.env_id, w.solo).pk)
        ):
            if charge.credit_rate_amount is not None:
                charge.credit_rate_amount = Decimal(changes.solo_rate)
    bought = s.scalars(
        select(SubscriptionAddon)
        .where(SubscriptionAddon.subscription_pk.in_([sub.pk for sub in subs]))
        .order_by(SubscriptionAddon.pk)
    ).all()
    for row, quantity in zip(bought, changes.addon_quantities, strict=False):
        if quantity == 0:
            s.execute(delete(SubscriptionAddon).where(SubscriptionAddon.pk == row.pk))
        elif quantity is not None:
            row.quantity = quantity
    if changes.override_b is not None:
        row = s.scalars(
            select(SubscriptionEntitlement).where(SubscriptionEntitlement.subscription_pk == w.override_sub)
        ).one()
        row.amount = Decimal(changes.override_b)
    # As a delegation or a transfer changes the subscription before its sync (`subscriptions.changes`).
    if changes.delegated:
        subs[1].customer_pk, subs[1].paying_customer_pk = subs[0].customer_pk, subs[1].customer_pk
    if changes.transferred:
        subs[2].resource_ref = "rc"
    for i in changes.cancelled:
        if subs[i].status in ("ACTIVE", "IN_TRIAL"):
            subs[i].status = "CANCELED"
    currency_a = s.scalars(
        select(CustomCurrency.pk).where(
            CustomCurrency.environment_id == w.env_id, CustomCurrency.ref_id == w.currency_a
        )
    ).one()
    customer_pks = _customer_pks(s, w)
    for customer_pk, extra in zip(customer_pks, changes.consumed, strict=True):
        if not extra:
            continue
        grant = s.scalars(
            select(CreditGrant)
            .join(Wallet, Wallet.pk == CreditGrant.wallet_pk)
            .where(Wallet.customer_pk == customer_pk, Wallet.currency_pk == currency_a, CreditGrant.status == ACTIVE)
            .order_by(CreditGrant.pk)
            .limit(1)
        ).first()
        if grant is not None:
            grant.consumed += min(Decimal(extra), grant.amount - grant.consumed - grant.reserved)
    s.flush()


def _customer_pks(s: Session, w: World) -> list[int]:
    found = dict(
        s.execute(
            select(Customer.ref_id, Customer.pk).where(
                Customer.environment_id == w.env_id, Customer.ref_id.in_(w.customers)
            )
        ).all()
    )
    return [found[ref] for ref in w.customers]


def _subscriptions(s: Session, w: World) -> list[Subscription]:
    found = {sub.pk: sub for sub in s.scalars(select(Subscription).where(Subscription.pk.in_(w.subs)))}
    return [found[pk] for pk in w.subs]


def _state(s: Session, w: World) -> dict[str, Any]:
    """Everything the sync may write, free of what differs between two runs without meaning: primary keys
    (a wallet is named by customer, currency and resource; a grant by its recurrence key, or its id when
    it has none), the ids of new grants, and the order of rows."""
    s.flush()
    s.expire_all()
    wallets = {
        wallet.pk: (wallet.customer_pk, wallet.currency_pk, wallet.resource_ref)
        for wallet in s.scalars(select(Wallet).where(Wallet.customer_pk.in_(_customer_pks(s, w))))
    }

    def named(text: str | None) -> str | None:
        if text is None:
            return None
        for pk, key in wallets.items():
            text = text.replace(f":{pk}:", f":{key}:")
        return text

    grants = s.scalars(select(CreditGrant).where(CreditGrant.wallet_pk.in_(list(wallets)))).all()
    ident = {g.pk: named(g.recurrence_key) or g.ref_id for g in grants}
    grant_rows = sorted(
        (
            wallets[g.wallet_pk],
            ident[g.pk],
            g.subscription_pk,
            g.grant_type,
            g.source_type,
            g.status,
            g.amount,
            g.consumed,
            g.reserved,
            g.effective_at,
            g.expire_at,
            g.voided_at,
            g.period_start,
            g.priority,
            g.display_name,
            str(sorted((g.metadata_ or {}).items())),
            g.created_at,
            g.updated_at,
        )
        for g in grants
    )
    entries = sorted(
        (wallets[e.wallet_pk], ident[e.grant_pk], e.event_type, e.amount, e.timestamp)
        for e in s.scalars(select(LedgerEntry).where(LedgerEntry.wallet_pk.in_(list(wallets))))
    )
    balances: dict[tuple[int, int, str], Decimal] = {}
    for key, _, _, amount, _ in entries:
        balances[key] = balances.get(key, Decimal(0)) + amount
    jobs = sorted(
        (
            j.kind,
            str(sorted((k, wallets.get(v, v) if k == "wallet" else v) for k, v in j.payload.items())),
            j.run_at,
            named(j.dedupe_key),
            j.status,
        )
        for j in s.scalars(select(Job).where(Job.environment_id == w.env_id, Job.status == "PENDING"))
        if j.kind.startswith("credits.")
    )
    return {
        "wallets": sorted(wallets.values()),
        "grants": grant_rows,
        "ledger": entries,
        "balances": balances,
        "jobs": jobs,
    }


def _both_ways(
    server: LiveServer, w: World, changes: Changes, run: Callable[[Session, bool], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What `run` leaves batched, then alone, on the world with `changes` applied: each run rolls its own
    work back to a savepoint (`_run`, `_published`), so both start alike; the whole transaction is rolled
    back after, so the next example starts from the world as built."""
    try:
        with server.db.transaction() as s:
            _apply(s, w, _subscriptions(s, w), changes)
            found = run(s, True), run(s, False)
            raise _Rollback
    except _Rollback:
        return found


def _run(s: Session, w: World, picked: list[int], now: datetime, *, batched: bool) -> dict[str, Any]:
    saved = s.begin_nested()
    try:
        s.expire_all()
        subs = _subscriptions(s, w)
        chosen = [subs[i] for i in picked]
        if batched:
            recurring.sync_all(s, w.env_id, chosen, now)
        else:
            for sub in chosen:
                recurring.sync_subscription(s, sub, now)
        return _state(s, w)
    finally:
        saved.rollback()


# 0 takes the credits away (no grant is made for a zero amount): as likely as any other change.
amounts = st.sampled_from([None, 0, 0, 20, 45, 100, 300])


def _changes(parent_a: st.SearchStrategy[int | None]) -> st.SearchStrategy[Changes]:
    return st.builds(
        Changes,
        parent_a=parent_a,
        child_b=amounts,
        res_a=amounts,
        solo_rate=st.one_of(st.none(), st.sampled_from([10, 100, 400])),
        addon_quantities=st.tuples(*[st.sampled_from([None, 0, 0, 1, 3])] * 2),
        override_b=amounts,
        cancelled=st.frozensets(st.integers(0, 9), max_size=3),
        delegated=st.booleans(),
        transferred=st.booleans(),
        consumed=st.tuples(*[st.sampled_from([0, 0, 10, 75, 1000])] * 7),
    )


changes = _changes(amounts)
instants = st.one_of(
    st.integers(3 * 24 + 1, 75 * 24).map(lambda h: START + timedelta(hours=h)),
    st.sampled_from([FEB_END, FEB_END - timedelta(seconds=1), MAR_END, START + timedelta(days=3, minutes=1)]),
)
picks = st.lists(st.integers(0, 9), unique=True, min_size=1, max_size=10)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
# A currency no longer granted (the parent's and the add-on's gone): its wallet is found through the grants
# the subscription holds, which must be read for every member of the batch, not only the first.
@example(
    changes=Changes(0, None, None, None, (0, 0), None, frozenset(), False, False, (0,) * 7),
    now=START + timedelta(days=4),
    picked=[1, 0],
)
@given(changes=changes, now=instants, picked=picks)
def test_a_batch_sync_equals_syncing_each_subscription_alone(
    module_server: LiveServer, test_clock: TestClock, world: World, changes: Changes, now: datetime, picked: list[int]
) -> None:
    test_clock.set(now)  # the movements happen at `now` (`recurring._after_lock`), in both runs
    batched, alone = _both_ways(module_server, world, changes, lambda s, b: _run(s, world, picked, now, batched=b))
    assert batched == alone


def _published(s: Session, w: World, parent_a: int, now: datetime, *, batched: bool) -> dict[str, Any]:
    """A new parent version granting `parent_a` of currency A, followed as a publish follows it (the change
    heard before it is applied, `inherited.follow` just before the commit), or by syncing each live
    subscription on the child plan alone, in turn."""
    saved = s.begin_nested()
    try:
        s.expire_all()
        if batched:
            inherited.heard(s, ParentPlansChanged(env_id=w.env_id, parent_refs=[w.parent]))
        _set_entitlement(s, _latest(s, w.env_id, w.parent), w.currency_a, parent_a)
        s.flush()
        if batched:
            inherited.follow(s)
        else:
            for sub in _subscriptions(s, w):
                if sub.plan_ref == w.child and sub.status in {st.value for st in LIVE}:
                    recurring.sync_subscription(s, sub, now)
        return _state(s, w)
    finally:
        saved.rollback()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=_changes(st.none()),
    parent_a=st.sampled_from([0, 20, 45, 300]),  # the published parent grants 100: always a change
    now=instants,
)
def test_a_parent_publish_equals_migrating_each_inheriting_subscription_alone(
    module_server: LiveServer, test_clock: TestClock, world: World, changes: Changes, parent_a: int, now: datetime
) -> None:
    test_clock.set(now)
    published, alone = _both_ways(
        module_server, world, changes, lambda s, b: _published(s, world, parent_a, now, batched=b)
    )
    assert published == alone
