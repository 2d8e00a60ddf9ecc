"""The movements of a wallet's grants, each written to the ledger in the same transaction.

Every function here runs inside a transaction that holds the wallet's lock (`store.locked_wallet`).
Ledger amounts are signed by their effect on the balance (a grant +, a consumption -, a reserve -, a
release + what it returns minus what it charges), so a wallet's balance is always the sum of its ledger.
Time moves grants and holds in order (`catch_up`): what fell due between two requests is applied at the
instant it fell due, by whichever comes first, the scheduler's job or the next request on the wallet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.credits import rules, store
from entitle.credits.models import CreditGrant, LedgerEntry, Reservation, Wallet
from entitle.credits.rules import ACTIVE, EXPIRED, OVERDRAFT, RECURRING, SCHEDULED, VOIDED, ZERO
from entitle.jobs.service import Enqueued, enqueue

CATCH_UP_JOB = "credits.catch_up"


@dataclass(frozen=True)
class Balance:
    usage_limit: Decimal  # what the active grants granted
    current_usage: Decimal  # what they had consumed, plus what active holds keep
    reserved: Decimal
    reserved_on_expired_grants: Decimal
    valid_until: datetime | None  # the latest expiry of an active grant (None: one never expires)
    updated_at: datetime | None = None  # when a grant of the wallet last moved (None: it has none)
    period_end: datetime | None = None  # when the current recurring grant period ends (None: no recurring grant)

    @property
    def available(self) -> Decimal:
        return self.usage_limit - self.current_usage


def new_grant_ref() -> str:
    return f"grant-{uuid.uuid4().hex[:24]}"


def record(
    s: Session,
    wallet: Wallet,
    grant: CreditGrant,
    event_type: str,
    amount: Decimal,
    at: datetime,
    *,
    event_id: str | None = None,
    feature_ref: str | None = None,
    reservation_ref: str | None = None,
    hold_returned: Decimal | None = None,
) -> None:
    s.add(
        LedgerEntry(
            environment_id=wallet.environment_id,
            wallet_pk=wallet.pk,
            grant_pk=grant.pk,
            event_type=event_type,
            amount=amount,
            timestamp=at,
            event_id=event_id,
            feature_ref=feature_ref,
            reservation_ref=reservation_ref,
            hold_returned_amount=hold_returned,
        )
    )


def schedule(s: Session, wallet: Wallet, at: datetime) -> None:
    """Have the scheduler bring the wallet up to date at `at` (a grant starts or ends, a hold lapses)."""
    job = scheduled(wallet, at)
    enqueue(s, wallet.environment_id, job.kind, job.payload, run_at=job.run_at, dedupe_key=job.dedupe_key)


def scheduled(wallet: Wallet, at: datetime) -> Enqueued:
    """The job of `schedule`, for `enqueue_many`."""
    return Enqueued(CATCH_UP_JOB, {"wallet": wallet.pk}, at, f"credits:{wallet.pk}:{at.isoformat()}")


def available(grant: CreditGrant) -> Decimal:
    return grant.amount - grant.consumed - grant.reserved


# -- time ------------------------------------------------------------------------------------------------


def catch_up(s: Session, wallet: Wallet, now: datetime) -> list[CreditGrant]:
    """Apply, in the order they fell due, every start, expiry and lapsed hold up to `now`; returns the
    wallet's open grants as they now stand."""
    return catch_up_loaded(s, wallet, store.open_grants(s, wallet.pk), store.active_reservations(s, wallet.pk), now)


def catch_up_loaded(
    s: Session, wallet: Wallet, grants: list[CreditGrant], reservations: list[Reservation], now: datetime
) -> list[CreditGrant]:
    """`catch_up` of a wallet whose open grants and active reservations were read under its lock (many
    wallets' at once); returns `grants`, moved."""
    due: list[tuple[datetime, int, int, CreditGrant | Reservation]] = []
    for g in grants:
        if g.status == SCHEDULED and g.effective_at <= now:
            due.append((g.effective_at, 0, g.pk, g))
        if g.status in (SCHEDULED, ACTIVE) and g.expire_at is not None and g.expire_at <= now:
            due.append((g.expire_at, 1, g.pk, g))
    for r in reservations:
        if r.expires_at <= now:
            due.append((r.expires_at, 2, r.pk, r))
    due.sort(key=lambda item: item[:3])
    by_pk = {g.pk: g for g in grants}
    for at, kind, _, item in due:
        if kind == 0:
            assert isinstance(item, CreditGrant)
            activate(s, wallet, item, grants, at)
        elif kind == 1:
            assert isinstance(item, CreditGrant)
            end(s, wallet, item, EXPIRED, at)
        else:
            assert isinstance(item, Reservation)
            release(s, wallet, item, None, at, grants, by_pk)
    return grants


