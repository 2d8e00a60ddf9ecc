"""Entitlement checks and lists: "may customer C use feature F, and how much is left?", and the currency
check ("what is C's balance of currency X?").

A denial is an answer, not an error: every outcome is an `EntitlementResult` (HTTP 200).

`check` and `list_json` answer from the process's `Snapshot` when it holds the customer (no database,
no thread); otherwise they read the customer once, in a worker thread, in a bounded number of queries
(the customer, its subscriptions with their packages, promotions, features, usage counters: never
one per feature or per package), keep it, and answer from it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.clock import utcnow
from entitle.credits import checks as credit_checks
from entitle.credits import rules as credit_rules
from entitle.credits import service as credits
from entitle.credits import store as credit_store
from entitle.credits.checks import CurrencyView
from entitle.credits.schemas import CreditCheckRequest, CreditCheckResult
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.entitlements import answers
from entitle.entitlements.answers import CUSTOMER_NOT_FOUND_LIST
from entitle.entitlements.rules import DeniedReason
from entitle.entitlements.schemas import CustomerEntitlements, EntitlementResult
from entitle.entitlements.snapshot import Credits, CustomerView, FeatureView, Snapshot, Usage, customer_view
from entitle.errors import InvalidArgument, NotFound
from entitle.grants.engine import customer_grants, resolve, resource_key
from entitle.usage import store as usage_store

_CUSTOMER_NOT_FOUND_JSON = answers.to_json(CUSTOMER_NOT_FOUND_LIST)
_FEATURE_CUSTOMER_NOT_FOUND_JSON = answers.to_json(answers.denied(DeniedReason.CUSTOMER_NOT_FOUND))


@dataclass(frozen=True)
class Held:
    """A customer's view with its usage, its credits when asked for or needed (None otherwise, and for an
    archived customer), and the catalog's view of one feature when asked for."""

    view: CustomerView
    usage: Usage
    credits: Credits | None
    feature: FeatureView | None = None


def _usage(s: Session, view: CustomerView, resource_ref: str | None) -> Usage:
    """Every metered grant's usage in its current window, in one query."""
    resource = resource_key(resource_ref)
    keys = [(ref, resource, view.window(ref).start) for ref, terms in view.grants.items() if answers.is_metered(terms)]
    if not keys:
        return {}
    found = usage_store.counter_values(s, view.customer_pk, keys)
    return {ref: found.get((ref, res, start), Decimal(0)) for ref, res, start in keys}


def _needs_credits(view: CustomerView, wanted: bool) -> bool:
    """A check of a feature not priced in credits needs no balance: its customer's held view answers it."""
    return not view.archived and (wanted or bool(view.credit_rates))


def _view(
    s: Session, env_id: int, customer: Customer, resource_ref: str | None, now: datetime, credits: Credits | None
) -> CustomerView:
    """`credits`: the customer's, read in this transaction (their soft limits are the rates'), or None."""
    if customer.archived_at is not None:
        return CustomerView(
            customer_pk=customer.pk, archived=True, has_subscription=False, grants={}, loaded_at=now, valid_until=None
        )
    resolution = resolve(s, env_id, customer, resource_ref, now)
    grants = {ref: answers.grant_view(g, now) for ref, g in resolution.grants.items()}
    return customer_view(
        customer.pk,
        has_subscription=bool(resolution.subscriptions),
        grants=grants,
        loaded_at=now,
        valid_until=answers.valid_until(resolution, grants.values(), now),
        credit_rates=credit_checks.feature_rates(
            s, env_id, customer, resource_ref, grants, credits.soft if credits is not None else None
        ),
    )


def _credits(s: Session, env_id: int, customer: Customer, resource_ref: str | None, now: datetime) -> Credits | None:
    """An archived customer's answers show no balance."""
    return None if customer.archived_at is not None else credit_checks.standing(s, env_id, customer, resource_ref, now)


