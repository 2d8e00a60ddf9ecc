"""Credit-priced features: a feature whose price on the customer's plan (or an add-on it bought) is
CREDIT_BASED with a `creditRate` costs `rate` credits of the rate's currency per unit of usage.

`charge` is the usage domain's `charge_credits` port: reported usage and metered events draw the credits
in the transaction that counts them, in Stigg's order, never refused (what no grant covers is overdrawn).
Conversions round half-even at the documented precision (`rules.credits_for`). A usage that lowers a
counter (a SET below the current value) draws nothing and returns nothing. `estimate` answers what a
usage would cost without writing anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from entitle.catalog.packages.models import PackageCharge
from entitle.clock import utcnow
from entitle.credits import engine, rules, store
from entitle.customers.models import Customer
from entitle.db.rows import PreparedSelect
from entitle.grants.engine import live_subscriptions, resource_key
from entitle.subscriptions import price_rules
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.preview import charges_for_country
from entitle.usage.ports import CreditCharge

_PRICED = "entitle.credits.priced_features"


@dataclass(frozen=True)
class Rate:
    currency_ref: str
    per_unit: Decimal


def priced_features(s: Session, env_id: int) -> set[str]:
    """The features the environment prices in credits anywhere (once per transaction): most usage is of
    features that are not, and answers at one query."""
    cache: dict[int, set[str]] = s.info.setdefault(_PRICED, {})
    if env_id not in cache:
        if s.autoflush and (s.new or s.dirty or s.deleted):
            s.flush()  # as the ORM's execution would first: what this transaction changed is read
        cache[env_id] = {row[0] for row in _PRICED_FEATURES.all(s.connection(), {"env": env_id})}
    return cache[env_id]


# Asked by every ingestion batch: sent prepared (`PreparedSelect`; through the ORM's execution, its
# statement handling cost more CPU than the query on SQLite).
_PRICED_FEATURES = PreparedSelect(
    select(PackageCharge.feature_ref)
    .where(
        PackageCharge.environment_id == bindparam("env"),
        PackageCharge.billing_model == "CREDIT_BASED",
        PackageCharge.feature_ref.is_not(None),
        PackageCharge.credit_rate_amount.is_not(None),
    )
    .distinct()
)


def rates(s: Session, env_id: int, customer: Customer, resource_ref: str | None, feature_ref: str) -> list[Rate]:
    """The credit rates of `feature_ref` for the customer's live subscriptions (one per currency: the
    first subscription's price wins), each the price for the subscription's billing period (and country,
    when it has one), or the subscription's own rate when its `priceOverrides` set one (a sales-led deal)."""
    return rates_of(s, env_id, customer, resource_ref, [feature_ref]).get(feature_ref, [])


def rates_of(
    s: Session, env_id: int, customer: Customer, resource_ref: str | None, feature_refs: Iterable[str]
) -> dict[str, list[Rate]]:
    """`rates` of several features (those priced in credits only), read at a fixed number of queries
    however many live subscriptions and add-ons the customer has: usage is charged on the hot path."""
    wanted = [ref for ref in dict.fromkeys(feature_refs) if ref in priced_features(s, env_id)]
    if not wanted:
        return {}
    subs = live_subscriptions(s, customer, resource_ref)
    if not subs:
        return {}
    bought = subscriptions.addons_of(s, [sub.pk for sub in subs])
    packages_of = {sub.pk: {sub.plan_pk, *(a.addon_pk for a in bought.get(sub.pk, []))} for sub in subs}
    by_package: dict[int, list[PackageCharge]] = defaultdict(list)
    for charge in s.scalars(
        select(PackageCharge).where(
            PackageCharge.package_pk.in_(set().union(*packages_of.values())),
            PackageCharge.billing_model == "CREDIT_BASED",
            PackageCharge.feature_ref.in_(wanted),
            PackageCharge.credit_rate_amount.is_not(None),
            PackageCharge.is_overage.is_(False),
        )
    ):
        by_package[charge.package_pk].append(charge)
    found: dict[str, dict[str, Rate]] = {ref: {} for ref in wanted}
    for sub in subs:
        deals = price_rules.credit_rates(sub.price_overrides)
        # In catalog order, as the subscription's own charges were always read (the first price of a
        # currency wins).
        charges = sorted((c for pk in packages_of[sub.pk] for c in by_package[pk]), key=lambda c: c.pk)
        for charge in charges_paid(charges, sub.billing_period, sub.billing_country_code):
            feature_ref, currency_ref, per_unit = (
                charge.feature_ref,
                charge.credit_rate_currency_ref,
                charge.credit_rate_amount,
            )
            if feature_ref is None or currency_ref is None or per_unit is None:
                continue
            deal = deals.get(feature_ref)
            if deal is not None and deal[0] == currency_ref:
                per_unit = deal[1]
            found[feature_ref].setdefault(currency_ref, Rate(currency_ref, per_unit))
    return {ref: list(by_currency.values()) for ref, by_currency in found.items() if by_currency}


def charges_paid(charges: Sequence[PackageCharge], period: str | None, country: str | None) -> list[PackageCharge]:
    """The charges a subscription of this billing period (any, when it has none) and country pays, by the
    one country rule every reader of prices follows (`subscriptions.preview.charges_for_country`)."""
    return charges_for_country([c for c in charges if period is None or c.billing_period == period], country)


def charge(
    s: Session,
    env_id: int,
    customer: Customer,
    feature_ref: str,
    resource_ref: str | None,
    delta: Decimal,
    at: datetime,
    event_id: str,
) -> CreditCharge | None:
    """Draw what `delta` units of the feature cost, in each currency it is priced in; the answer is the
    first currency's (the usage report's credit block)."""
    found = rates(s, env_id, customer, resource_ref, feature_ref)
    if not found:
        return None
    answer: CreditCharge | None = None
    for rate in found:
        currency = store.find_currency(s, env_id, rate.currency_ref)
        if currency is None:
            continue  # the catalog keeps currency ids as given: a price in an unknown currency draws nothing
        cost = rules.credits_for(delta, rate.per_unit) if delta > 0 else rules.ZERO
        wallet = store.locked_wallet(s, env_id, customer.pk, currency.pk, resource_key(resource_ref))
        now = utcnow()  # after the lock (`store.locked_wallet`)
        grants = engine.catch_up(s, wallet, now)
        if cost > 0:
            engine.consume(s, wallet, grants, cost, at, event_id=event_id, feature_ref=feature_ref)
        balance = engine.balance(grants, {}, now)
        if answer is None:
            answer = CreditCharge(
                currency_ref=currency.ref_id,
                consumed=cost,
                current_usage=balance.current_usage,
                usage_limit=balance.usage_limit,
                timestamp=balance.updated_at or now,
                period_end=balance.period_end,
            )
    return answer
