"""Check and list answers from a customer's resolved entitlements: pure functions, no I/O. The same
functions answer from the in-memory snapshot and from a fresh read, so both answer alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from pydantic_core import to_json as _value_json

from entitle.catalog.features.models import Feature
from entitle.credits.checks import CurrencyView, covers, credit_answer, credit_answer_json
from entitle.credits.schemas import CreditCheckResult
from entitle.entitlements.rules import DeniedReason, decide
from entitle.entitlements.schemas import CustomerEntitlements, EntitlementResult, FeatureRef
from entitle.entitlements.snapshot import Credits, CustomerView, FeatureView, GrantTerms, GrantView, Usage
from entitle.grants.engine import Grant, Resolution, usage_window


def feature_view(feature: Feature) -> FeatureView:
    return FeatureView(
        ref_id=feature.ref_id,
        display_name=feature.display_name,
        feature_status=feature.feature_status,
        feature_type=feature.feature_type,
        meter_type=feature.meter_type,
        feature_units=feature.feature_units,
        feature_units_plural=feature.feature_units_plural,
    )


def grant_view(grant: Grant, now: datetime) -> GrantView:
    window = usage_window(grant.feature, grant.allowance, grant.usage_anchor, now)
    return GrantView(feature_view(grant.feature), grant.allowance, window, grant.updated_at)


def is_metered(grant: GrantTerms | GrantView) -> bool:
    return grant.feature.meter_type != "None"


def valid_until(resolution: Resolution, grants: Iterable[GrantView], now: datetime) -> datetime | None:
    """The first instant after `now` at which the same rows may resolve to other grants or windows:
    a subscription or promotion starting, ending or leaving its trial, or a usage window resetting."""
    instants: list[datetime | None] = []
    for sub in resolution.subscriptions:
        instants += [sub.start_date, sub.trial_end_date, sub.end_date]
    for promo in resolution.promotions:
        instants += [promo.start_date, promo.end_date]
    for grant in grants:
        instants += [grant.allowance.valid_until, grant.window.end]
    later = [i for i in instants if i is not None and i > now]
    return min(later) if later else None


def _feature_ref(f: FeatureView) -> FeatureRef:
    return FeatureRef(
        id=f.ref_id,
        display_name=f.display_name,
        feature_status=f.feature_status,
        feature_type=f.feature_type,
        feature_units=f.feature_units,
        feature_units_plural=f.feature_units_plural,
    )


def denied(reason: DeniedReason, feature: FeatureView | None = None) -> EntitlementResult:
    return EntitlementResult(
        is_granted=False, access_denied_reason=reason.value, feature=_feature_ref(feature) if feature else None
    )


def granted(
    grant: GrantView,
    current: Decimal | None,
    *,
    requested_usage: Decimal | None = None,
    requested_values: Sequence[str] | None = None,
) -> EntitlementResult:
    """One granted feature's result; `current` is its usage in `grant.window` (None: not metered)."""
    feature, allowance, window = grant.feature, grant.allowance, grant.window
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


def current_of(grant: GrantTerms | GrantView, usage: Usage) -> Decimal | None:
    return usage.get(grant.feature.ref_id, Decimal(0)) if is_metered(grant) else None


def check(
    view: CustomerView,
    usage: Usage,
    credits: Credits | None,
    feature_ref: str,
    feature: FeatureView | None,
    *,
    requested_usage: Decimal | None = None,
    requested_values: Sequence[str] | None = None,
) -> EntitlementResult:
    """`feature` is the catalog's feature (None: unknown or archived); used when the customer lacks it.
    A granted feature priced in credits is denied `InsufficientCredits` when a currency it is priced in
    cannot pay for `requested_usage` (without one: when that balance is not positive)."""
    if view.archived:
        return denied(DeniedReason.CUSTOMER_IS_ARCHIVED)
    grant = view.grant(feature_ref)
    if grant is None:
        if feature is None:
            return denied(DeniedReason.FEATURE_NOT_FOUND)
        reason = (
            DeniedReason.NO_FEATURE_ENTITLEMENT
            if view.has_subscription or view.grants
            else DeniedReason.NO_ACTIVE_SUBSCRIPTION
        )
        return denied(reason, feature)
    result = granted(
        grant, current_of(grant, usage), requested_usage=requested_usage, requested_values=requested_values
    )
    # Most features are not priced in credits: one lookup in an empty mapping.
    if result.is_granted and view.credit_rates and not _paid(view, credits, feature_ref, requested_usage):
        return _unpaid(result)
    return result


