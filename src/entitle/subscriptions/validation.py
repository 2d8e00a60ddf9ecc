"""What the catalog lets a subscription be made of: the latest published plan and add-on versions, which
add-ons, per-unit quantities and entitlement overrides a plan accepts, and whether a plan change is a
downgrade. Shared by provisioning, changes and the preview; raises 400/404/409 domain errors."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import ADDON, ARCHIVED, PLAN, Package, PackageCharge
from entitle.customers.models import Customer
from entitle.errors import FailedPrecondition, InvalidArgument, NotFound
from entitle.subscriptions import store
from entitle.subscriptions.models import (
    Subscription,
)
from entitle.subscriptions.rules import Status
from entitle.subscriptions.schemas import (
    AddonQuantity,
    ChargeQuantity,
    EntitlementOverride,
)


def base_charges(charges: list[PackageCharge]) -> list[PackageCharge]:
    return [c for c in charges if not c.is_overage]


def periods_priced(charges: list[PackageCharge]) -> set[str]:
    return {c.billing_period for c in base_charges(charges)}


def recurring_price(charges: list[PackageCharge], billing_period: str | None, country: str | None) -> Decimal:
    """The plan's flat recurring price for a billing period (country override first), per month, so
    plans on different periods compare; used to tell an upgrade from a downgrade."""
    if billing_period is None:
        return Decimal(0)
    flat = [c for c in base_charges(charges) if c.billing_model == "FLAT_FEE" and c.billing_period == billing_period]
    local = [c for c in flat if country and (c.billing_country_code or "").lower() == country.lower()]
    chosen = local or [c for c in flat if not c.billing_country_code]
    total = sum((c.price_amount or Decimal(0) for c in chosen), Decimal(0))
    return total / 12 if billing_period == "ANNUALLY" else total


def latest_package(s: Session, env_id: int, kind: str, ref: str) -> Package:
    pkg = packages.latest_published(s, env_id, kind, ref)
    if pkg is None:
        raise NotFound("plan" if kind == PLAN else "add-on", ref)
    if pkg.status == ARCHIVED:
        raise FailedPrecondition(f"{'plan' if kind == PLAN else 'add-on'} '{ref}' is archived")
    return pkg


def product_of_plan(s: Session, env_id: int, plan_ref: str) -> int | None:
    """The product of a plan's latest published, non-archived version (None if there is none)."""
    plan = packages.latest_published(s, env_id, PLAN, plan_ref)
    return plan.product_pk if plan is not None and plan.status != ARCHIVED else None


def check_addons(s: Session, env_id: int, plan: Package, wanted: list[AddonQuantity]) -> list[tuple[Package, int]]:
    chosen: list[tuple[Package, int]] = []
    refs = {a.id for a in wanted if a.quantity > 0}
    compatible = set(plan.compatible_addon_ids or [])
    for item in wanted:
        if item.quantity == 0:
            continue
        addon = latest_package(s, env_id, ADDON, item.id)
        if addon.product_pk != plan.product_pk:
            raise InvalidArgument(f"add-on '{item.id}' belongs to another product than plan '{plan.ref_id}'")
        if item.id not in compatible:
            raise InvalidArgument(f"add-on '{item.id}' is not compatible with plan '{plan.ref_id}'")
        if addon.max_quantity is not None and item.quantity > addon.max_quantity:
            raise InvalidArgument(f"add-on '{item.id}' allows at most {addon.max_quantity}")
        missing = [d for d in addon.dependencies or [] if d not in refs]
        if missing:
            raise InvalidArgument(f"add-on '{item.id}' needs add-on(s) {', '.join(missing)}")
        chosen.append((addon, item.quantity))
    return chosen


