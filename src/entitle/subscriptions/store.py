from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.errors import NotFound
from entitle.subscriptions.models import (
    FutureUpdate,
    Subscription,
    SubscriptionAddon,
    SubscriptionCharge,
    SubscriptionEntitlement,
)


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


def by_pk(session: Session, pk: int, *, for_update: bool = False) -> Subscription | None:
    stmt = select(Subscription).where(Subscription.pk == pk)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


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


def addons_of(session: Session, sub_pks: list[int]) -> dict[int, list[SubscriptionAddon]]:
    found: dict[int, list[SubscriptionAddon]] = defaultdict(list)
    if sub_pks:
        rows = session.scalars(
            select(SubscriptionAddon)
            .where(SubscriptionAddon.subscription_pk.in_(sub_pks))
            .order_by(SubscriptionAddon.pk)
        )
        for row in rows:
            found[row.subscription_pk].append(row)
    return found


def charges_of(session: Session, sub_pks: list[int]) -> dict[int, list[SubscriptionCharge]]:
    found: dict[int, list[SubscriptionCharge]] = defaultdict(list)
    if sub_pks:
        rows = session.scalars(
            select(SubscriptionCharge)
            .where(SubscriptionCharge.subscription_pk.in_(sub_pks))
            .order_by(SubscriptionCharge.pk)
        )
        for row in rows:
            found[row.subscription_pk].append(row)
    return found


def overrides_of(session: Session, sub_pks: list[int]) -> dict[int, list[SubscriptionEntitlement]]:
    found: dict[int, list[SubscriptionEntitlement]] = defaultdict(list)
    if sub_pks:
        rows = session.scalars(
            select(SubscriptionEntitlement)
            .where(SubscriptionEntitlement.subscription_pk.in_(sub_pks))
            .order_by(SubscriptionEntitlement.pk)
        )
        for row in rows:
            found[row.subscription_pk].append(row)
    return found


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
) -> Page[Subscription]:
    stmt = select(Subscription).where(Subscription.environment_id == env_id)
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