def _paid(view: CustomerView, credits: Credits | None, feature_ref: str, requested_usage: Decimal | None) -> bool:
    """Whether every currency the feature is priced in pays for the usage (a feature not priced: True)."""
    rates = view.credit_rates.get(feature_ref, ())
    return not rates or (
        credits is not None and all(covers(r, credits.get(r.currency_ref), requested_usage) for r in rates)
    )


def _unpaid(result: EntitlementResult) -> EntitlementResult:
    reason = DeniedReason.INSUFFICIENT_CREDITS.value
    return result.model_copy(update={"is_granted": False, "access_denied_reason": reason})


def check_json(
    view: CustomerView,
    usage: Usage,
    credits: Credits | None,
    feature_ref: str,
    feature: FeatureView | None,
    *,
    requested_usage: Decimal | None = None,
    requested_values: Sequence[str] | None = None,
) -> bytes:
    """`to_json(check(...))`, byte for byte. A granted feature's answer differs from its listed one (kept
    as JSON in its view for the usage it was listed with) only in its decision and in what was requested:
    those are written into the kept bytes, not the whole result built and serialized again."""
    grant = view.grants.get(feature_ref)
    if grant is None or view.archived:
        return to_json(check(view, usage, credits, feature_ref, feature))
    current = current_of(grant, usage)
    decision = decide(
        grant.feature.feature_type,
        grant.feature.meter_type,
        grant.allowance,
        current_usage=current or Decimal(0),
        requested_usage=requested_usage,
        requested_values=requested_values,
    )
    reason = decision.reason
    if decision.is_granted and view.credit_rates and not _paid(view, credits, feature_ref, requested_usage):
        reason = DeniedReason.INSUFFICIENT_CREDITS
    middle, tail = _check_parts(_listed_json(view, feature_ref, current))
    return b"".join(
        (
            _GRANTED_HEAD if reason is None else _DENIED_HEAD,
            b"null" if reason is None else b'"' + reason.value.encode() + b'"',
            middle,
            _REQUESTED_USAGE,
            _reading_json(requested_usage),
            _REQUESTED_VALUES,
            b"null" if requested_values is None else _value_json(list(requested_values)),
            tail,
        )
    )


# The fields a check writes itself, in EntitlementResult's order: what precedes, follows and separates them
# in a listed result (`isGranted`, `accessDeniedReason` first; `requestedUsage`, `requestedValues` null).
# Each key is found where it first occurs: a key's quotes inside a JSON string would be escaped.
_HEAD = b'{"type":"FEATURE","isGranted":'
_GRANTED_HEAD = _HEAD + b'true,"accessDeniedReason":'
_DENIED_HEAD = _HEAD + b'false,"accessDeniedReason":'
_CURRENT_USAGE = b',"currentUsage":'
_REQUESTED_USAGE = b',"requestedUsage":'
_REQUESTED_VALUES = b',"requestedValues":'
_NOT_REQUESTED = _REQUESTED_USAGE + b"null" + _REQUESTED_VALUES + b"null"


def _check_parts(listed: bytes) -> tuple[bytes, bytes]:
    """A listed result's bytes from `currentUsage` up to `requestedUsage`, and from after `requestedValues`."""
    assert listed.startswith(_HEAD)
    start = listed.index(_CURRENT_USAGE, len(_HEAD))
    end = listed.index(_NOT_REQUESTED, start)
    return listed[start:end], listed[end + len(_NOT_REQUESTED) :]


def _reading_json(value: Decimal | None) -> bytes:
    """A `Reading` as EntitlementResult writes it: an integral amount as an integer, another as a float."""
    if value is None:
        return b"null"
    if value == value.to_integral_value():
        return str(int(value)).encode()
    return _value_json(float(value))


def currency_check(
    view: CustomerView, credits: Credits | None, currency: CurrencyView, requested_usage: Decimal | None
) -> CreditCheckResult:
    """The currency check (no reservation) of a customer held or just read: what `credits.check` answers."""
    if view.archived or credits is None:
        return credit_answer(currency, None, soft_limit=False, reason=DeniedReason.CUSTOMER_IS_ARCHIVED.value)
    ref = currency.currency_id
    return credit_answer(currency, credits.get(ref), soft_limit=ref in credits.soft, requested_usage=requested_usage)


