from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import false, select
from sqlalchemy.orm import Session

from entitle import sync_states
from entitle.catalog.coupons.models import Coupon
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.events import ParentPlansChanged
from entitle.catalog.packages.models import Package
from entitle.customers.models import Customer
from entitle.db.memo import held_or_read
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.errors import NotFound
from entitle.subscriptions.models import (
    FutureUpdate,
    Subscription,
    SubscriptionAddon,
    SubscriptionCharge,
    SubscriptionEntitlement,
)
from entitle.subscriptions.rules import LIVE
from entitle.sync_states import SUBSCRIPTION


def find(session: Session, env_id: int, ref_id: str, *, for_update: bool = False) -> Subscription | None:
    stmt = select(Subscription).where(Subscription.environment_id == env_id, Subscription.ref_id == ref_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def get(session: Session, env_id: int, ref_id: str, *, for_update: bool = False) -> Subscription:
    sub = find(session, env_id, ref_id, for_update=for_update)
    if sub is None:
        raise NotFound("subscription", ref_id)
    return sub


def customers_by_pk(session: Session, pks: Iterable[int | None]) -> dict[int, Customer]:
    """The customers by pk; those the session holds already cost no query (one subscription's view after a
    change, whose customer the change loaded)."""
    return held_or_read(session, Customer, pks)


def coupons_by_ref(session: Session, env_id: int, refs: Iterable[str]) -> list[Coupon]:
    wanted = sorted(set(refs))
    if not wanted:
        return []
    return list(session.scalars(select(Coupon).where(Coupon.environment_id == env_id, Coupon.ref_id.in_(wanted))))


def by_pk(session: Session, pk: int, *, for_update: bool = False) -> Subscription | None:
    stmt = select(Subscription).where(Subscription.pk == pk)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def by_pks(session: Session, pks: Iterable[int]) -> dict[int, Subscription]:
    wanted = sorted(set(pks))
    if not wanted:
        return {}
    return {sub.pk: sub for sub in session.scalars(select(Subscription).where(Subscription.pk.in_(wanted)))}


def of_customer(
    session: Session, customer_pk: int, statuses: Iterable[str], *, for_update: bool = False
) -> list[Subscription]:
    stmt = (
        select(Subscription)
        .where(Subscription.customer_pk == customer_pk, Subscription.status.in_(list(statuses)))
        .order_by(Subscription.pk)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return list(session.scalars(stmt))


def of_customers(
    session: Session, customer_pks: Iterable[int], statuses: Iterable[str]
) -> dict[int, list[Subscription]]:
    """`of_customer` for several customers in one query."""
    found: dict[int, list[Subscription]] = defaultdict(list)
    wanted = set(customer_pks)
    if wanted:
        stmt = (
            select(Subscription)
            .where(Subscription.customer_pk.in_(wanted), Subscription.status.in_(list(statuses)))
            .order_by(Subscription.pk)
        )
        for sub in session.scalars(stmt):
            found[sub.customer_pk].append(sub)
    return found


@dataclass(frozen=True)
class Inheriting:
    """The live subscriptions whose plan's chain includes one of a `ParentPlansChanged`'s parents."""

    chains: dict[int, list[Package]]  # plan version pk -> its chain, read when the event was heard
    subscriptions: list[tuple[int, str, str | None]]  # (plan version pk, customer ref, resource ref), by pk


_INHERITING = "entitle.subscriptions.inheriting"


def inheriting(session: Session, event: ParentPlansChanged) -> Inheriting:
    """One query for the live subscriptions on plans with a parent, then one chain per distinct plan.

    Every subscriber of the event asks this while the chains are as the event found them (it is published
    before the change is applied, or after an unarchive, and nothing runs between its subscribers), so
    the answer is kept for the event: the session holds the event object with it, so it can never be
    mistaken for a later event's."""
    held = session.info.get(_INHERITING)
    if held is not None and held[0] is event:
        found: Inheriting = held[1]
        return found
    wanted = set(event.parent_refs)
    chains: dict[int, list[Package]] = {}
    subs: list[tuple[int, str, str | None]] = []
    if wanted:
        rows = session.execute(
            select(Package, Customer.ref_id, Subscription.resource_ref)
            .join(Subscription, Subscription.plan_pk == Package.pk)
            .join(Customer, Customer.pk == Subscription.customer_pk)
            .where(
                Subscription.environment_id == event.env_id,
                Subscription.status.in_([st.value for st in LIVE]),
                Package.parent_plan_ref.is_not(None),
            )
            .order_by(Subscription.pk)
        ).all()
        inherits: dict[int, bool] = {}
        for plan, customer_ref, resource_ref in rows:
            if plan.pk not in inherits:
                chain = packages.plan_chain(session, event.env_id, plan)
                inherits[plan.pk] = bool({p.ref_id for p in chain[1:]} & wanted)
                if inherits[plan.pk]:
                    chains[plan.pk] = chain
            if inherits[plan.pk]:
                subs.append((plan.pk, customer_ref, resource_ref))
    found = Inheriting(chains, subs)
    session.info[_INHERITING] = (event, found)
    return found


Child = TypeVar("Child", SubscriptionAddon, SubscriptionCharge, SubscriptionEntitlement)


def _children(session: Session, model: type[Child], sub_pks: list[int]) -> dict[int, list[Child]]:
    """Rows of a per-subscription child table, grouped by subscription, in insertion order."""
    found: dict[int, list[Child]] = defaultdict(list)
    if sub_pks:
        rows = session.scalars(select(model).where(model.subscription_pk.in_(sub_pks)).order_by(model.pk))
        for row in rows:
            found[row.subscription_pk].append(row)
    return found


def addons_of(session: Session, sub_pks: list[int]) -> dict[int, list[SubscriptionAddon]]:
    return _children(session, SubscriptionAddon, sub_pks)


def charges_of(session: Session, sub_pks: list[int]) -> dict[int, list[SubscriptionCharge]]:
    return _children(session, SubscriptionCharge, sub_pks)


def overrides_of(session: Session, sub_pks: list[int]) -> dict[int, list[SubscriptionEntitlement]]:
    return _children(session, SubscriptionEntitlement, sub_pks)


def future_updates_of(
    session: Session, sub_pks: list[int], statuses: Iterable[str] = ("SCHEDULED",)
) -> dict[int, list[FutureUpdate]]:
    found: dict[int, list[FutureUpdate]] = defaultdict(list)
    if sub_pks:
        rows = session.scalars(
            select(FutureUpdate)
            .where(FutureUpdate.subscription_pk.in_(sub_pks), FutureUpdate.schedule_status.in_(list(statuses)))
            .order_by(FutureUpdate.scheduled_at, FutureUpdate.pk)
        )
        for row in rows:
            found[row.subscription_pk].append(row)
    return found


def list_page(
    session: Session,
    env_id: int,
    page: PageRequest,
    *,
    customer_pk: int | None,
    plan_ref: str | None,
    resource_ref: str | None,
    statuses: list[str] | None,
    pricing_types: list[str] | None,
    created_at: CreatedAtRange,
    billing_periods: list[str] | None = None,
    sync_statuses: list[str] | None = None,
) -> Page[Subscription]:
    stmt = select(Subscription).where(Subscription.environment_id == env_id)
    if billing_periods:
        stmt = stmt.where(Subscription.billing_period.in_(billing_periods))
    if sync_statuses:
        synced = sync_states.matcher.impl(SUBSCRIPTION, sync_statuses)
        stmt = stmt.where(false() if synced is None else Subscription.pk.in_(synced))
    if customer_pk is not None:
        stmt = stmt.where(Subscription.customer_pk == customer_pk)
    if plan_ref is not None:
        stmt = stmt.where(Subscription.plan_ref == plan_ref)
    if resource_ref is not None:
        stmt = stmt.where(Subscription.resource_ref == resource_ref)
    if statuses:
        stmt = stmt.where(Subscription.status.in_(statuses))
    if pricing_types:
        stmt = stmt.where(Subscription.pricing_type.in_(pricing_types))
    stmt = created_at.apply(stmt, Subscription.created_at)
    return paginate(session, stmt, Subscription.pk, page)


def on_older_versions(
    session: Session, env_id: int, kind: str, ref: str, latest_pk: int, statuses: Iterable[str]
) -> list[int]:
    """Subscriptions (by pk) holding a version of the plan or add-on other than `latest_pk`."""
    if kind == "PLAN":
        stmt = select(Subscription.pk).where(
            Subscription.environment_id == env_id,
            Subscription.plan_ref == ref,
            Subscription.plan_pk != latest_pk,
            Subscription.status.in_(list(statuses)),
        )
    else:
        stmt = (
            select(Subscription.pk)
            .join(SubscriptionAddon, SubscriptionAddon.subscription_pk == Subscription.pk)
            .where(
                Subscription.environment_id == env_id,
                SubscriptionAddon.addon_ref == ref,
                SubscriptionAddon.addon_pk != latest_pk,
                Subscription.status.in_(list(statuses)),
            )
        )
    return list(session.scalars(stmt.order_by(Subscription.pk)))
