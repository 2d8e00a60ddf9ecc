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

Pure functions, no I/O. The catalog uses them to show what a plan with add-ons grants; the entitlement
engine (`entitle.grants`) to fold what a customer holds; the checks (`entitle.entitlements.rules`) decide on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal


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