def _load(
    db: Database,
    snapshot: Snapshot,
    env_id: int,
    customer_ref: str,
    resource_ref: str | None,
    feature_ref: str | None,
    now: datetime,
    want_credits: bool = False,
) -> Held | None:
    """Read what memory lacks (None: no such customer), in one read transaction, and keep it."""
    version = snapshot.version()
    held = snapshot.customer(env_id, customer_ref, resource_ref, now)
    credits = snapshot.credits(env_id, customer_ref, resource_ref, now)
    with db.read() as s:
        if held is not None:
            view = held[0]
            if held[1] is not None:
                usage = held[1]
            else:
                usage = _usage(s, view, resource_ref)
                snapshot.keep_usage(env_id, customer_ref, resource_ref, usage, version)
            if credits is None and _needs_credits(view, want_credits):
                customer = s.get(Customer, view.customer_pk)
                if customer is None:  # deleted since it was held (its deletion drops it here at commit)
                    return None
                credits = credit_checks.standing(s, env_id, customer, resource_ref, now)
                snapshot.keep_credits(env_id, customer_ref, resource_ref, credits, version)
        else:
            customer = customers.find(s, env_id, customer_ref)
            if customer is None:
                return None
            # Read with the view whatever was asked: the list and the currency check then find them held.
            # First: the view's credit rates take their soft limits from them.
            credits = _credits(s, env_id, customer, resource_ref, now)
            view = _view(s, env_id, customer, resource_ref, now, credits)
            usage = _usage(s, view, resource_ref)
            snapshot.keep_customer(env_id, customer_ref, resource_ref, view, usage, version, credits)
        feature: FeatureView | None = None
        if feature_ref is not None and feature_ref not in view.grants and not view.archived:
            known = snapshot.feature(env_id, feature_ref)
            if isinstance(known, FeatureView) or known is None:
                feature = known
            else:
                row = features.find(s, env_id, feature_ref)
                feature = answers.feature_view(row) if row is not None and row.archived_at is None else None
                snapshot.keep_feature(env_id, feature_ref, feature, version)
        return Held(view, usage, credits if _needs_credits(view, want_credits) else None, feature)


def _from_memory(
    snapshot: Snapshot,
    env_id: int,
    customer_ref: str,
    resource_ref: str | None,
    feature_ref: str | None,
    want_credits: bool,
    now: datetime,
) -> Held | None:
    credits: Credits | None = None
    if want_credits:
        both = snapshot.customer_with_credits(env_id, customer_ref, resource_ref, now)
        if both is None or both[1] is None or (both[2] is None and not both[0].archived):
            return None
        view, usage, credits = both[0], both[1], both[2]
    else:
        held = snapshot.customer(env_id, customer_ref, resource_ref, now)
        if held is None or held[1] is None:
            return None
        view, usage = held[0], held[1]
        if view.credit_rates:
            credits = snapshot.credits(env_id, customer_ref, resource_ref, now)
            if credits is None:
                return None
    if feature_ref is None or feature_ref in view.grants or view.archived:
        return Held(view, usage, credits)
    known = snapshot.feature(env_id, feature_ref)
    if isinstance(known, FeatureView) or known is None:
        return Held(view, usage, credits, known)
    return None


async def _hold(
    db: Database,
    snapshot: Snapshot,
    env_id: int,
    customer_ref: str,
    resource_ref: str | None,
    feature_ref: str | None,
    want_credits: bool = False,
) -> Held | None:
    now = utcnow()
    held = _from_memory(snapshot, env_id, customer_ref, resource_ref, feature_ref, want_credits, now)
    if held is not None:
        return held
    return await asyncio.to_thread(
        _load, db, snapshot, env_id, customer_ref, resource_ref, feature_ref, now, want_credits
    )


def _read_currency(db: Database, snapshot: Snapshot, env_id: int, currency_ref: str) -> CurrencyView | None:
    version = snapshot.version()
    with db.read() as s:
        row = credit_store.find_currency(s, env_id, currency_ref)
    found = credit_checks.currency_view(row) if row is not None else None
    snapshot.keep_currency(env_id, currency_ref, found, version)
    return found


