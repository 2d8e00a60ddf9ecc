"""Checks of credit-priced features (`GET .../entitlements/check?featureId=F` where F is priced in credits):
the feature's own entitlement decides first, then the balance must pay for the requested usage at the
feature's credit rate (`InsufficientCredits` when it does not). The entitlements domain asks these in
the read that loads a customer, and keeps the answers in its snapshot: the rates change only with the
customer's subscriptions, a wallet's state with a movement (announced) or at `WalletState.changes_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.credits import engine, recurring, rules, store
from entitle.credits.pricing import priced_features, rates
from entitle.customers.models import Customer
from entitle.grants.engine import resource_key


@dataclass(frozen=True)
class FeatureRate:
    """What one unit of a feature costs in one currency, and whether a check may go beyond the balance
    (the customer's CREDIT entitlement to the currency has a soft limit)."""

    currency_ref: str
    per_unit: Decimal
    soft_limit: bool


@dataclass(frozen=True)
class WalletState:
    """A wallet's available balance as read at an instant, and the first later instant at which time
    alone changes it (a grant starting or ending, a hold lapsing; None: none is due)."""

    available: Decimal
    changes_at: datetime | None


def feature_rates(
    s: Session, env_id: int, customer: Customer, resource_ref: str | None, feature_refs: Iterable[str]
) -> dict[str, tuple[FeatureRate, ...]]:
    """The credit rates of those of `feature_refs` the customer's subscriptions price in credits, in
    currencies that exist (a price in an unknown currency draws nothing, so it refuses nothing)."""
    wanted = [ref for ref in feature_refs if ref in priced_features(s, env_id)]
    found: dict[str, tuple[FeatureRate, ...]] = {}
    soft: dict[str, bool] = {}
    for feature_ref in wanted:
        priced: list[FeatureRate] = []
        for rate in rates(s, env_id, customer, resource_ref, feature_ref):
            if store.find_currency(s, env_id, rate.currency_ref) is None:
                continue
            if rate.currency_ref not in soft:
                soft[rate.currency_ref] = recurring.soft_limited(s, env_id, customer, resource_ref, rate.currency_ref)
            priced.append(FeatureRate(rate.currency_ref, rate.per_unit, soft[rate.currency_ref]))
        if priced:
            found[feature_ref] = tuple(priced)
    return found


def wallet_states(
    s: Session, env_id: int, customer_pk: int, resource_ref: str | None, currency_refs: Iterable[str], now: datetime
) -> dict[str, WalletState]:
    """The available balance of each of the customer's wallets in `currency_refs` at `now` (a read: the
    stored statuses may lag behind time, the balance does not), with when time next changes it."""
    found: dict[str, WalletState] = {}
    for currency_ref in sorted(set(currency_refs)):
        currency = store.find_currency(s, env_id, currency_ref)
        wallet = (
            None if currency is None else store.find_wallet(s, customer_pk, currency.pk, resource_key(resource_ref))
        )
        if wallet is None:
            found[currency_ref] = WalletState(rules.ZERO, None)
            continue
        grants = store.open_grants(s, wallet.pk)
        holds = store.active_reservations(s, wallet.pk)
        balance = engine.balance(grants, engine.lapsed_holds(holds, now), now)
        instants = [g.effective_at for g in grants] + [g.expire_at for g in grants] + [r.expires_at for r in holds]
        later = [i for i in instants if i is not None and i > now]
        found[currency_ref] = WalletState(balance.available, min(later) if later else None)
    return found


def covers(rate: FeatureRate, state: WalletState | None, requested_usage: Decimal | None) -> bool:
    """Whether the balance pays for the requested usage at the rate (half-even, as usage draws it), or,
    with no requested usage, is positive; a soft limit always passes (usage is never refused anyway)."""
    if rate.soft_limit:
        return True
    available = state.available if state is not None else rules.ZERO
    if requested_usage is None:
        return available > 0
    return available >= rules.credits_for(requested_usage, rate.per_unit)
