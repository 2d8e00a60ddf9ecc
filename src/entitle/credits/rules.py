"""Pure credit rules: the precision of amounts, a grant's status at an instant, the order grants are
drawn in, and how a draw spreads over them. No database, no clock: callers pass `now`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Protocol, TypeVar

from entitle.periods import billing_period_at

PLACES = 6
"""Credit amounts carry at most six decimal places: enough for fractional prices per call, and exact
in NUMERIC(38, 12) with room to spare. A request with more places is refused (never rounded silently);
conversions Entitle computes itself (a credit rate times a usage value) round half-even to it."""
QUANTUM = Decimal(1).scaleb(-PLACES)
MAX_AMOUNT = Decimal(10) ** 15
ZERO = Decimal(0)
_WIDE = Context(prec=60)  # room for any product of two wire amounts at 6 places

PRIORITY_MIN, PRIORITY_MAX, PRIORITY_DEFAULT = 0, 100, 50

RESERVATION_TTL_MIN = timedelta(seconds=1)
RESERVATION_TTL_MAX = timedelta(hours=24)
RESERVATION_TTL_DEFAULT = timedelta(hours=1)

SCHEDULED, ACTIVE, EXPIRED, VOIDED = "SCHEDULED", "ACTIVE", "EXPIRED", "VOIDED"
# A PAID grant whose invoice is not paid yet: it holds no usable credits (no ledger entry, not in any
# balance, never drawn) until the payment makes it SCHEDULED or ACTIVE.
PAYMENT_PENDING = "PAYMENT_PENDING"
PROMOTIONAL, PAID, RECURRING, OVERDRAFT = "PROMOTIONAL", "PAID", "RECURRING", "OVERDRAFT"

# Stigg: "promotional credits are consumed before paid credits". Recurring (plan-included) credits sit
# between the two: free to the customer like promotional ones, but part of what the plan sold.
_CATEGORY_RANK = {PROMOTIONAL: 0, RECURRING: 1, PAID: 2}
_NEVER = datetime.max.replace(tzinfo=UTC)


def places_problem(value: Decimal) -> str | None:
    """Why `value` is not a credit amount Entitle keeps exactly (None when it is). The magnitude is checked
    first: quantizing a huge value would overflow the decimal context (an error, not an answer)."""
    if not value.is_finite() or abs(value) >= MAX_AMOUNT:
        return f"must be less than {MAX_AMOUNT:.0f} in magnitude"
    if value != value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN):
        return f"at most {PLACES} decimal places"
    return None


def rounded(value: Decimal) -> Decimal:
    """A computed credit amount at the documented precision (half-even: no drift over many roundings)."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE)


def credits_for(units: Decimal, rate: Decimal) -> Decimal:
    """What `units` of a credit-priced feature cost when each unit costs `rate` credits."""
    return rounded(units * rate)


def status_at(effective_at: datetime, expire_at: datetime | None, voided_at: datetime | None, now: datetime) -> str:
    if voided_at is not None:
        return VOIDED
    if expire_at is not None and expire_at <= now:
        return EXPIRED
    if effective_at > now:
        return SCHEDULED
    return ACTIVE


class Drawable(Protocol):
    @property
    def priority(self) -> int: ...
    @property
    def expire_at(self) -> datetime | None: ...
    @property
    def grant_type(self) -> str: ...
    @property
    def effective_at(self) -> datetime: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def pk(self) -> int: ...


def draw_key(grant: Drawable) -> tuple[int, datetime, int, datetime, datetime, int]:
    """Stigg's order: priority (lower first), the soonest expiry (never-expiring last), promotional
    before paid, the earlier effective date, the older grant (and the lower pk, for a total order)."""
    return (
        grant.priority,
        grant.expire_at or _NEVER,
        _CATEGORY_RANK.get(grant.grant_type, len(_CATEGORY_RANK)),
        grant.effective_at,
        grant.created_at,
        grant.pk,
    )


G = TypeVar("G", bound=Drawable)


def in_draw_order(grants: Iterable[G]) -> list[G]:
    return sorted(grants, key=draw_key)


@dataclass(frozen=True)
class Draw:
    takes: list[tuple[int, Decimal]]  # (index into the grants given, amount taken), in draw order
    remainder: Decimal  # what no grant could cover (the overdraft)


def spread(available: Sequence[Decimal], amount: Decimal) -> Draw:
    """Take `amount` from grants already in draw order, each down to zero before the next."""
    takes: list[tuple[int, Decimal]] = []
    left = amount
    for index, free in enumerate(available):
        if left <= 0:
            break
        if free <= 0:
            continue
        take = min(free, left)
        takes.append((index, take))
        left -= take
    return Draw(takes, left)


# -- recurring grants ------------------------------------------------------------------------------------

CADENCE_MONTHS = {"MONTH": 1, "YEAR": 12}


def grant_period(cadence: str, start: datetime, anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The recurring grant period containing `now` for a subscription started at `start` whose billing
    cycle is anchored at `anchor` (a paid trial moves the anchor to the trial's end). Periods step by the
    cadence from the anchor, so an annual plan with a MONTH cadence grants monthly. Before the anchor (a
    trial) the periods step from the start and the last one is cut at the anchor: the trial's grant ends
    when the paid cycle begins, and the two never overlap. `now` before `start` raises ValueError."""
    months = CADENCE_MONTHS[cadence]
    period = "MONTHLY" if months == 1 else "ANNUALLY"
    if now >= anchor:
        # Never before the start: a plan change that kept its predecessor's cycle starts mid-period.
        window = billing_period_at(anchor, period, now)
        return max(window.start, start), window.end
    window = billing_period_at(start, period, now)
    return window.start, min(window.end, anchor)


def recurring_amount(per_period: Decimal, quantity: Decimal | None) -> Decimal:
    """What a CREDIT entitlement grants per period: its amount, times the quantity of the feature it
    depends on (`dependencyFeatureId`) when it has one."""
    return per_period if quantity is None else rounded(per_period * quantity)


@dataclass(frozen=True)
class Regrant:
    void: bool  # void the period's grants first
    new_amount: Decimal  # then grant this much (0: nothing)


def regrant(target: Decimal, granted: Decimal, used: Decimal) -> Regrant:
    """How a period's recurring credits follow a change of what the subscription grants (`target`).
    `granted`: what the period has given so far (its live grants' amounts, plus what its voided grants
    had given before they were voided); `used`: what of it was consumed or held. More: grant the
    difference. Less: void the live grants and grant what is left of the new amount after what was used,
    so over the period the customer gets exactly `target` (or what it already used, when that is more)."""
    if target == granted:
        return Regrant(False, ZERO)
    if target > granted:
        return Regrant(False, target - granted)
    return Regrant(True, max(ZERO, target - used))


# How far an invoice's state has gone: Stripe's webhooks may arrive in any order, and a payment failure
# sent while the invoice was open can land after it was paid. A void or an uncollectible invoice (both
# CANCELED here) never opens again; an uncollectible one may still be paid; a paid one stays paid.
_INVOICE_PROGRESS = {"OPEN": 0, "CANCELED": 1, "PAID": 2}


def invoice_supersedes(recorded: dict[str, object] | None, reported: dict[str, object]) -> bool:
    """Whether a reported invoice state replaces the one recorded on a grant: always for another invoice,
    for the same one only when it is not behind it (an older snapshot delivered late changes nothing)."""
    if recorded is None or recorded.get("billingId") != reported.get("billingId"):
        return True
    was = _INVOICE_PROGRESS.get(str(recorded.get("status")), 0)
    return _INVOICE_PROGRESS.get(str(reported.get("status")), 0) >= was
