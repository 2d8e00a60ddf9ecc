"""Entitlement checks and lists: "may customer C use feature F, and how much is left?"

A denial is an answer, not an error: every outcome is an `EntitlementResult` (HTTP 200).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.clock import utcnow
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.entitlements.rules import DeniedReason, decide
from entitle.entitlements.schemas import CustomerEntitlements, EntitlementResult, FeatureRef
from entitle.grants.engine import Grant, customer_grants, resource_key, usage_window
from entitle.usage import store as usage


def _feature_ref(f: Feature) -> FeatureRef:
    return FeatureRef(
        id=f.ref_id,
        display_name=f.display_name,
        feature_status=f.feature_status,
        feature_type=f.feature_type,
        feature_units=f.feature_units,
        feature_units_plural=f.feature_units_plural,
    )


def _denied(reason: DeniedReason, feature: Feature | None = None) -> EntitlementResult:
    return EntitlementResult(
        is_granted=False, access_denied_reason=reason.value, feature=_feature_ref(feature) if feature else None
    )


def evaluate(
    s: Session,
    customer: Customer,
    grant: Grant,
    resource_ref: str | None,
    now: datetime,
    *,
    requested_usage: Decimal | None = None,
    requested_values: Iterable[str] | None = None,
) -> EntitlementResult:
    """One feature's result, reading its current usage in the window that contains `now`."""
    feature, allowance = grant.feature, grant.allowance
    window = usage_window(feature, allowance, grant.usage_anchor, now)
    current: Decimal | None = None
    if feature.meter_type != "None":
        key = (feature.ref_id, resource_key(resource_ref), window.start)
        current = usage.counter_values(s, customer.pk, [key]).get(key, Decimal(0))
    decision = decide(
        feature.feature_type,
        feature.meter_type,
        allowance,
        current_usage=current or Decimal(0),
        requested_usage=requested_usage,
        requested_values=requested_values,
    )
    return EntitlementResult(
        is_granted=decision.is_granted,
        access_denied_reason=decision.reason.value if decision.reason else None,
        current_usage=current,
        usage_limit=allowance.usage_limit,
        has_unlimited_usage=allowance.has_unlimited,
        has_soft_limit=allowance.has_soft_limit,
        enum_values=sorted(allowance.enum_values) if allowance.enum_values is not None else None,
        requested_usage=requested_usage,
        requested_values=list(requested_values) if requested_values is not None else None,
        reset_period=allowance.reset_period if window.end is not None else None,
        usage_period_anchor=window.anchor,
        usage_period_start=window.start if window.end is not None else None,
        usage_period_end=window.end,
        valid_until=allowance.valid_until,
        entitlement_updated_at=grant.updated_at,
        feature=_feature_ref(feature),
    )


def check_entitlement(
    db: Database,
    env_id: int,
    customer_ref: str,
    feature_ref: str,
    *,
    requested_usage: Decimal | None = None,
    requested_values: list[str] | None = None,
    resource_ref: str | None = None,
) -> EntitlementResult:
    now = utcnow()
    with db.read() as s:
        customer = customers.find(s, env_id, customer_ref)
        if customer is None:
            return _denied(DeniedReason.CUSTOMER_NOT_FOUND)
        if customer.archived_at is not None:
            return _denied(DeniedReason.CUSTOMER_IS_ARCHIVED)
        feature = features.find(s, env_id, feature_ref)
        if feature is None or feature.archived_at is not None:
            return _denied(DeniedReason.FEATURE_NOT_FOUND)
        grants, has_subscription = customer_grants(s, env_id, customer, resource_ref, now)
        grant = grants.get(feature_ref)
        if grant is None:
            reason = (
                DeniedReason.NO_FEATURE_ENTITLEMENT
                if has_subscription or grants
                else (DeniedReason.NO_ACTIVE_SUBSCRIPTION)
            )
            return _denied(reason, feature)
        return evaluate(
            s, customer, grant, resource_ref, now, requested_usage=requested_usage, requested_values=requested_values
        )


def list_entitlements(db: Database, env_id: int, customer_ref: str, resource_ref: str | None) -> CustomerEntitlements:
    now = utcnow()
    with db.read() as s:
        customer = customers.find(s, env_id, customer_ref)
        if customer is None:
            return CustomerEntitlements(entitlements=[], access_denied_reason=DeniedReason.CUSTOMER_NOT_FOUND.value)
        if customer.archived_at is not None:
            return CustomerEntitlements(entitlements=[], access_denied_reason=DeniedReason.CUSTOMER_IS_ARCHIVED.value)
        grants, has_subscription = customer_grants(s, env_id, customer, resource_ref, now)
        results = [evaluate(s, customer, grants[ref], resource_ref, now) for ref in sorted(grants)]
        reason = None if has_subscription or grants else DeniedReason.NO_ACTIVE_SUBSCRIPTION.value
        return CustomerEntitlements(entitlements=results, access_denied_reason=reason)


def results_in_session(
    s: Session, env_id: int, customer: Customer, resource_ref: str | None
) -> list[EntitlementResult]:
    """The customer's entitlements as seen inside an open transaction (provisioning responses)."""
    now = utcnow()
    grants, _ = customer_grants(s, env_id, customer, resource_ref, now)
    return [evaluate(s, customer, grants[ref], resource_ref, now) for ref in sorted(grants)]
