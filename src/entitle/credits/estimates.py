"""What a usage report or an event would cost in credits (`POST /api/v1/usage/estimate`, `/events/estimate`),
writing nothing: the same credit rates (`pricing.rates`), the same half-even rounding, and the balance a
check would read now.

- A usage with updateBehavior SET costs what it would add to the current usage window's counter (a
  lower value costs nothing, as reporting it would draw nothing).
- An event costs, for each metered feature whose meter it matches and that is priced in credits, what it
  adds to the meter times the rate: SUM adds its number, COUNT adds 1. MAX, MIN, AVG and UNIQUE do not say
  what one event adds: their cost is 0 with the breakdown's `warningCode` UNSUPPORTED_AGGREGATION.
- Warnings: FEATURE_NOT_FOUND (unknown or archived feature; no event matched a meter), FEATURE_NOT_CREDIT_BASED
  (the feature is not priced in credits for this customer), RESOURCE_SCOPED_SUBSCRIPTION_EXISTS (no
  `resourceId` was given, yet the customer has a live subscription for a resource: that resource's prices
  were not looked at).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.clock import utcnow
from entitle.credits import pricing, rules, store
from entitle.credits.reservations import read_balance
from entitle.credits.schemas import Estimate, EstimateBreakdown, EstimateResult, EventEstimateIn, UsageEstimateIn
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.errors import NotFound
from entitle.grants.engine import customer_grants, resource_key, usage_window
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.rules import LIVE
from entitle.usage import store as usage
from entitle.usage.meters import measure

UNSUPPORTED_AGGREGATION = "UNSUPPORTED_AGGREGATION"


def estimate_usage(db: Database, env_id: int, req: UsageEstimateIn) -> EstimateResult:
    now = utcnow()
    with db.read() as s:
        customer = _customer(s, env_id, req.customer_id)
        warnings = _resource_warning(s, customer, req.resource_id)
        feature = features.find(s, env_id, req.feature_id)
        if feature is None or feature.archived_at is not None:
            return EstimateResult(estimates=[], warnings=[*warnings, "FEATURE_NOT_FOUND"])
        units = Decimal(req.value)
        if req.update_behavior == "SET":
            units = max(rules.ZERO, units - _current_usage(s, env_id, customer, feature, req.resource_id, now))
        costs: dict[str, list[EstimateBreakdown]] = defaultdict(list)
        found = pricing.rates(s, env_id, customer, req.resource_id, feature.ref_id)
        for rate in found:
            cost = rules.credits_for(units, rate.per_unit) if units > 0 else rules.ZERO
            costs[rate.currency_ref].append(EstimateBreakdown(feature_id=feature.ref_id, cost=cost))
        if not found:
            warnings.append("FEATURE_NOT_CREDIT_BASED")
        return EstimateResult(estimates=_estimates(s, env_id, customer, req.resource_id, costs, now), warnings=warnings)


def estimate_event(db: Database, env_id: int, req: EventEstimateIn) -> EstimateResult:
    now = utcnow()
    dimensions = req.dimensions or {}
    with db.read() as s:
        customer = _customer(s, env_id, req.customer_id)
        warnings = _resource_warning(s, customer, req.resource_id)
        costs: dict[str, list[EstimateBreakdown]] = defaultdict(list)
        added_by: dict[str, tuple[str, Decimal | str]] = {}
        for feature in sorted(features.metered_with_meter(s, env_id), key=lambda f: f.ref_id):
            assert feature.meter is not None
            added = measure(feature.meter, req.event_name, dimensions)
            if added is not None:
                added_by[feature.ref_id] = (feature.meter["aggregation"]["function"], added)
        matched = bool(added_by)
        found = pricing.rates_of(s, env_id, customer, req.resource_id, added_by)
        for feature_ref, (function, added) in added_by.items():
            for rate in found.get(feature_ref, []):
                if function in ("SUM", "COUNT") and isinstance(added, Decimal):
                    cost = rules.credits_for(added, rate.per_unit) if added > 0 else rules.ZERO
                    costs[rate.currency_ref].append(EstimateBreakdown(feature_id=feature_ref, cost=cost))
                else:
                    costs[rate.currency_ref].append(
                        EstimateBreakdown(feature_id=feature_ref, cost=rules.ZERO, warning_code=UNSUPPORTED_AGGREGATION)
                    )
        if not matched:
            warnings.append("FEATURE_NOT_FOUND")
        elif not costs:
            warnings.append("FEATURE_NOT_CREDIT_BASED")
        return EstimateResult(estimates=_estimates(s, env_id, customer, req.resource_id, costs, now), warnings=warnings)


def _customer(s: Session, env_id: int, ref: str) -> Customer:
    customer = customers.find(s, env_id, ref)
    if customer is None or customer.archived_at is not None:
        raise NotFound("customer", ref)
    return customer


def _resource_warning(s: Session, customer: Customer, resource_ref: str | None) -> list[str]:
    if resource_ref is not None:
        return []
    live = subscriptions.of_customer(s, customer.pk, [st.value for st in LIVE])
    return ["RESOURCE_SCOPED_SUBSCRIPTION_EXISTS"] if any(sub.resource_ref for sub in live) else []


def _current_usage(
    s: Session, env_id: int, customer: Customer, feature: Feature, resource_ref: str | None, now: datetime
) -> Decimal:
    grant = customer_grants(s, env_id, customer, resource_ref, now)[0].get(feature.ref_id)
    window = usage_window(feature, grant.allowance if grant else None, grant.usage_anchor if grant else None, now)
    key = (feature.ref_id, resource_key(resource_ref), window.start)
    return usage.counter_values(s, customer.pk, [key]).get(key, rules.ZERO)


def _estimates(
    s: Session,
    env_id: int,
    customer: Customer,
    resource_ref: str | None,
    costs: dict[str, list[EstimateBreakdown]],
    now: datetime,
) -> list[Estimate]:
    found: list[Estimate] = []
    for currency_ref, breakdown in costs.items():
        currency = store.find_currency(s, env_id, currency_ref)
        if currency is None:
            continue  # a price in a currency that does not exist draws nothing (see pricing.charge)
        wallet = store.find_wallet(s, customer.pk, currency.pk, resource_key(resource_ref))
        balance = read_balance(s, wallet, now).available
        cost = sum((b.cost for b in breakdown), rules.ZERO)
        found.append(
            Estimate(
                currency_id=currency.ref_id,
                current_balance=balance,
                estimated_cost=cost,
                balance_after_estimate=balance - cost,
                would_overdraft=balance - cost < 0,
                breakdown=breakdown,
            )
        )
    return found
