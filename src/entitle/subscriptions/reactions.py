"""How subscriptions follow what happens below them, and answer the questions of the domains below.
Installed at start-up by `entitle.wiring.install`, before the adapters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from entitle.catalog.features import ports as feature_ports
from entitle.catalog.packages.events import ParentPlansChanged
from entitle.catalog.packages.models import Package, PackageCharge, PackageEntitlement
from entitle.customers import ports as customer_ports
from entitle.customers.events import CustomerArchived, entitlements_changed
from entitle.customers.models import Customer
from entitle.domain_events import subscribe
from entitle.subscriptions import store
from entitle.subscriptions.cancellation import end_all_for_archived_customer
from entitle.subscriptions.models import Subscription, SubscriptionAddon, SubscriptionEntitlement
from entitle.subscriptions.rules import OPEN


def end_with_customer(s: Session, event: CustomerArchived) -> None:
    end_all_for_archived_customer(s, event.customer)


def announce_inherited_change(s: Session, event: ParentPlansChanged) -> None:
    """`EntitlementsChanged` for every live subscription whose plan inherits from one of the parents.

    A subscription keeps the plan version it bought, but inherits from the *latest published* version
    of each ancestor: publishing a new version of a parent plan, or archiving the product (ancestors
    stop counting), changes what those customers get. The chains are read now, before the change."""
    for _plan, customer_ref, resource_ref in store.inheriting(s, event).subscriptions:
        entitlements_changed(s, event.env_id, customer_ref, resource_ref)


def held_resources(s: Session, customer: Customer) -> list[str]:
    held = select(Subscription.resource_ref).where(
        Subscription.customer_pk == customer.pk, Subscription.resource_ref.is_not(None)
    )
    return sorted({r for r in s.scalars(held.distinct()) if r})


def subscription_grants(s: Session, env_id: int, feature_ref: str, now: datetime) -> list[str]:
    """Open subscriptions that hold an archived plan or add-on version granting or pricing the feature,
    or override it, as labels (archiving the feature would take it from them silently)."""
    open_statuses = [st.value for st in OPEN]
    users: list[str] = []
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
        for sub_ref, kind, package_ref in s.execute(stmt).all():
            noun = "plan" if kind == "PLAN" else "add-on"
            users.append(f"subscription '{sub_ref}' (archived {noun} '{package_ref}')")
    overrides = s.scalars(
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


def install() -> None:
    subscribe(CustomerArchived, end_with_customer)
    subscribe(ParentPlansChanged, announce_inherited_change)
    customer_ports.held_resources.install(held_resources)
    feature_ports.customer_grants.add(subscription_grants)