def check_charges(plan_charges: list[PackageCharge], wanted: list[ChargeQuantity]) -> None:
    per_unit = {c.feature_ref: c for c in base_charges(plan_charges) if c.billing_model == "PER_UNIT"}
    credit = {c.credit_rate_currency_ref for c in plan_charges if c.grants_credits}
    for item in wanted:
        if item.type == "CREDIT":
            if item.id not in credit:
                raise InvalidArgument(f"charges: the plan has no credit charge in currency '{item.id}'")
            if item.quantity != item.quantity.to_integral_value():
                raise InvalidArgument(f"charges: '{item.id}' is bought in whole units of its credit charge")
            continue
        charge = per_unit.get(item.id)
        if charge is None:
            raise InvalidArgument(f"the plan has no per-unit charge for feature '{item.id}'")
        _check_range(charge, item.id, item.quantity)


def check_unit_ranges(plan_charges: list[PackageCharge], quantities: Mapping[str, Decimal]) -> None:
    """A preview's `billableFeatures`: each quantity of a feature the plan prices per unit within that
    price's minimum and maximum, as provisioning requires (others may be an add-on's, priced as such)."""
    per_unit = {c.feature_ref: c for c in base_charges(plan_charges) if c.billing_model == "PER_UNIT"}
    for feature, quantity in quantities.items():
        if (charge := per_unit.get(feature)) is not None:
            _check_range(charge, feature, quantity)


def _check_range(charge: PackageCharge, feature: str, quantity: Decimal) -> None:
    if charge.min_unit_quantity is not None and quantity < charge.min_unit_quantity:
        raise InvalidArgument(f"'{feature}' needs at least {charge.min_unit_quantity} units")
    if charge.max_unit_quantity is not None and quantity > charge.max_unit_quantity:
        raise InvalidArgument(f"'{feature}' allows at most {charge.max_unit_quantity} units")


def check_overrides(s: Session, env_id: int, items: list[EntitlementOverride]) -> None:
    known = features.get_many(s, env_id, [i.id for i in items if i.type == "FEATURE"])
    for item in items:
        if item.type != "FEATURE":
            continue
        feature = known.get(item.id)
        if feature is None or feature.archived_at is not None:
            raise NotFound("feature", item.id)
        if feature.feature_type == "NUMBER" and item.usage_limit is None and not item.has_unlimited_usage:
            raise InvalidArgument(f"entitlement '{item.id}' needs usageLimit or hasUnlimitedUsage")
        # As a plan's entitlement (catalog.packages.rules.check_feature_entitlement): what does not fit the
        # feature's type is refused, not stored beside the grant and ignored by every check.
        if feature.feature_type == "NUMBER" and item.usage_limit is not None and item.has_unlimited_usage:
            raise InvalidArgument(f"entitlement '{item.id}': usageLimit and hasUnlimitedUsage exclude each other")
        limits = item.usage_limit is not None or item.has_unlimited_usage or item.has_soft_limit or item.reset_period
        if feature.feature_type != "NUMBER" and limits:
            raise InvalidArgument(
                f"entitlement '{item.id}' is of a {feature.feature_type} feature: it takes no usageLimit, "
                "hasUnlimitedUsage, hasSoftLimit or resetPeriod"
            )


def is_downgrade(s: Session, old: Subscription, new_plan: Package, new_period: str | None, country: str | None) -> bool:
    old_plan = s.get(Package, old.plan_pk)
    if old_plan is None:
        return False
    if new_plan.ref_id in {p.ref_id for p in packages.plan_chain(s, old.environment_id, old_plan)[1:]}:
        return True  # moving to a plan the current one inherits from
    old_price = recurring_price(packages.charges_of(s, old.plan_pk), old.billing_period, country)
    new_price = recurring_price(packages.charges_of(s, new_plan.pk), new_period, country)
    return new_price < old_price


def trial_used(s: Session, customer: Customer, product_pk: int) -> bool:
    """A plan's automatic trial is for newcomers to the product: a customer who already had a trial
    or a paid subscription in it (a downgrade, a re-subscription) starts without one."""
    subs = store.of_customer(s, customer.pk, [st.value for st in Status])
    return any(x.product_pk == product_pk and (x.trial_end_date is not None or x.pricing_type == "PAID") for x in subs)
