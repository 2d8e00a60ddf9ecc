from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from entitle.catalog.features.models import Feature
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.errors import NotFound


def find(session: Session, env_id: int, ref_id: str) -> Feature | None:
    return session.scalars(
        select(Feature).where(Feature.environment_id == env_id, Feature.ref_id == ref_id)
    ).one_or_none()


def get(session: Session, env_id: int, ref_id: str) -> Feature:
    feature = find(session, env_id, ref_id)
    if feature is None:
        raise NotFound("feature", ref_id)
    return feature


def get_many(session: Session, env_id: int, ref_ids: list[str]) -> dict[str, Feature]:
    if not ref_ids:
        return {}
    rows = session.scalars(select(Feature).where(Feature.environment_id == env_id, Feature.ref_id.in_(set(ref_ids))))
    return {f.ref_id: f for f in rows}


def list_page(
    session: Session,
    env_id: int,
    page: PageRequest,
    *,
    ids: list[str] | None,
    feature_types: list[str] | None,
    meter_types: list[str] | None,
    statuses: list[str] | None,
    created_at: CreatedAtRange,
) -> Page[Feature]:
    stmt = select(Feature).where(Feature.environment_id == env_id, Feature.archived_at.is_(None))
    if ids:
        stmt = stmt.where(Feature.ref_id.in_(ids))
    if feature_types:
        stmt = stmt.where(Feature.feature_type.in_(feature_types))
    if meter_types:
        stmt = stmt.where(Feature.meter_type.in_(meter_types))
    if statuses:
        stmt = stmt.where(Feature.feature_status.in_(statuses))
    stmt = created_at.apply(stmt, Feature.created_at)
    return paginate(session, stmt, Feature.pk, page)


def metered_with_meter(session: Session, env_id: int) -> list[Feature]:
    """Live features whose usage comes from raw events through a meter."""
    rows = session.scalars(
        select(Feature).where(
            Feature.environment_id == env_id, Feature.archived_at.is_(None), Feature.meter.is_not(None)
        )
    )
    return [f for f in rows if f.meter]


def still_granted(session: Session, env_id: int, feature_ref: str, now: datetime) -> list[str]:
    """What grants the feature to customers besides the live catalog (which `feature_in_use` covers),
    as labels: promotional entitlements not yet expired (of customers not archived), and open
    subscriptions that hold an archived plan or add-on version granting or pricing it, or override it.

    Archiving the feature would silently take these grants away, so it is refused while any is left."""
    from entitle.catalog.packages.models import Package, PackageCharge, PackageEntitlement
    from entitle.subscriptions.models import Subscription, SubscriptionAddon, SubscriptionEntitlement
    from entitle.subscriptions.rules import OPEN

    open_statuses = [s.value for s in OPEN]
    users = [
        f"the promotional entitlement of customer '{ref}'"
        for ref in promotion_holders(session, env_id, feature_ref, now)
    ]

    uses_feature = or_(
        select(PackageEntitlement.pk)
        .where(
            PackageEntitlement.package_pk == Package.pk,
            PackageEntitlement.entitlement_type == "FEATURE",
            PackageEntitlement.ref_id == feature_ref,
        )
        .exists(),
        select(PackageCharge.pk)
        .where(PackageCharge.package_pk == Package.pk, PackageCharge.feature_ref == feature_ref)
        .exists(),
    )
    held_plans = (
        select(Subscription.ref_id, Package.kind, Package.ref_id)
        .join(Package, Package.pk == Subscription.plan_pk)
        .where(
            Subscription.environment_id == env_id,
            Subscription.status.in_(open_statuses),
            Package.status == "ARCHIVED",
            uses_feature,
        )
    )
    held_addons = (
        select(Subscription.ref_id, Package.kind, Package.ref_id)
        .join(SubscriptionAddon, SubscriptionAddon.subscription_pk == Subscription.pk)
        .join(Package, Package.pk == SubscriptionAddon.addon_pk)
        .where(
            Subscription.environment_id == env_id,
            Subscription.status.in_(open_statuses),
            Package.status == "ARCHIVED",
            uses_feature,
        )
    )
    for stmt in (held_plans, held_addons):
        for sub_ref, kind, package_ref in session.execute(stmt).all():
            noun = "plan" if kind == "PLAN" else "add-on"
            users.append(f"subscription '{sub_ref}' (archived {noun} '{package_ref}')")
    overrides = session.scalars(
        select(Subscription.ref_id)
        .join(SubscriptionEntitlement, SubscriptionEntitlement.subscription_pk == Subscription.pk)
        .where(
            Subscription.environment_id == env_id,
            Subscription.status.in_(open_statuses),
            SubscriptionEntitlement.entitlement_type == "FEATURE",
            SubscriptionEntitlement.ref_id == feature_ref,
        )
    )
    users += [f"subscription '{ref}' (an entitlement override)" for ref in overrides]
    return users


def promotion_holders(session: Session, env_id: int, feature_ref: str, now: datetime) -> list[str]:
    """Customers (not archived) holding a promotional entitlement to the feature that has not expired."""
    from entitle.customers.models import Customer
    from entitle.promotions.models import PromotionalEntitlement as Promo

    return list(
        session.scalars(
            select(Customer.ref_id)
            .join(Promo, Promo.customer_pk == Customer.pk)
            .where(
                Promo.environment_id == env_id,
                Promo.feature_ref == feature_ref,
                or_(Promo.end_date.is_(None), Promo.end_date > now),
                Customer.archived_at.is_(None),
            )
            .order_by(Customer.ref_id)
        )
    )
