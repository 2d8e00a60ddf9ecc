"""Loading what a customer is entitled to, inside a caller's session.

Reads the customer's live subscriptions (plan version with its parents, add-on versions and
quantities, subscription-level overrides) and active promotional entitlements, then folds them with
the pure rules in `entitle.catalog.packages.rules` and `entitle.catalog.packages.allowance`. Usage
counting (`entitle.usage`) and the checks (`entitle.entitlements`) both build on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages import rules as package_rules
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.allowance import Allowance, more_generous
from entitle.catalog.packages.models import Package
from entitle.customers.models import Customer
from entitle.periods import usage_period_at
from entitle.promotions import store as promotions
from entitle.promotions.models import PromotionalEntitlement
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription, SubscriptionEntitlement
from entitle.subscriptions.rules import LIVE

# The usage window that never resets (FLUCTUATING features, metered features without a reset), and the
# resource key of usage at the customer level (NULL would not take part in the usage tables' unique keys).
ALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)
NO_RESOURCE = ""


@dataclass(frozen=True)
class Grant:
    """A customer's effective entitlement to one feature, and the instant its usage windows count from."""

    feature: Feature
    allowance: Allowance
    usage_anchor: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime | None
    anchor: datetime | None


FOREVER = Window(ALL_TIME, None, None)
"""The one window that never resets: every grant without a reset shares it (the entitlement snapshot holds
a window per grant of each of up to 10,000 customers)."""


def _override_terms(
    row: SubscriptionEntitlement, base: package_rules.EntitlementTerms | None
) -> package_rules.EntitlementTerms:
    anchor = (row.reset_period_configuration or {}).get("accordingTo")
    terms = base or package_rules.EntitlementTerms(type=row.entitlement_type, ref_id=row.ref_id, behavior="Override")
    return replace(
        terms,
        is_granted=True,
        usage_limit=row.usage_limit,
        has_unlimited_usage=row.has_unlimited_usage,
        has_soft_limit=row.has_soft_limit,
        reset_period=row.reset_period if row.reset_period else terms.reset_period,
        reset_anchor=anchor if row.reset_period else terms.reset_anchor,
        amount=row.amount if row.amount is not None else terms.amount,
        cadence=row.cadence if row.cadence is not None else terms.cadence,
        # A subscription's own credit amount is what it grants, not an amount per unit of a feature.
        dependency_feature_ref=None if row.amount is not None else terms.dependency_feature_ref,
    )


def subscription_terms(
    session: Session, env_id: int, subs: list[Subscription]
) -> dict[int, dict[package_rules.Key, package_rules.EntitlementTerms]]:
    """Each subscription's entitlements: plan (with inheritance) + add-ons + overrides.

    Loads every package version involved (plans, their parents, add-ons) in one query."""
    pks = [s.pk for s in subs]
    addons = subscriptions.addons_of(session, pks)
    overrides = subscriptions.overrides_of(session, pks)
    chains: dict[int, list[Package]] = {}
    of_plan: dict[int, list[Package]] = {}  # many subscriptions share a plan: one chain each plan
    for sub in subs:
        if sub.plan_pk not in of_plan:
            plan = session.get(Package, sub.plan_pk)
            of_plan[sub.plan_pk] = packages.plan_chain(session, env_id, plan) if plan is not None else []
        chains[sub.pk] = of_plan[sub.plan_pk]
    involved = {p.pk for chain in chains.values() for p in chain} | {
        a.addon_pk for rows in addons.values() for a in rows
    }
    terms = {
        pk: [package_rules.terms_of(e) for e in rows]
        for pk, rows in packages.entitlements_of_many(session, involved).items()
    }
    result: dict[int, dict[package_rules.Key, package_rules.EntitlementTerms]] = {}
    for sub in subs:
        base = package_rules.effective_package_entitlements([terms[p.pk] for p in chains[sub.pk]])
        bought = [(terms[a.addon_pk], a.quantity) for a in addons.get(sub.pk, [])]
        combined = package_rules.with_addons(base, bought)
        for row in overrides.get(sub.pk, []):
            key = (row.entitlement_type, row.ref_id)
            combined[key] = _override_terms(row, combined.get(key))
        result[sub.pk] = combined
    return result


def live_subscriptions(session: Session, customer: Customer, resource_ref: str | None) -> list[Subscription]:
    subs = subscriptions.of_customer(session, customer.pk, [s.value for s in LIVE])
    return [s for s in subs if (s.resource_ref or None) == (resource_ref or None)]


@dataclass(frozen=True)
class Resolution:
    """A customer's grants (feature id -> grant) and the live subscriptions and promotions they came
    from (whose ends and starts bound how long the grants hold)."""

    grants: dict[str, Grant]
    subscriptions: list[Subscription]
    promotions: list[PromotionalEntitlement]


def customer_grants(
    session: Session, env_id: int, customer: Customer, resource_ref: str | None, now: datetime
) -> tuple[dict[str, Grant], bool]:
    """Feature id -> grant, and whether the customer has any live subscription (for denial reasons)."""
    return owners_grants(session, env_id, [(customer, resource_ref)], now)[(customer.pk, resource_ref or None)]


def owners_grants(
    session: Session, env_id: int, owners: Sequence[tuple[Customer, str | None]], now: datetime
) -> dict[tuple[int, str | None], tuple[dict[str, Grant], bool]]:
    """`customer_grants` of several (customer, resource) owners at once, keyed by (customer pk, resource
    or None): a fixed number of queries however many owners (one plan chain per distinct plan)."""
    return owners_grants_until(session, env_id, owners, now)[0]


