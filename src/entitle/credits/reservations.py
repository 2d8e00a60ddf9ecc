"""Credit checks (the CREDIT branch of `GET .../entitlements/check`), reservations and their release.

A check with `reserveAmount` decides and holds atomically under the wallet's lock. A reservation id is
the client's: retrying with the same id and the same terms answers the same reservation; the same id
with other terms is a conflict (409). Release is idempotent the same way.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.clock import as_utc, utcnow
from entitle.credits import checks, engine, recurring, rules, store
from entitle.credits.consumption import balance_out
from entitle.credits.grants import wallet_for
from entitle.credits.models import CustomCurrency, Reservation, Wallet
from entitle.credits.schemas import (
    CheckReservation,
    CreditCheckRequest,
    CreditCheckResult,
    ReleaseIn,
    ReleaseOut,
    ReservationOut,
)
from entitle.customers import store as customers
from entitle.db import Database
from entitle.errors import FailedPrecondition, InvalidArgument, NotFound
from entitle.grants.engine import resource_key

INSUFFICIENT = checks.INSUFFICIENT


class ReservationConflict(FailedPrecondition):
    code = "RESERVATION_CONFLICT"


def _result(
    currency: CustomCurrency,
    balance: engine.Balance,
    *,
    granted: bool,
    reason: str | None = None,
    reservation: Reservation | None = None,
) -> CreditCheckResult:
    return checks.credit_result(
        checks.currency_view(currency),
        balance,
        granted=granted,
        reason=reason,
        reservation=None
        if reservation is None
        else CheckReservation(
            id=reservation.ref_id,
            amount=reservation.amount,
            expires_at=reservation.expires_at,
            status=reservation.status,
        ),
    )


def _terms(req: CreditCheckRequest, now: datetime) -> tuple[Decimal, datetime, dict[str, str]]:
    assert req.reserve_amount is not None
    if req.reservation_id is None or not req.reservation_id.strip():
        raise InvalidArgument("reservationId is required with reserveAmount")
    if req.reserve_amount <= 0:
        raise InvalidArgument("reserveAmount must be greater than 0")
    if problem := rules.places_problem(req.reserve_amount):
        raise InvalidArgument(f"reserveAmount: {problem}")
    if req.reservation_ttl_seconds is not None and req.reservation_expires_at is not None:
        raise InvalidArgument("pass either reservationTtlSeconds or reservationExpiresAt, not both")
    if req.reservation_expires_at is not None:
        expires = as_utc(req.reservation_expires_at)
    else:
        seconds = req.reservation_ttl_seconds
        ttl = rules.RESERVATION_TTL_DEFAULT if seconds is None else timedelta(seconds=seconds)
        expires = now + ttl
    if not rules.RESERVATION_TTL_MIN <= expires - now <= rules.RESERVATION_TTL_MAX:
        raise InvalidArgument("a reservation lasts from 1 second to 24 hours (reservationTtlSeconds 1-86400)")
    metadata: dict[str, str] = {}
    if req.reservation_metadata is not None:
        try:
            parsed = json.loads(req.reservation_metadata)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise InvalidArgument("reservationMetadata must be a JSON object of string values")
        metadata = parsed
    return req.reserve_amount, expires, metadata


def check(
    db: Database, env_id: int, customer_ref: str, currency_ref: str, req: CreditCheckRequest
) -> CreditCheckResult:
    if req.reserve_amount is not None:
        return _reserve(db, env_id, customer_ref, currency_ref, req)
    now = utcnow()
    if req.requested_usage is not None and (problem := rules.places_problem(req.requested_usage)):
        raise InvalidArgument(f"requestedUsage: {problem}")
    with db.read() as s:
        currency = store.get_currency(s, env_id, currency_ref)
        shown = checks.currency_view(currency)
        customer = customers.find(s, env_id, customer_ref)
        if customer is None or customer.archived_at is not None:
            reason = "CustomerNotFound" if customer is None else "CustomerIsArchived"
            return checks.credit_answer(shown, None, soft_limit=False, reason=reason)
        wallet = store.find_wallet(s, customer.pk, currency.pk, resource_key(req.resource_id))
        state = checks.WalletState(read_balance(s, wallet, now), None)
        soft = recurring.soft_limited(s, env_id, customer, req.resource_id, currency_ref)
    return checks.credit_answer(shown, state, soft_limit=soft, requested_usage=req.requested_usage)


def read_balance(s: Session, wallet: Wallet | None, now: datetime) -> engine.Balance:
    if wallet is None:
        return engine.Balance(rules.ZERO, rules.ZERO, rules.ZERO, rules.ZERO, None)
    lapsed = engine.lapsed_holds(store.active_reservations(s, wallet.pk), now)
    return engine.balance(store.open_grants(s, wallet.pk), lapsed, now)


def _reserve(
    db: Database, env_id: int, customer_ref: str, currency_ref: str, req: CreditCheckRequest
) -> CreditCheckResult:
    _terms(req, utcnow())  # refused before waiting for the lock
    assert req.reservation_id is not None
    with db.transaction() as s:
        _, currency, wallet = wallet_for(s, env_id, customer_ref, currency_ref, req.resource_id)
        now = utcnow()  # after the lock (`store.locked_wallet`)
        amount, expires, metadata = _terms(req, now)
        grants = engine.catch_up(s, wallet, now)
        existing = store.find_reservation(s, env_id, req.reservation_id)
        if existing is not None:
            if existing.wallet_pk != wallet.pk or existing.amount != amount:
                raise ReservationConflict(
                    f"reservationId '{req.reservation_id}' is already used for another reservation",
                )
            return _result(currency, engine.balance(grants, {}, now), granted=True, reservation=existing)
        balance = engine.balance(grants, {}, now)
        if balance.available < amount:
            return _result(currency, balance, granted=False, reason=INSUFFICIENT)
        reservation = Reservation(
            environment_id=env_id,
            ref_id=req.reservation_id,
            wallet_pk=wallet.pk,
            amount=amount,
            expires_at=expires,
            status="ACTIVE",
            metadata_=metadata,
        )
        s.add(reservation)
        s.flush()
        engine.hold(s, wallet, grants, reservation, now)
        engine.schedule(s, wallet, expires)
        return _result(currency, engine.balance(grants, {}, now), granted=True, reservation=reservation)


def release(db: Database, env_id: int, reservation_ref: str, req: ReleaseIn) -> ReleaseOut:
    consumed = req.consumed_amount
    if consumed < 0:
        raise InvalidArgument("consumedAmount must not be negative")
    if problem := rules.places_problem(consumed):
        raise InvalidArgument(f"consumedAmount: {problem}")
    with db.transaction() as s:
        _, currency, wallet = wallet_for(s, env_id, req.customer_id, req.currency_id, req.resource_id)
        now = utcnow()  # after the lock (`store.locked_wallet`)
        grants = engine.catch_up(s, wallet, now)  # a lapsed hold is released as expired first
        reservation = store.find_reservation(s, env_id, reservation_ref)
        if reservation is None or reservation.wallet_pk != wallet.pk:
            raise NotFound("reservation", reservation_ref)
        if reservation.status == "ACTIVE":
            engine.release(s, wallet, reservation, consumed, now, grants)
        elif reservation.consumed_amount is None:
            # It lapsed before the caller released it: what was used is still owed, drawn afresh.
            reservation.consumed_amount = consumed
            if consumed > 0:
                engine.consume(s, wallet, grants, consumed, now, event_id=f"reservation:{reservation.ref_id}")
        elif reservation.consumed_amount != consumed:
            raise ReservationConflict(
                f"reservation '{reservation_ref}' was already released with consumedAmount "
                f"{reservation.consumed_amount}; it cannot be released again with another amount"
            )
        s.flush()
        return ReleaseOut(
            reservation=ReservationOut(
                id=reservation.ref_id,
                amount=reservation.amount,
                expires_at=reservation.expires_at,
                status=reservation.status,
                consumed_amount=reservation.consumed_amount,
            ),
            credit=balance_out(currency, engine.balance(grants, {}, now), now),
        )
