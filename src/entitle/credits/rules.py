"""Pure credit rules: the precision of amounts, a grant's status at an instant, the order grants are
drawn in, and how a draw spreads over them. No database, no clock: callers pass `now`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Protocol, TypeVar

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
