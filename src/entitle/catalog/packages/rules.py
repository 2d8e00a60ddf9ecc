"""Pure rules of plans and add-ons (no I/O): what a package may contain, and how packages combine.

Validation (`check_feature_entitlement`, `reset_configuration`; pricing in `pricing_rules.py`) raises
`InvalidArgument` (or `NotFound` for a feature the caller could not find) with a message naming the
offending field; callers pass in what they loaded. The combination functions are what the entitlement
engine calls:

- **Inheritance** (`effective_package_entitlements`): a plan with a parent plan has every entitlement
  of its parent (recursively), except where it defines an entitlement for the same feature or
  currency itself: then its own definition replaces the inherited one as a whole (the nearest
  definition wins; limits are not added up along the chain).
- **Add-ons** (`with_addons`): an add-on entitlement with behavior *Increment* adds its limit (or
  credit amount) times the add-on quantity to the plan's; *Override* replaces the plan's outright
  (several overrides: the most generous wins). The per-feature arithmetic is the entitlement engine's
  (`entitle.catalog.packages.allowance.subscription_allowance`), so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from entitle.catalog.packages.allowance import AddonGrant, Allowance, subscription_allowance
from entitle.catalog.packages.models import PackageEntitlement
from entitle.errors import InvalidArgument

Key = tuple[str, str]
"""An entitlement's identity inside a package: (type FEATURE|CREDIT, feature id or currency id)."""


# ---------------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureShape:
    """What the rules need to know about a feature."""

    ref_id: str
    feature_type: str
    meter_type: str = "None"
    enum_values: frozenset[str] = frozenset()
    archived: bool = False

    @property
    def metered(self) -> bool:
        """Usage is measured (INCREMENTAL or FLUCTUATING)."""
        return self.meter_type != "None"

    @property
    def resettable(self) -> bool:
        """Usage that accumulates (INCREMENTAL) can be reset each period. A FLUCTUATING count (seats)
        is a current level, not an accumulation, so it never resets; a configuration number
        (meterType None) has no usage at all."""
        return self.meter_type == "INCREMENTAL"


def reset_configuration(
    reset_period: str | None, monthly: str | None, weekly: str | None, yearly: str | None
) -> dict[str, str] | None:
    """The stored `resetPeriodConfiguration` for a reset period and the anchors sent with it.

    A monthly anchor goes only with MONTH, a weekly one only with WEEK, a yearly one only with YEAR;
    DAY and HOUR take none. MONTH/WEEK/YEAR without an anchor reset on the subscription's start
    (`SubscriptionStart`), which is what the configuration would say anyway.
    """
    given = {"MONTH": ("monthly", monthly), "WEEK": ("weekly", weekly), "YEAR": ("yearly", yearly)}
    for period, (name, anchor) in given.items():
        if anchor is not None and reset_period != period:
            raise InvalidArgument(
                f"{name}ResetPeriodConfiguration goes with resetPeriod {period}, not {reset_period or 'none'}"
            )
    if reset_period is None or reset_period not in given:
        return None
    return {"accordingTo": given[reset_period][1] or "SubscriptionStart"}


