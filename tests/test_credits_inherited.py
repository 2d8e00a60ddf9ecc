"""Recurring credits inherited from a parent plan follow a change of that parent (docs/credits.md, "Inherited
changes"), on SQLite and PostgreSQL: a new parent version, the parent archived on its own, its product
archived and unarchived. Each is treated as a migration of the subscription to a new version of its own
plan is (`recurring.sync_subscription`): more credits grant the difference at once, fewer grant what is
left after what the period used, a currency no longer granted has its period grant voided; nothing is
granted twice, and subscriptions that do not inherit from the changed parent are not touched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from entitle.catalog.packages import publishing
from entitle.catalog.packages.events import ParentPlansChanged
from entitle.credits import recurring
from entitle.customers.models import Customer
from entitle.domain_events import publish
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.test_credits_recurring import PRICES, START, Shop


class Family(Shop):
    """A parent plan granting credits, a child plan inheriting them, the customer on the child."""

    def __init__(self, server: LiveServer, clock: TestClock) -> None:
        super().__init__(server, clock)
        self.server = server
        self.parent, self.child = f"parent{self.n}", f"child{self.n}"

    def make_child(self, ref: str, parent: str) -> None:
        c = self.client.v1
        c.plans.create(id=ref, display_name=ref, product_id=self.product, parent_plan_id=parent)
        c.plans.update(ref, charges=PRICES)
        c.plans.publish(ref, migration_type="NEW_CUSTOMERS")

    def republish_parent(self, **credit: Any) -> None:
        """A new version of the parent with its credit entitlement changed (`None`: removed)."""
        c = self.client.v1
        c.plans.create_draft(self.parent)
        if credit:
            c.plans.entitlements.update(self.currency, plan_id=self.parent, type="CREDIT", **credit)
        else:
            c.plans.entitlements.delete(self.currency, plan_id=self.parent)
        c.plans.publish(self.parent, migration_type="NEW_CUSTOMERS")

    def live(self) -> list[tuple[float, str]]:
        return [(float(g.amount), g.status) for g in self.grants() if g.status in ("ACTIVE", "SCHEDULED")]

    def seen(self) -> list[tuple[str, str, float, Any]]:
        """Every grant as it stands: what "untouched" compares."""
        return [(g.id, g.status, float(g.amount), g.updated_at) for g in self.grants()]


def founded(server: LiveServer, clock: TestClock) -> Family:
    """A parent plan granting 100 credits a month and a child plan inheriting it, at START."""
    clock.set(START)
    f = Family(server, clock)
    f.make_plan(f.parent, [f.credit(100)])
    f.make_child(f.child, f.parent)
    return f


@pytest.fixture
def family(module_server: LiveServer, test_clock: TestClock) -> Iterator[Family]:
    yield founded(module_server, test_clock)


def test_a_new_parent_version_regrants_the_inheriting_subscription(family: Family) -> None:
    family.provision(family.child)
    assert family.balance() == 100  # inherited
    family.pass_time(START + timedelta(days=5))
    family.consume(30, "a")
    # More: the difference at once, as a migration to a bigger version of the plan itself grants it.
    family.republish_parent(amount=500)
    assert family.balance() == 470
    assert family.live() == [(100.0, "ACTIVE"), (400.0, "ACTIVE")]
    # Fewer: the period's grants are voided, what is left of the new amount after the 30 used is granted.
    family.republish_parent(amount=50)
    assert family.live() == [(20.0, "ACTIVE")] and family.balance() == 20
    # The same amount again: nothing is granted twice.
    before = family.seen()
    family.republish_parent(amount=50, description="the same credits")
    assert family.seen() == before
    assert family.ledger_sum() == family.balance()
    # The next period grants the parent's latest amount in full, once.
    family.pass_time(START + timedelta(days=29))
    assert family.balance() == 50 and len(family.live()) == 1


def test_a_parent_version_without_the_credits_voids_the_period_grant(family: Family) -> None:
    family.provision(family.child)
    family.consume(40, "a")
    family.republish_parent()  # the credit entitlement removed
    assert family.live() == [] and family.balance() == 0
    assert family.ledger_sum() == 0  # the 40 used stay consumed; what was left is voided
    family.pass_time(START + timedelta(days=40))
    assert family.grants()[-1].status == "VOIDED" and family.balance() == 0  # no renewal


def test_a_parent_archived_on_its_own_takes_its_credits(family: Family) -> None:
    family.provision(family.child)
    family.consume(25, "a")
    c = family.client.v1
    c.plans.archive(family.child)  # a parent is refused while a live plan builds on it
    assert family.balance() == 75  # the subscription keeps its (archived) child version and its credits
    c.plans.archive(family.parent)
    assert family.live() == [] and family.balance() == 0


def test_a_product_archived_then_unarchived(family: Family) -> None:
    family.provision(family.child)
    family.consume(10, "a")
    c = family.client.v1
    c.products.archive_product(family.product)
    assert family.balance() == 0
    c.products.unarchive_product(family.product)
    # Inheriting again: what is left of the period's 100 after the 10 used, never a refill.
    assert family.live() == [(90.0, "ACTIVE")] and family.balance() == 90
    assert family.ledger_sum() == family.balance()


def test_subscriptions_not_inheriting_from_the_parent_are_untouched(family: Family) -> None:
    other_parent, cousin, own = f"other{family.n}", f"cousin{family.n}", f"own{family.n}"
    family.make_plan(other_parent, [family.credit(70)])
    family.make_child(cousin, other_parent)
    family.make_plan(own, [family.credit(60)])
    c = family.client.v1
    others = []
    for plan in (cousin, own):
        customer = f"{family.customer}-{plan}"
        c.customers.provision(id=customer)
        c.subscriptions.provision(customer_id=customer, plan_id=plan)
        others.append(customer)

    def their_grants() -> list[Any]:
        return [
            [(g.id, g.status, g.amount, g.updated_at) for g in c.credits.grants.list(customer_id=o, limit=100)]
            for o in others
        ]

    before = their_grants()
    assert [len(g) for g in before] == [1, 1]
    family.republish_parent(amount=300)
    c.plans.archive(family.child)
    c.plans.archive(family.parent)
    assert their_grants() == before


def test_the_reaction_heard_twice_grants_nothing_twice(family: Family) -> None:
    family.provision(family.child)
    family.consume(5, "a")
    family.client.v1.plans.create_draft(family.parent)
    family.client.v1.plans.entitlements.update(family.currency, plan_id=family.parent, type="CREDIT", amount=200)
    family.client.v1.plans.publish(family.parent, migration_type="NEW_CUSTOMERS")
    before = family.seen()
    assert family.balance() == 195
    db = family.server.db
    with db.transaction() as s:
        env_id = s.scalars(select(Customer.environment_id).where(Customer.ref_id == family.customer)).one()
        publish(s, ParentPlansChanged(env_id=env_id, parent_refs=[family.parent]))
        publish(s, ParentPlansChanged(env_id=env_id, parent_refs=[family.parent, family.parent]))
    assert family.seen() == before and family.balance() == 195


def test_a_publish_that_leaves_the_inherited_credits_syncs_no_subscription(
    family: Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaction compares the inheriting plans' chains, not each subscription's grants: a new parent
    version that changes a feature only syncs nothing (its cost does not grow with the subscriptions);
    one that changes the credits syncs each live subscription on the child once."""
    c = family.client.v1
    c.features.create_feature(id=f"seats{family.n}", display_name="Seats", feature_type="NUMBER")
    c.plans.create_draft(family.parent)
    c.plans.entitlements.create(
        family.parent, entitlements=[{"type": "FEATURE", "id": f"seats{family.n}", "usage_limit": 3}]
    )
    c.plans.publish(family.parent, migration_type="NEW_CUSTOMERS")
    customers = [f"{family.customer}-{i}" for i in range(3)]
    for customer in customers:
        c.customers.provision(id=customer)
        c.subscriptions.provision(customer_id=customer, plan_id=family.child)
    synced: list[str] = []
    sync = recurring._sync  # each subscription's sync, alone or in a batch (`recurring.sync_all`)

    def counted(s: Any, batch: Any, sub: Any) -> None:
        synced.append(sub.ref_id)
        sync(s, batch, sub)

    monkeypatch.setattr(recurring, "_sync", counted)
    db = family.server.db
    with db.transaction() as s:
        env_id = s.scalars(select(Customer.environment_id).where(Customer.ref_id == family.customer)).one()

    def publish_parent(**terms: Any) -> None:
        c.plans.create_draft(family.parent)
        c.plans.entitlements.update(next(iter(terms)), plan_id=family.parent, **terms[next(iter(terms))])
        publishing.publish_package(db, env_id, "PLAN", family.parent, "NEW_CUSTOMERS")

    publish_parent(**{f"seats{family.n}": {"type": "FEATURE", "usage_limit": 4}})
    assert synced == []
    publish_parent(**{family.currency: {"type": "CREDIT", "amount": 150}})
    assert len(synced) == 3 and len(set(synced)) == 3
    for customer in customers:
        assert c.customers.check_entitlement(customer, currency_id=family.currency).data.usage_limit == 150