def activate(s: Session, wallet: Wallet, grant: CreditGrant, grants: list[CreditGrant], at: datetime) -> None:
    grant.status = ACTIVE
    record(s, wallet, grant, "CREDITS_GRANTED", grant.amount, at)
    settle_overdraft(s, wallet, grants, at)


def end(s: Session, wallet: Wallet, grant: CreditGrant, status: str, at: datetime) -> None:
    """Expire or void a grant: what it still had (apart from holds, settled when released) is gone."""
    was_active = grant.status == ACTIVE
    grant.status = status
    if status == VOIDED:
        grant.voided_at = at
    left = available(grant)
    if was_active and left != 0:
        record(s, wallet, grant, "CREDITS_EXPIRED" if status == EXPIRED else "CREDITS_VOIDED", -left, at)


def settle_overdraft(s: Session, wallet: Wallet, grants: list[CreditGrant], at: datetime) -> None:
    """Credits that become available (a grant starts, a hold returns what it did not charge) first pay
    what the wallet overdrew: the debt moves from the overdraft grant onto them, in draw order. So an
    overdraft never stands beside available credits."""
    debt = next((g for g in grants if g.grant_type == OVERDRAFT and g.status == ACTIVE and g.consumed > 0), None)
    if debt is None:
        return
    order = drawable(grants)
    draw = rules.spread([available(g) for g in order], debt.consumed)
    for index, moved in draw.takes:
        debt.consumed -= moved
        order[index].consumed += moved
        record(s, wallet, debt, "CREDITS_CONSUMPTION_TRANSFER_SOURCE", moved, at)
        record(s, wallet, order[index], "CREDITS_CONSUMPTION_TRANSFER_TARGET", -moved, at)


# -- drawing ---------------------------------------------------------------------------------------------


def drawable(grants: list[CreditGrant]) -> list[CreditGrant]:
    return rules.in_draw_order(g for g in grants if g.status == ACTIVE and g.grant_type != OVERDRAFT)


def consume(
    s: Session,
    wallet: Wallet,
    grants: list[CreditGrant],
    amount: Decimal,
    at: datetime,
    *,
    event_id: str | None = None,
    feature_ref: str | None = None,
) -> None:
    """Draw `amount` in Stigg's order, one ledger entry per grant drawn; what no grant covers is
    overdrawn on the wallet's OVERDRAFT grant (usage is never refused for lack of credits)."""
    order = drawable(grants)
    draw = rules.spread([available(g) for g in order], amount)
    for index, take in draw.takes:
        order[index].consumed += take
        record(s, wallet, order[index], "CREDITS_CONSUMED", -take, at, event_id=event_id, feature_ref=feature_ref)
    if draw.remainder > 0:
        debt = overdraft_grant(s, wallet, grants, at)
        debt.consumed += draw.remainder
        record(s, wallet, debt, "CREDITS_CONSUMED", -draw.remainder, at, event_id=event_id, feature_ref=feature_ref)


def overdraft_grant(s: Session, wallet: Wallet, grants: list[CreditGrant], at: datetime) -> CreditGrant:
    for g in grants:
        if g.grant_type == OVERDRAFT and g.status == ACTIVE:
            return g
    debt = CreditGrant(
        environment_id=wallet.environment_id,
        ref_id=new_grant_ref(),
        wallet_pk=wallet.pk,
        display_name="Overdraft",
        grant_type=OVERDRAFT,
        status=ACTIVE,
        amount=ZERO,
        consumed=ZERO,
        reserved=ZERO,
        priority=rules.PRIORITY_MAX,
        effective_at=at,
        metadata_={},
    )
    s.add(debt)
    s.flush()
    grants.append(debt)
    return debt