def owners_grants_until(
    session: Session,
    env_id: int,
    owners: Sequence[tuple[Customer, str | None]],
    now: datetime,
    only: Mapping[str, Feature] | None = None,
) -> tuple[dict[tuple[int, str | None], tuple[dict[str, Grant], bool]], datetime | None]:
    """`owners_grants`, and the first instant after `now` at which the same rows may resolve otherwise
    (a live subscription or promotion of any of the owners ending or leaving its trial; None: never).
    Merged allowances keep only the later end of the two (`more_generous`), so the sources decide it.
    `only`: grants of these live features alone (the caller read them: they are not read again)."""
    pks = {customer.pk for customer, _ in owners}
    live = subscriptions.of_customers(session, pks, [s.value for s in LIVE])
    promos = promotions.live_for_customers(session, pks, now)
    boundaries = [sub.end_date for subs in live.values() for sub in subs]
    boundaries += [sub.trial_end_date for subs in live.values() for sub in subs]
    boundaries += [promo.end_date for found in promos.values() for promo in found]
    later = [instant for instant in boundaries if instant is not None and instant > now]
    all_terms = subscription_terms(session, env_id, [sub for pk in sorted(pks) for sub in live.get(pk, [])])
    offered: dict[tuple[int, str | None], dict[str, tuple[Allowance, datetime, datetime]]] = {}
    has_subscription: dict[tuple[int, str | None], bool] = {}
    for customer, resource_ref in owners:
        key = (customer.pk, resource_ref or None)
        subs = [s for s in live.get(customer.pk, []) if (s.resource_ref or None) == key[1]]
        offered[key] = _allowances(subs, all_terms, promos.get(customer.pk, []))
        has_subscription[key] = bool(subs)
    if only is None:
        known_features = features.get_many(session, env_id, sorted({ref for a in offered.values() for ref in a}))
    else:
        known_features = {ref: feature for ref, feature in only.items() if feature.archived_at is None}
    grants = {key: (_grants(known_features, allowances), has_subscription[key]) for key, allowances in offered.items()}
    return grants, min(later, default=None)


def _allowances(
    subs: list[Subscription],
    all_terms: dict[int, dict[package_rules.Key, package_rules.EntitlementTerms]],
    promos: list[PromotionalEntitlement],
) -> dict[str, tuple[Allowance, datetime, datetime]]:
    """Feature id -> the most generous allowance of the owner's subscriptions and promotions, the
    earliest start (usage windows count from it) and the latest change."""
    allowances: dict[str, tuple[Allowance, datetime, datetime]] = {}

    def offer(ref: str, allowance: Allowance, anchor: datetime, updated: datetime) -> None:
        known = allowances.get(ref)
        if known is None:
            allowances[ref] = (allowance, anchor, updated)
        else:
            merged = more_generous(known[0], allowance)
            allowances[ref] = (merged, min(known[1], anchor), max(known[2], updated))

    for sub in subs:
        for (kind, ref), terms in all_terms[sub.pk].items():
            if kind == "FEATURE" and terms.is_granted:
                offer(ref, replace(terms.allowance(), valid_until=sub.end_date), sub.start_date, sub.updated_at)
    for promo in promos:
        allowance = Allowance(
            usage_limit=promo.usage_limit,
            has_unlimited=promo.has_unlimited_usage,
            has_soft_limit=promo.has_soft_limit,
            enum_values=frozenset(promo.enum_values) if promo.enum_values is not None else None,
            reset_period=promo.reset_period,
            reset_anchor=(promo.reset_period_configuration or {}).get("accordingTo"),
            valid_until=promo.end_date,
        )
        offer(promo.feature_ref, allowance, promo.start_date, promo.updated_at)
    return allowances


def resolve(session: Session, env_id: int, customer: Customer, resource_ref: str | None, now: datetime) -> Resolution:
    """What `customer_grants` answers, with the subscriptions and promotions it came from (their ends
    bound how long it holds)."""
    subs = live_subscriptions(session, customer, resource_ref)
    promos = promotions.live_for_customer(session, customer.pk, now)
    allowances = _allowances(subs, subscription_terms(session, env_id, subs), promos)
    known_features = features.get_many(session, env_id, list(allowances))
    return Resolution(_grants(known_features, allowances), subs, promos)


def _grants(
    known_features: dict[str, Feature], allowances: dict[str, tuple[Allowance, datetime, datetime]]
) -> dict[str, Grant]:
    """The allowances of features that exist and are not archived, as grants."""
    return {
        ref: Grant(feature=known_features[ref], allowance=a, usage_anchor=anchor, updated_at=updated)
        for ref, (a, anchor, updated) in allowances.items()
        if ref in known_features and known_features[ref].archived_at is None
    }


def usage_window(feature: Feature, allowance: Allowance | None, anchor: datetime | None, at: datetime) -> Window:
    """The usage window `at` falls in: resetting windows for incrementally metered features with a
    reset period, one all-time window otherwise (a FLUCTUATING count such as seats never resets)."""
    if (
        allowance is not None
        and allowance.reset_period
        and feature.meter_type == "INCREMENTAL"
        and anchor is not None
        and at >= anchor
    ):
        period = usage_period_at(allowance.reset_period, allowance.reset_anchor, anchor, at)
        return Window(period.start, period.end, period.anchor)
    return FOREVER


def resource_key(resource_ref: str | None) -> str:
    return resource_ref or NO_RESOURCE