def check_feature_entitlement(
    feature: FeatureShape,
    *,
    usage_limit: Decimal | None,
    has_unlimited_usage: bool,
    has_soft_limit: bool,
    reset_period: str | None,
    enum_values: Sequence[str] | None,
) -> None:
    """A feature entitlement must fit its feature:

    - the feature is not archived;
    - BOOLEAN: no usageLimit, hasUnlimitedUsage, hasSoftLimit, resetPeriod or enumValues;
    - NUMBER: a usageLimit >= 0 or hasUnlimitedUsage (not both), no enumValues; a resetPeriod only
      when the feature's usage accumulates (meterType INCREMENTAL, see `FeatureShape.resettable`);
    - ENUM: a non-empty list of distinct enumValues, each one of the feature's values; no limit,
      soft limit or reset.
    """
    ref = feature.ref_id
    if feature.archived:
        raise InvalidArgument(f"feature '{ref}' is archived")
    if feature.feature_type == "BOOLEAN":
        if usage_limit is not None or has_unlimited_usage or has_soft_limit or reset_period or enum_values:
            raise InvalidArgument(
                f"'{ref}' is a BOOLEAN feature: it takes no usageLimit, hasUnlimitedUsage, hasSoftLimit, "
                "resetPeriod or enumValues"
            )
        return
    if feature.feature_type == "NUMBER":
        if enum_values:
            raise InvalidArgument(f"'{ref}' is a NUMBER feature: enumValues are only for ENUM features")
        if usage_limit is None and not has_unlimited_usage:
            raise InvalidArgument(f"'{ref}' is a NUMBER feature: it needs usageLimit or hasUnlimitedUsage")
        if usage_limit is not None and has_unlimited_usage:
            raise InvalidArgument(f"'{ref}': usageLimit and hasUnlimitedUsage exclude each other")
        if usage_limit is not None and usage_limit < 0:
            raise InvalidArgument(f"'{ref}': usageLimit cannot be negative")
        if reset_period and not feature.resettable:
            raise InvalidArgument(
                f"'{ref}' has meterType {feature.meter_type}: "
                "only an INCREMENTAL metered feature can have a resetPeriod"
            )
        return
    if feature.feature_type == "ENUM":
        if usage_limit is not None or has_unlimited_usage or has_soft_limit or reset_period:
            raise InvalidArgument(
                f"'{ref}' is an ENUM feature: it takes enumValues, not a limit, soft limit or resetPeriod"
            )
        if not enum_values:
            raise InvalidArgument(f"'{ref}' is an ENUM feature: grant a non-empty enumValues list")
        if len(set(enum_values)) != len(enum_values):
            raise InvalidArgument(f"'{ref}': enumValues must be distinct")
        unknown = set(enum_values) - feature.enum_values
        if unknown:
            raise InvalidArgument(f"feature '{ref}' has no value(s) {', '.join(sorted(unknown))}")
        return
    raise InvalidArgument(f"feature '{ref}' has an unknown type {feature.feature_type}")


# ---------------------------------------------------------------------------------------------- graphs


class CycleError(ValueError):
    def __init__(self, path: list[str]) -> None:
        super().__init__(" -> ".join(path))
        self.path = path


def parent_chain(ref: str, parent_of: Mapping[str, str | None]) -> list[str]:
    """`[ref, parent, grandparent, ...]`, following `parent_of` until a plan with no parent (or one
    `parent_of` does not know). Raises `CycleError` when the chain comes back on itself."""
    chain = [ref]
    seen = {ref}
    current = parent_of.get(ref)
    while current is not None:
        if current in seen:
            raise CycleError([*chain, current])
        chain.append(current)
        seen.add(current)
        current = parent_of.get(current)
    return chain


