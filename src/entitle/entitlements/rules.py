"""The entitlement calculation: pure functions, no I/O.

A customer's allowance for a feature is folded from several sources:

1. **Within one subscription** the plan's entitlement (already merged with its parent plans) is the
   base. Each add-on entitlement with behaviour *Increment* adds its limit times the add-on quantity
   (unlimited if either is unlimited; enum values are unioned). An add-on with behaviour *Override*
   replaces the base outright; when several add-ons override, the most generous override wins.
   A subscription-level override (the `entitlements` field of a provisioned subscription) replaces
   the result for that subscription.
2. **Across subscriptions and promotions** Stigg's "generous" rule applies: the customer gets the
   most generous of what each live subscription and each active promotional entitlement grants —
   unlimited beats any limit, a soft limit (which never blocks) beats a hard one, a larger limit
   beats a smaller one, and enum values are unioned.

The check (`decide`) then compares usage with the allowance:

- BOOLEAN: granted when the allowance grants it.
- NUMBER, metered (INCREMENTAL or FLUCTUATING): granted when unlimited, when the limit is soft, or
  when `current + requested <= limit`; with no `requestedUsage` the question is "is any usage
  left?", i.e. `current < limit`.
- NUMBER, not metered (a configuration value such as "30 days of retention"): granted when
  `requested <= limit` (no requested usage: granted).
- ENUM: granted when every requested value is among the allowed values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class DeniedReason(StrEnum):
    FEATURE_NOT_FOUND = "FeatureNotFound"
    CUSTOMER_NOT_FOUND = "CustomerNotFound"
    CUSTOMER_IS_ARCHIVED = "CustomerIsArchived"
    CUSTOMER_RESOURCE_NOT_FOUND = "CustomerResourceNotFound"
    NO_ACTIVE_SUBSCRIPTION = "NoActiveSubscription"
    NO_FEATURE_ENTITLEMENT = "NoFeatureEntitlementInSubscription"
    USAGE_EXCEEDING_LIMIT = "RequestedUsageExceedingLimit"
    VALUES_MISMATCH = "RequestedValuesMismatch"
    FEATURE_TYPE_MISMATCH = "FeatureTypeMismatch"
    REVOKED = "Revoked"


@dataclass(frozen=True)
class Allowance:
    """What one source grants for one feature. `usage_limit` None with `has_unlimited` False means
    no numeric limit was set (a boolean grant, or an enum)."""

    usage_limit: Decimal | None = None
    has_unlimited: bool = False
    has_soft_limit: bool = False
    enum_values: frozenset[str] | None = None
    reset_period: str | None = None
    reset_anchor: str | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True)
class AddonGrant:
    allowance: Allowance
    behavior: str  # "Increment" | "Override"
    quantity: int = 1


def _limit_key(a: Allowance) -> tuple[int, Decimal]:
    """Order allowances by generosity: unlimited, then any soft limit (it never blocks), then hard
    limits by size, then no numeric limit at all."""
    if a.has_unlimited:
        return (3, Decimal(0))
    if a.usage_limit is None:
        return (0, Decimal(0))
    return (2 if a.has_soft_limit else 1, a.usage_limit)


def _union(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    """`valid_until` of a combination: None (open-ended) wins over any date."""
    if a is None or b is None:
        return None
    return max(a, b)


def more_generous(a: Allowance, b: Allowance) -> Allowance:
    winner = a if _limit_key(a) >= _limit_key(b) else b
    return replace(
        winner,
        enum_values=_union(a.enum_values, b.enum_values),
        reset_period=winner.reset_period or a.reset_period or b.reset_period,
        reset_anchor=winner.reset_anchor if winner.reset_period else (a.reset_anchor or b.reset_anchor),
        valid_until=_later(a.valid_until, b.valid_until),
    )


def most_generous(allowances: Iterable[Allowance]) -> Allowance | None:
    result: Allowance | None = None
    for allowance in allowances:
        result = allowance if result is None else more_generous(result, allowance)
    return result


def increment(base: Allowance, addon: Allowance, quantity: int) -> Allowance:
    if quantity < 0:
        raise ValueError("add-on quantity cannot be negative")
    unlimited = base.has_unlimited or addon.has_unlimited
    limit: Decimal | None
    if unlimited or (base.usage_limit is None and addon.usage_limit is None):
        limit = None
    else:
        limit = (base.usage_limit or Decimal(0)) + (addon.usage_limit or Decimal(0)) * quantity
    return replace(
        base,
        usage_limit=limit,
        has_unlimited=unlimited,
        has_soft_limit=base.has_soft_limit or addon.has_soft_limit,
        enum_values=_union(base.enum_values, addon.enum_values),
        reset_period=base.reset_period or addon.reset_period,
        reset_anchor=base.reset_anchor if base.reset_period else addon.reset_anchor,
    )


def subscription_allowance(
    plan: Allowance | None, addons: Iterable[AddonGrant], override: Allowance | None = None
) -> Allowance | None:
    """One subscription's allowance for one feature (rule 1 above)."""
    if override is not None:
        return override
    grants = [g for g in addons if g.quantity > 0]
    overrides = [g.allowance for g in grants if g.behavior == "Override"]
    base = most_generous(overrides) if overrides else plan
    for grant in grants:
        if grant.behavior == "Increment":
            base = increment(base if base is not None else Allowance(), grant.allowance, grant.quantity)
    return base


@dataclass(frozen=True)
class Decision:
    is_granted: bool
    reason: DeniedReason | None = None


def decide(
    feature_type: str,
    meter_type: str,
    allowance: Allowance | None,
    *,
    current_usage: Decimal = Decimal(0),
    requested_usage: Decimal | None = None,
    requested_values: Iterable[str] | None = None,
) -> Decision:
    """May the customer use the feature (this much / these values)? See the module docstring."""
    if allowance is None:
        return Decision(False, DeniedReason.NO_FEATURE_ENTITLEMENT)
    if feature_type == "BOOLEAN":
        return Decision(True)
    if feature_type == "ENUM":
        wanted = set(requested_values or ())
        if wanted - set(allowance.enum_values or ()):
            return Decision(False, DeniedReason.VALUES_MISMATCH)
        return Decision(True)
    if allowance.has_unlimited or allowance.usage_limit is None:
        return Decision(True)
    limit = allowance.usage_limit
    if meter_type == "None":
        ok = requested_usage is None or requested_usage <= limit
        return Decision(True) if ok else Decision(False, DeniedReason.USAGE_EXCEEDING_LIMIT)
    if allowance.has_soft_limit:
        return Decision(True)
    ok = current_usage < limit if requested_usage is None else current_usage + requested_usage <= limit
    return Decision(True) if ok else Decision(False, DeniedReason.USAGE_EXCEEDING_LIMIT)
