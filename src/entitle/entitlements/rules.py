"""The entitlement check: pure functions, no I/O. The allowance it checks against is folded by
`entitle.catalog.packages.allowance`.

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
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from entitle.catalog.packages.allowance import Allowance


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
    INSUFFICIENT_CREDITS = "InsufficientCredits"


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
