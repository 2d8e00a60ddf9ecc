"""A parent plan's publish syncs every subscription inheriting its credits in one batch (docs/credits.md,
"Inherited changes"; `credits/recurring_reads.py`), on SQLite and PostgreSQL: each subscription ends as a
sync of it alone leaves it (its own consumption kept, nothing granted twice), subscriptions of one
customer go in separate rounds, and the publish's reads do not grow with the number of subscriptions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, select

from entitle.catalog.packages import publishing
from entitle.credits import recurring_reads
from entitle.customers.models import Customer
from entitle.environments.models import Environment
from entitle.jobs.models import Job
from entitle.jobs.service import Enqueued, enqueue_many
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.test_credits_inherited import Family, founded
from tests.test_credits_recurring import START


@pytest.fixture
def family(module_server: LiveServer, test_clock: TestClock) -> Iterator[Family]:
    yield founded(module_server, test_clock)


def _customer(family: Family, ref: str, plan: str, **extra: Any) -> None:
    c = family.client.v1
    c.customers.provision(id=ref)
    c.subscriptions.provision(customer_id=ref, plan_id=plan, **extra)


def _balance(family: Family, customer: str) -> Decimal:
    check = family.client.v1.customers.check_entitlement(customer, currency_id=family.currency).data
    return Decimal(str(check.usage_limit)) - Decimal(str(check.current_usage))


def _grants(family: Family, customer: str) -> list[tuple[float, str]]:
    found = family.client.v1.credits.grants.list(customer_id=customer, currency_id=family.currency, limit=100)
    return sorted((float(g.amount), g.status) for g in found)


def _ledger_sum(family: Family, customer: str) -> Decimal:
    entries = family.client.v1.credits.list_ledger(customer_id=customer, currency_id=family.currency, limit=100)
    return sum((Decimal(str(e.amount)) for e in entries), Decimal(0))


def test_each_subscription_of_the_batch_keeps_its_own_consumption(family: Family) -> None:
    c = family.client.v1
    used = {f"{family.customer}-{i}": amount for i, amount in enumerate((0, 30, 90, 100))}
    for customer, amount in used.items():
        _customer(family, customer, family.child)
        if amount:
            c.credits.consumption.consume(
                customer_id=customer, currency_id=family.currency, amount=amount, idempotency_key=f"{customer}-use"
            )
    family.republish_parent(amount=250)  # more: the difference at once, for each
    assert {k: _balance(family, k) for k in used} == {k: 250 - v for k, v in used.items()}
    assert all(_grants(family, k) == [(100.0, "ACTIVE"), (150.0, "ACTIVE")] for k in used)
    family.republish_parent(amount=50)  # fewer: what is left of 50 after what each used, never a refill
    assert {k: _balance(family, k) for k in used} == {k: max(50 - v, 0) for k, v in used.items()}
    for customer, amount in used.items():
        live = [g for g in _grants(family, customer) if g[1] == "ACTIVE"]
        assert live == ([(float(50 - amount), "ACTIVE")] if amount < 50 else [])
        assert _ledger_sum(family, customer) == _balance(family, customer)
    before = {k: _grants(family, k) for k in used}
    family.republish_parent(amount=50, description="the same credits")
    assert {k: _grants(family, k) for k in used} == before  # nothing granted twice


def test_two_subscriptions_of_one_customer_are_synced_in_separate_rounds(family: Family) -> None:
    c = family.client.v1
    c.products.update_product(family.product, multiple_subscriptions=True)
    customer = f"{family.customer}-two"
    c.customers.provision(id=customer)
    for site in ("site-a", "site-b"):
        c.subscriptions.provision(customer_id=customer, plan_id=family.child, resource_id=site)
    c.credits.consumption.consume(
        customer_id=customer, currency_id=family.currency, amount=40, idempotency_key="two-a", resource_id="site-a"
    )
    family.republish_parent(amount=30)

    def balance(site: str) -> Decimal:
        check = c.customers.check_entitlement(customer, currency_id=family.currency, resource_id=site).data
        return Decimal(str(check.usage_limit)) - Decimal(str(check.current_usage))

    assert (balance("site-a"), balance("site-b")) == (0, 30)  # 40 used of a 30 period on a: nothing left
    family.republish_parent(amount=120)
    assert (balance("site-a"), balance("site-b")) == (80, 120)


def test_rounds_never_put_two_subscriptions_touching_one_customer_together() -> None:
    subs = [SimpleNamespace(pk=pk, customer_pk=customer) for pk, customer in ((1, 10), (2, 20), (3, 10), (4, 30))]
    touched = {1: {10}, 2: {20}, 3: {10}, 4: {30, 20}}  # 4's grants are in a wallet of customer 20 (delegated)
    reads = SimpleNamespace(customers=lambda sub: touched[sub.pk])
    found = recurring_reads.rounds(reads, subs)  # type: ignore[arg-type]
    assert [[s.pk for s in members] for members in found] == [[1, 2], [3, 4]]


def test_the_publish_reads_do_not_grow_with_the_subscriptions(family: Family) -> None:
    """Every read of the sync is made once for all the inheriting subscriptions (one subscription at a
    time it was about 25 queries each): a publish regranting 6 subscriptions sends the same reads as one
    regranting 2 (the usage fold, a domain of its own, asks once per customer, on PostgreSQL under an
    advisory lock)."""
    db = family.server.db
    with db.transaction() as s:
        env_id = s.scalars(select(Customer.environment_id).where(Customer.ref_id == family.customer)).one()
    seen: list[str] = []
    folds: list[int] = []

    me = threading.get_ident()

    def counted(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() == me:  # not the server's background threads
            seen.append(statement)

    def reads_of_a_publish(amount: int) -> list[str]:
        c = family.client.v1
        c.plans.create_draft(family.parent)
        c.plans.entitlements.update(family.currency, plan_id=family.parent, type="CREDIT", amount=amount)
        seen.clear()
        event.listen(db.write_engine, "before_cursor_execute", counted)
        try:
            publishing.publish_package(db, env_id, "PLAN", family.parent, "NEW_CUSTOMERS")
        finally:
            event.remove(db.write_engine, "before_cursor_execute", counted)
        selects = [st for st in seen if st.lstrip().upper().startswith("SELECT")]
        folds.append(len([st for st in selects if "FROM usage_waiting" in st]))
        # Not the sync's: the usage fold, and the caches of webhook endpoints and integrations (reloaded
        # when they expire, whenever that falls).
        others = ("usage_waiting", "pg_advisory_xact_lock", "FROM webhook_endpoints", "FROM integrations")
        return [st for st in selects if not any(o in st for o in others)]

    for i in range(2):
        _customer(family, f"{family.customer}-{i}", family.child)
    few = reads_of_a_publish(200)
    for i in range(2, 6):
        _customer(family, f"{family.customer}-{i}", family.child)
    many = reads_of_a_publish(300)
    assert len(many) == len(few)
    # What waits for each customer is asked once: a flush inside the transaction no longer makes the
    # fold before the commit ask again (`usage.reactions._forget_settled`).
    assert folds == [2, 6]
    assert all(_balance(family, f"{family.customer}-{i}") == 300 for i in range(6))


def test_enqueue_many_adds_each_dedupe_key_once(module_server: LiveServer) -> None:
    db = module_server.db
    with db.transaction() as s:
        env_id = s.scalars(select(Environment.pk).order_by(Environment.pk).limit(1)).one()
        key = "test-enqueue-many"
        enqueue_many(s, env_id, [Enqueued("test.kind", {"n": 1}, START, f"{key}:a")])
    with db.transaction() as s:
        jobs = [
            Enqueued("test.kind", {"n": 2}, START, f"{key}:a"),  # already stored
            Enqueued("test.kind", {"n": 3}, START, f"{key}:b"),
            Enqueued("test.kind", {"n": 4}, START, f"{key}:b"),  # twice in the list
        ]
        enqueue_many(s, env_id, jobs)
    with db.transaction() as s:
        stored = s.scalars(select(Job).where(Job.dedupe_key.like(f"{key}:%")).order_by(Job.dedupe_key)).all()
        assert [(j.dedupe_key, j.payload, j.status, j.max_attempts) for j in stored] == [
            (f"{key}:a", {"n": 1}, "PENDING", 12),
            (f"{key}:b", {"n": 3}, "PENDING", 12),
        ]
        for j in stored:
            s.delete(j)