def currency_check_json(
    view: CustomerView, credits: Credits | None, currency: CurrencyView, requested_usage: Decimal | None
) -> bytes:
    """`to_json(currency_check(...))`, byte for byte (`credits.checks.credit_answer_json`)."""
    if view.archived or credits is None:
        return to_json(currency_check(view, credits, currency, requested_usage))
    ref = currency.currency_id
    return credit_answer_json(
        currency, credits.get(ref), soft_limit=ref in credits.soft, requested_usage=requested_usage
    )


def _credit_entitlements(credits: Credits) -> list[CreditCheckResult]:
    return [
        credit_answer(credits.currencies[ref], state, soft_limit=ref in credits.soft)
        for ref, state in sorted(credits.wallets.items())
    ]


def _reason(view: CustomerView) -> str | None:
    return None if view.has_subscription or view.grants else DeniedReason.NO_ACTIVE_SUBSCRIPTION.value


def listing(view: CustomerView, usage: Usage, credits: Credits | None) -> CustomerEntitlements:
    """Each feature as its check without a requested usage answers it, then each CREDIT entitlement as the
    currency check answers it. `credits` may be None only for an archived customer."""
    if view.archived:
        return CustomerEntitlements(entitlements=[], access_denied_reason=DeniedReason.CUSTOMER_IS_ARCHIVED.value)
    assert credits is not None
    results: list[EntitlementResult | CreditCheckResult] = [
        check(view, usage, credits, ref, None) for ref in sorted(view.grants)
    ]
    results += _credit_entitlements(credits)
    return CustomerEntitlements(
        entitlements=results, access_denied_reason=_reason(view), credit_priced_features=sorted(view.credit_rates)
    )


CUSTOMER_NOT_FOUND_LIST = CustomerEntitlements(
    entitlements=[], access_denied_reason=DeniedReason.CUSTOMER_NOT_FOUND.value
)


def to_json(answer: CustomerEntitlements | EntitlementResult | CreditCheckResult) -> bytes:
    """The wire form (camelCase, nulls kept), as `response_model` would write it."""
    return answer.__pydantic_serializer__.to_json(answer, by_alias=True)


def _listed_json(view: CustomerView, feature_ref: str, current: Decimal | None) -> bytes:
    # Compared by value: equal Decimals ("5" and "5.0") are written alike (`Reading`).
    found = view.listed.get(feature_ref)
    if found is None or view.listed_usage[feature_ref] != current:
        grant = view.grant(feature_ref)
        assert grant is not None
        found = view.listed[feature_ref] = to_json(granted(grant, current))
        view.listed_usage[feature_ref] = current
    return found


_EMPTY_LIST_HEAD = b'{"entitlements":['


@lru_cache(maxsize=1024)
def _list_tail(reason: str | None, credit_priced: tuple[str, ...] = ()) -> bytes:
    """What follows the results: `to_json` of an empty list with this reason, less its head."""
    empty = to_json(
        CustomerEntitlements(entitlements=[], access_denied_reason=reason, credit_priced_features=list(credit_priced))
    )
    assert empty.startswith(_EMPTY_LIST_HEAD + b"]")
    return empty[len(_EMPTY_LIST_HEAD) :]


def _feature_json(view: CustomerView, usage: Usage, credits: Credits, ref: str) -> bytes:
    current = current_of(view.grants[ref], usage)
    if not _paid(view, credits, ref, None):
        grant = view.grant(ref)
        assert grant is not None
        result = granted(grant, current)
        if result.is_granted:
            return to_json(_unpaid(result))
    return _listed_json(view, ref, current)


def listing_json(view: CustomerView, usage: Usage, credits: Credits | None) -> bytes:
    """`to_json(listing(view, usage, credits))`, byte for byte, from each grant's result kept as JSON."""
    if view.archived:
        return _EMPTY_LIST_HEAD + _list_tail(DeniedReason.CUSTOMER_IS_ARCHIVED.value)
    assert credits is not None
    if view.credit_rates:
        parts = [_feature_json(view, usage, credits, ref) for ref in sorted(view.grants)]
    else:
        parts = [_listed_json(view, ref, current_of(terms, usage)) for ref, terms in sorted(view.grants.items())]
    if credits.wallets:
        parts += [to_json(result) for result in _credit_entitlements(credits)]
    reason = None if view.has_subscription or view.grants else DeniedReason.NO_ACTIVE_SUBSCRIPTION.value
    if view.credit_rates:
        return _EMPTY_LIST_HEAD + b",".join(parts) + _list_tail(reason, tuple(sorted(view.credit_rates)))
    return _EMPTY_LIST_HEAD + b",".join(parts) + _list_tail(reason)