def find_cycle(start: str, edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A path `start -> ... -> start` through `edges` (e.g. add-on dependencies), or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    visited: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in visited:
                visited.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


# ---------------------------------------------------------------------------------------------- combination


@dataclass(frozen=True)
class EntitlementTerms:
    """A package entitlement as the calculations see it. For CREDIT, `amount` is the grant per
    `cadence`; for FEATURE, `usage_limit`/`has_unlimited_usage`/`enum_values` describe the grant."""

    type: str
    ref_id: str
    behavior: str = "Increment"
    is_granted: bool = True
    usage_limit: Decimal | None = None
    has_unlimited_usage: bool = False
    has_soft_limit: bool = False
    reset_period: str | None = None
    reset_anchor: str | None = None
    enum_values: frozenset[str] | None = None
    amount: Decimal | None = None
    cadence: str | None = None
    # CREDIT: the amount is per unit of this feature's quantity on the subscription.
    dependency_feature_ref: str | None = None

    @property
    def key(self) -> Key:
        return (self.type, self.ref_id)

    def allowance(self) -> Allowance:
        return Allowance(
            usage_limit=self.amount if self.type == "CREDIT" else self.usage_limit,
            has_unlimited=self.has_unlimited_usage,
            has_soft_limit=self.has_soft_limit,
            enum_values=self.enum_values,
            reset_period=self.reset_period,
            reset_anchor=self.reset_anchor,
        )

    def with_allowance(self, a: Allowance) -> EntitlementTerms:
        if self.type == "CREDIT":
            return replace(self, is_granted=True, amount=a.usage_limit, has_soft_limit=a.has_soft_limit)
        return replace(
            self,
            is_granted=True,
            usage_limit=a.usage_limit,
            has_unlimited_usage=a.has_unlimited,
            has_soft_limit=a.has_soft_limit,
            enum_values=a.enum_values,
            reset_period=a.reset_period,
            reset_anchor=a.reset_anchor,
        )


def terms_of(e: PackageEntitlement) -> EntitlementTerms:
    """The stored entitlement row as `EntitlementTerms`."""
    anchor = (e.reset_period_configuration or {}).get("accordingTo")
    return EntitlementTerms(
        type=e.entitlement_type,
        ref_id=e.ref_id,
        behavior=e.behavior,
        is_granted=e.is_granted,
        usage_limit=e.usage_limit,
        has_unlimited_usage=bool(e.has_unlimited_usage),
        has_soft_limit=bool(e.has_soft_limit),
        reset_period=e.reset_period,
        reset_anchor=anchor,
        enum_values=frozenset(e.enum_values) if e.enum_values is not None else None,
        amount=e.amount,
        cadence=e.cadence,
        dependency_feature_ref=e.dependency_feature_ref,
    )


def effective_package_entitlements(chain: Sequence[Iterable[EntitlementTerms]]) -> dict[Key, EntitlementTerms]:
    """A plan's entitlements with inheritance applied.

    `chain[0]` is the plan's own entitlements, `chain[1]` its parent's, `chain[2]` the grandparent's,
    and so on (see `parent_chain`). For each (type, id) the nearest definition wins whole: a plan's
    own entitlement replaces what it would inherit, and an entitlement it does not define is
    inherited from the nearest ancestor that does. An inherited entitlement that is not granted
    (`isGranted` false) is kept as such, so a child can also withhold a feature its parent grants by
    defining it with `isGranted` false.
    """
    result: dict[Key, EntitlementTerms] = {}
    for level in chain:
        for terms in level:
            result.setdefault(terms.key, terms)
    return result


def with_addons(
    base: Mapping[Key, EntitlementTerms], addons: Iterable[tuple[Iterable[EntitlementTerms], int]]
) -> dict[Key, EntitlementTerms]:
    """The plan's (effective) entitlements combined with add-ons bought in the given quantities.

    For each feature or currency an add-on entitles: *Increment* adds `limit x quantity` to the
    plan's limit (credit amounts likewise; unlimited absorbs; enum values are unioned); *Override*
    replaces the plan's entitlement (with several overrides the most generous wins; increments still
    apply on top). An add-on may entitle a feature the plan does not have: it is granted from zero.
    Add-ons bought with quantity 0 and add-on entitlements with `isGranted` false count for nothing;
    a plan entitlement that is not granted is treated as absent. Negative quantities raise ValueError.
    """
    grants: dict[Key, list[tuple[EntitlementTerms, int]]] = {}
    for entitlements, quantity in addons:
        if quantity < 0:
            raise ValueError("add-on quantity cannot be negative")
        for terms in entitlements:
            if quantity > 0 and terms.is_granted:
                grants.setdefault(terms.key, []).append((terms, quantity))
    result = dict(base)
    for key, items in grants.items():
        plan = base.get(key)
        plan_allowance = plan.allowance() if plan is not None and plan.is_granted else None
        combined = subscription_allowance(plan_allowance, [AddonGrant(t.allowance(), t.behavior, q) for t, q in items])
        template = plan if plan is not None else items[0][0]
        assert combined is not None  # there is at least one grant
        result[key] = template.with_allowance(combined)
    return result