async def check_currency(
    db: Database, snapshot: Snapshot, env_id: int, customer_ref: str, currency_ref: str, req: CreditCheckRequest
) -> bytes:
    """The CREDIT result of `GET .../entitlements/check?currencyId=` as JSON: with `reserveAmount` a write
    (a hold placed under the wallet's lock, `credits.check`); without, answered like a feature check, from
    the snapshot's held credits when it holds the customer."""
    if req.reserve_amount is not None:
        return answers.to_json(await asyncio.to_thread(credits.check, db, env_id, customer_ref, currency_ref, req))
    terms = {
        "reservationId": req.reservation_id,
        "reservationTtlSeconds": req.reservation_ttl_seconds,
        "reservationExpiresAt": req.reservation_expires_at,
        "reservationMetadata": req.reservation_metadata,
    }
    if sent := [name for name, value in terms.items() if value is not None]:
        raise InvalidArgument(f"{sent[0]}: a reservation's terms need reserveAmount")
    if req.requested_usage is not None and (problem := credit_rules.places_problem(req.requested_usage)):
        raise InvalidArgument(f"requestedUsage: {problem}")
    known = snapshot.currency(env_id, currency_ref)
    currency = (
        known
        if known is None or isinstance(known, CurrencyView)
        else await asyncio.to_thread(_read_currency, db, snapshot, env_id, currency_ref)
    )
    if currency is None:
        raise NotFound("custom currency", currency_ref)
    held = await _hold(db, snapshot, env_id, customer_ref, req.resource_id, None, want_credits=True)
    if held is None:
        return answers.to_json(
            credit_checks.credit_answer(currency, None, soft_limit=False, reason=DeniedReason.CUSTOMER_NOT_FOUND.value)
        )
    return answers.currency_check_json(held.view, held.credits, currency, req.requested_usage)


async def check_json(
    db: Database,
    snapshot: Snapshot,
    env_id: int,
    customer_ref: str,
    feature_ref: str,
    *,
    requested_usage: Decimal | None = None,
    requested_values: list[str] | None = None,
    resource_ref: str | None = None,
) -> bytes:
    """The feature's `EntitlementResult` as JSON (`answers.check_json`)."""
    held = await _hold(db, snapshot, env_id, customer_ref, resource_ref, feature_ref)
    if held is None:
        return _FEATURE_CUSTOMER_NOT_FOUND_JSON
    return answers.check_json(
        held.view,
        held.usage,
        held.credits,
        feature_ref,
        held.feature,
        requested_usage=requested_usage,
        requested_values=requested_values,
    )


async def list_json(
    db: Database, snapshot: Snapshot, env_id: int, customer_ref: str, resource_ref: str | None
) -> bytes:
    """The customer's `CustomerEntitlements` as JSON: each grant's result is kept serialized in its view,
    so a warm list writes only the results whose usage moved."""
    held = await _hold(db, snapshot, env_id, customer_ref, resource_ref, None, want_credits=True)
    if held is None:
        return _CUSTOMER_NOT_FOUND_JSON
    return answers.listing_json(held.view, held.usage, held.credits)


def list_entitlements(db: Database, env_id: int, customer_ref: str, resource_ref: str | None) -> CustomerEntitlements:
    """`list_json`'s answer read afresh from the database, bypassing the snapshot: for callers that are not on
    the hot path and run outside the event loop (the console)."""
    now = utcnow()
    with db.read() as s:
        customer = customers.find(s, env_id, customer_ref)
        if customer is None:
            return CUSTOMER_NOT_FOUND_LIST
        credits = _credits(s, env_id, customer, resource_ref, now)
        view = _view(s, env_id, customer, resource_ref, now, credits)
        usage = _usage(s, view, resource_ref)
        return answers.listing(view, usage, credits)


def results_in_session(
    s: Session, env_id: int, customer: Customer, resource_ref: str | None
) -> list[EntitlementResult | CreditCheckResult]:
    """The customer's entitlements as seen inside an open transaction (provisioning responses), as the
    list answers them: each feature as its check without a requested usage answers it, so a feature
    priced in credits is denied `InsufficientCredits` when a currency it is priced in has no positive
    balance, then each CREDIT entitlement (the credits a plan just granted among them) as the currency
    check answers it. In an environment without currencies the credits are one query."""
    now = utcnow()
    grants, _ = customer_grants(s, env_id, customer, resource_ref, now)
    views = {ref: answers.grant_view(g, now) for ref, g in grants.items()}
    credits = credit_checks.standing(s, env_id, customer, resource_ref, now)
    rates = credit_checks.feature_rates(s, env_id, customer, resource_ref, views, credits.soft)
    view = customer_view(
        customer.pk, has_subscription=True, grants=views, loaded_at=now, valid_until=None, credit_rates=rates
    )
    return answers.listing(view, _usage(s, view, resource_ref), credits).entitlements
