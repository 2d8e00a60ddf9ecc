"""What the entitlements domain needs of credits to answer from its snapshot, read in one go and answered
by pure functions:

- checks of credit-priced features (`GET .../entitlements/check?featureId=F` where F is priced in credits):
  the feature's own entitlement decides first, then the balance must pay for the requested usage at the
  feature's credit rate (`InsufficientCredits` when it does not);
- the currency check (`?currencyId=C` without a reservation) and the list's CREDIT entitlements: a
  wallet's balance (`credit_answer`, the very function the database-backed check answers with).

The rates change only with the customer's subscriptions, as do the soft limits; a wallet's state with a
movement (announced) or at `WalletState.changes_at`; a currency's fields with its edit (announced).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.credits import engine, recurring, rules, store
from entitle.credits.models import CustomCurrency, Wallet
from entitle.credits.pricing import rates_of
from entitle.credits.schemas import CheckCurrency, CheckReservation, CreditCheckResult
from entitle.customers.models import Customer
from entitle.grants.engine import resource_key

INSUFFICIENT = "InsufficientCredits"


@dataclass(frozen=True)
class FeatureRate:
    """What one unit of a feature costs in one currency, and whether a check may go beyond the balance
    (the customer's CREDIT entitlement to the currency has a soft limit)."""

    currency_ref: str
    per_unit: Decimal
    soft_limit: bool


@dataclass(frozen=True)
class WalletState:
    """A wallet's balance as read at an instant, and the first later instant at which time alone changes
    it (a grant starting or ending, a hold lapsing; None: none is due)."""

    balance: engine.Balance
    changes_at: datetime | None
    # The currency check's answer less its decision (`credit_answer_json`), written at the first check of
    # the held state, with the currency it shows.
    answer_json: tuple[CurrencyView, bytes] | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def available(self) -> Decimal:
        return self.balance.available


@dataclass(frozen=True)
class CurrencyView:
    """The currency's fields a CREDIT answer carries (a plain copy: no session behind it)."""

    currency_id: str
    display_name: str
    description: str | None
    metadata: Mapping[str, str]
    unit_singular: str | None
    unit_plural: str | None
    created_at: datetime


@dataclass(frozen=True)
class Standing:
    """A customer's credits for one resource as read at an instant: every wallet that has had a grant
    (a currency absent has nothing: a zero balance), with its currency, and the currencies whose CREDIT
    entitlement has a soft limit. It holds until a movement is announced or `changes_at`."""

    wallets: Mapping[str, WalletState]
    currencies: Mapping[str, CurrencyView]
    soft: frozenset[str] = frozenset()
    # The first of the wallets' `changes_at`, found once: every warm read of the held credits asks it.
    changes_at: datetime | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        instants = [w.changes_at for w in self.wallets.values() if w.changes_at is not None]
        object.__setattr__(self, "changes_at", min(instants) if instants else None)

    def get(self, currency_ref: str) -> WalletState | None:
        return self.wallets.get(currency_ref)


NO_CREDITS = Standing({}, {})

_NO_BALANCE = engine.Balance(rules.ZERO, rules.ZERO, rules.ZERO, rules.ZERO, None)


def currency_view(c: CustomCurrency) -> CurrencyView:
    return CurrencyView(
        currency_id=c.ref_id,
        display_name=c.display_name,
        description=c.description,
        metadata=dict(c.metadata_ or {}),
        unit_singular=c.unit_singular,
        unit_plural=c.unit_plural,
        created_at=c.created_at,
    )


def feature_rates(
    s: Session,
    env_id: int,
    customer: Customer,
    resource_ref: str | None,
    feature_refs: Iterable[str],
    soft: frozenset[str] | None = None,
) -> dict[str, tuple[FeatureRate, ...]]:
    """The credit rates of those of `feature_refs` the customer's subscriptions price in credits, in
    currencies that exist (a price in an unknown currency draws nothing, so it refuses nothing). `soft`:
    the customer's soft-limited currencies when the caller has read them in this transaction (`standing`
    does); otherwise they are read here, once, and only when a feature is priced in a currency that exists."""
    found: dict[str, tuple[FeatureRate, ...]] = {}
    exists: dict[str, bool] = {}
    for feature_ref, its_rates in rates_of(s, env_id, customer, resource_ref, feature_refs).items():
        priced: list[FeatureRate] = []
        for rate in its_rates:
            ref = rate.currency_ref
            if ref not in exists:
                exists[ref] = store.find_currency(s, env_id, ref) is not None
            if not exists[ref]:
                continue
            if soft is None:
                soft = _soft_limits(s, env_id, customer, resource_ref)
            priced.append(FeatureRate(ref, rate.per_unit, ref in soft))
        if priced:
            found[feature_ref] = tuple(priced)
    return found


def _state(s: Session, wallet: Wallet, now: datetime) -> WalletState:
    grants = store.open_grants(s, wallet.pk)
    holds = store.active_reservations(s, wallet.pk)
    balance = engine.balance(grants, engine.lapsed_holds(holds, now), now)
    instants = [g.effective_at for g in grants] + [g.expire_at for g in grants] + [r.expires_at for r in holds]
    later = [i for i in instants if i is not None and i > now]
    return WalletState(balance, min(later) if later else None)


def standing(s: Session, env_id: int, customer: Customer, resource_ref: str | None, now: datetime) -> Standing:
    """The customer's credits for the resource at `now` (a read: the stored statuses may lag behind time,
        the balance does not); in an environment without currencies, one query; the soft limits are resolved
    only when a soft-limited CREDIT entitlement could apply (`store.may_have_soft_limits`). Its `soft` is what
        `feature_rates` needs of the same transaction: a caller reading both hands it on (an empty `soft` of
        an environment without currencies too: there no rate counts)."""
    any_currency, may_be_soft = store.currencies_and_soft_limits(s, env_id, customer.pk)
    if not any_currency:
        return NO_CREDITS
    wallets: dict[str, WalletState] = {}
    currencies: dict[str, CurrencyView] = {}
    for wallet, currency in store.granted_wallets(s, customer.pk, resource_key(resource_ref)):
        wallets[currency.ref_id] = _state(s, wallet, now)
        currencies[currency.ref_id] = currency_view(currency)
    soft = recurring.soft_limited_currencies(s, env_id, customer, resource_ref) if may_be_soft else frozenset()
    return Standing(wallets, currencies, soft)


def _soft_limits(s: Session, env_id: int, customer: Customer, resource_ref: str | None) -> frozenset[str]:
    if not store.may_have_soft_limits(s, env_id, customer.pk):
        return frozenset()
    return recurring.soft_limited_currencies(s, env_id, customer, resource_ref)


def credit_answer(
    currency: CurrencyView,
    state: WalletState | None,
    *,
    soft_limit: bool,
    requested_usage: Decimal | None = None,
    reason: str | None = None,
) -> CreditCheckResult:
    """The currency check's answer for a wallet's balance (None: no wallet). With `reason`, a denial that
    is not the balance's (`CustomerNotFound`, `CustomerIsArchived`): a zero balance. Otherwise granted when
    the balance covers `requested_usage` (without it: is positive), or beyond it under a soft limit."""
    if reason is not None:
        return credit_result(currency, _NO_BALANCE, granted=False, reason=reason)
    balance = _NO_BALANCE if state is None else state.balance
    granted = _granted(balance.available, soft_limit, requested_usage)
    return credit_result(currency, balance, granted=granted, reason=INSUFFICIENT)


def _granted(available: Decimal, soft_limit: bool, requested_usage: Decimal | None) -> bool:
    return soft_limit or (available >= requested_usage if requested_usage is not None else available > 0)


_HEAD = b'{"type":"CREDIT","isGranted":'
_GRANTED_HEAD = _HEAD + b'true,"accessDeniedReason":null'
_DENIED_HEAD = _HEAD + b'false,"accessDeniedReason":"' + INSUFFICIENT.encode() + b'"'


def credit_answer_json(
    currency: CurrencyView, state: WalletState | None, *, soft_limit: bool, requested_usage: Decimal | None = None
) -> bytes:
    """`credit_answer(...)` in its wire form (camelCase, nulls kept), byte for byte. Only the decision
    depends on the requested usage: the rest (the currency, the balance) is serialized once per held
    wallet state, not built and serialized again at every check of it."""
    if state is None:
        answer = credit_answer(currency, None, soft_limit=soft_limit, requested_usage=requested_usage)
        return answer.__pydantic_serializer__.to_json(answer, by_alias=True)
    granted = _granted(state.balance.available, soft_limit, requested_usage)
    return (_GRANTED_HEAD if granted else _DENIED_HEAD) + _answer_rest(currency, state)


def _answer_rest(currency: CurrencyView, state: WalletState) -> bytes:
    kept = state.answer_json
    if kept is not None and kept[0] is currency:
        return kept[1]
    denied = credit_result(currency, state.balance, granted=False, reason=INSUFFICIENT)
    written = denied.__pydantic_serializer__.to_json(denied, by_alias=True)
    assert written.startswith(_DENIED_HEAD + b',"currency":')
    rest = written[len(_DENIED_HEAD) :]
    # A race between two first checks writes the same bytes twice.
    object.__setattr__(state, "answer_json", (currency, rest))
    return rest


def credit_result(
    currency: CurrencyView,
    balance: engine.Balance,
    *,
    granted: bool,
    reason: str | None = None,
    reservation: CheckReservation | None = None,
) -> CreditCheckResult:
    """The CREDIT result: the balance, and the decision made on it (`reason` when denied)."""
    return CreditCheckResult(
        is_granted=granted,
        access_denied_reason=None if granted else reason,
        currency=CheckCurrency(
            currency_id=currency.currency_id,
            display_name=currency.display_name,
            description=currency.description,
            metadata=dict(currency.metadata),
            unit_singular=currency.unit_singular,
            unit_plural=currency.unit_plural,
        ),
        current_usage=balance.current_usage,
        usage_limit=balance.usage_limit,
        # When the balance last moved, not when it was read: a read twice answers the same.
        usage_updated_at=balance.updated_at or currency.created_at,
        valid_until=balance.valid_until,
        usage_period_end=balance.period_end,
        reserved=balance.reserved,
        reserved_on_expired_grants=balance.reserved_on_expired_grants,
        reservation=reservation,
    )


def covers(rate: FeatureRate, state: WalletState | None, requested_usage: Decimal | None) -> bool:
    """Whether the balance pays for the requested usage at the rate (half-even, as usage draws it), or,
    with no requested usage, is positive; a soft limit always passes (usage is never refused anyway)."""
    if rate.soft_limit:
        return True
    available = state.available if state is not None else rules.ZERO
    if requested_usage is None:
        return available > 0
    return available >= rules.credits_for(requested_usage, rate.per_unit)