def hold(s: Session, wallet: Wallet, grants: list[CreditGrant], reservation: Reservation, at: datetime) -> None:
    """Hold the reservation's amount on grants in draw order (the caller made sure it fits)."""
    order = drawable(grants)
    draw = rules.spread([available(g) for g in order], reservation.amount)
    assert draw.remainder == 0
    holds: dict[str, str] = {}
    for index, take in draw.takes:
        grant = order[index]
        grant.reserved += take
        holds[str(grant.pk)] = str(take)
        record(s, wallet, grant, "CREDITS_RESERVED", -take, at, reservation_ref=reservation.ref_id)
    reservation.holds = holds


def release(
    s: Session,
    wallet: Wallet,
    reservation: Reservation,
    consumed: Decimal | None,
    at: datetime,
    grants: list[CreditGrant],
    by_pk: dict[int, CreditGrant] | None = None,
) -> None:
    """End a hold. Up to the held amount is charged to the grants that backed it, the rest returns to
    them (and, on a grant that ended meanwhile, ends with it); more than was held is drawn afresh.
    `consumed` None: the hold lapsed (the scheduler or a later request found it expired)."""
    known = by_pk if by_pk is not None else {g.pk: g for g in grants}
    missing = [int(pk) for pk in reservation.holds if int(pk) not in known]
    known.update(store.grants_by_pk(s, missing))
    to_charge = min(consumed, reservation.amount) if consumed is not None else ZERO
    event = "CREDITS_RESERVATION_RELEASED" if consumed is not None else "CREDITS_RESERVATION_EXPIRED"
    for pk, held_text in reservation.holds.items():
        grant, held = known[int(pk)], Decimal(held_text)
        charge = min(held, to_charge)
        to_charge -= charge
        grant.reserved -= held
        grant.consumed += charge
        record(s, wallet, grant, event, held - charge, at, reservation_ref=reservation.ref_id, hold_returned=held)
        if grant.status in (EXPIRED, VOIDED) and held > charge:
            ended = "CREDITS_EXPIRED" if grant.status == EXPIRED else "CREDITS_VOIDED"
            record(s, wallet, grant, ended, -(held - charge), at, reservation_ref=reservation.ref_id)
    reservation.status = "RELEASED"
    reservation.released_at = at
    reservation.consumed_amount = consumed
    if consumed is not None and consumed > reservation.amount:
        consume(s, wallet, grants, consumed - reservation.amount, at, event_id=f"reservation:{reservation.ref_id}")
    else:
        settle_overdraft(s, wallet, grants, at)


# -- balances --------------------------------------------------------------------------------------------


def balance(grants: list[CreditGrant], lapsed_holds: dict[int, Decimal], now: datetime) -> Balance:
    """The balance at `now` of grants whose stored status may lag behind time (a read does not write):
    a grant counts when it is active at `now`, and holds that lapsed by `now` (`lapsed_holds`, per grant)
    no longer count. After `catch_up` the two views agree."""
    limit = usage = reserved = reserved_ended = ZERO
    valid_until: datetime | None = None
    period_end: datetime | None = None
    never_ends = False
    for g in grants:
        held = g.reserved - lapsed_holds.get(g.pk, ZERO)
        if g.status in (SCHEDULED, ACTIVE) and rules.status_at(g.effective_at, g.expire_at, g.voided_at, now) == ACTIVE:
            limit += g.amount
            usage += g.consumed + held
            reserved += held
            if g.grant_type == RECURRING and g.expire_at is not None:
                period_end = g.expire_at if period_end is None else min(period_end, g.expire_at)
            if g.grant_type != OVERDRAFT:
                if g.expire_at is None:
                    never_ends = True
                elif valid_until is None or g.expire_at > valid_until:
                    valid_until = g.expire_at
        else:
            reserved_ended += held
    moved = max((g.updated_at for g in grants), default=None)
    return Balance(limit, usage, reserved, reserved_ended, None if never_ends else valid_until, moved, period_end)


def lapsed_holds(reservations: list[Reservation], now: datetime) -> dict[int, Decimal]:
    lapsed: dict[int, Decimal] = {}
    for r in reservations:
        if r.expires_at <= now:
            for pk, held in r.holds.items():
                lapsed[int(pk)] = lapsed.get(int(pk), ZERO) + Decimal(held)
    return lapsed
