"""Usage arithmetic: the documented ranges, and how a meter's aggregation is kept incrementally. Pure.

Ranges (docs/architecture.md, "Flow of usage"):

- A usage value (a report's `value`, a number a meter reads out of an event) lies within
  +-`USAGE_MAX` (10^15) and is kept to 12 decimal places. Outside, the item is refused (400, naming it).
- A counter stays within +-`USAGE_MAX` too: a report or event that would take it out is refused before
  anything is written, never clamped. At 28 significant digits (Python's decimal context) and 12
  decimal places, sums of such values are exact, and every stored value fits the database columns
  (NUMERIC(38, 12)) and the wire. Usage that waited for its owner is added when the owner appears
  (it cannot be refused then: it was acknowledged), so a counter may exceed the range by what waited
  (itself within range): still exact and readable; further growth is refused.

A meter's aggregation over a stream of contributions is a `Tally`, updated one contribution at a
time (`step`) and merged with another tally (`merge`) — so ingestion never rescans a window's events.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal

USAGE_MAX = Decimal(10) ** 15
PLACES = Decimal("1e-12")
# AVG keeps the sum of its values; far beyond anything real, but bounded so it always fits its column.
TOTAL_MAX = Decimal(10) ** 24
RANGE_TEXT = "between -10^15 and 10^15"

ADDITIVE = frozenset({"COUNT", "SUM"})
EXTREMES = frozenset({"MAX", "MIN"})

# Usage history: a range spans at most a year and answers at most this many points; more is a 400
# that says so (narrow the range), never a truncated or enormous answer.
HISTORY_MAX_SPAN = timedelta(days=366)
HISTORY_MAX_POINTS = 10_000


def usage_number(value: Decimal) -> Decimal | None:
    """`value` kept to 12 decimal places, or None when it lies outside +-USAGE_MAX."""
    if not value.is_finite() or abs(value) > USAGE_MAX:
        return None
    return value.quantize(PLACES).normalize() if value.as_tuple().exponent < -12 else value  # type: ignore[operator]


def in_range(value: Decimal) -> bool:
    return abs(value) <= USAGE_MAX


@dataclass(slots=True)
class Tally:
    """The state of one aggregation: `value` is what a check reads; `samples` counts the numbers folded
    (MAX, MIN: is there any; AVG: the divisor) and `total` is their sum (AVG). UNIQUE's distinct values
    live in the database; its `value` is their count.

    Not frozen, though nobody changes one once made (each step makes a new one): an ingestion batch
    makes two per counter it moves, and a frozen dataclass costs three times more to build (each field
    set through `object.__setattr__`)."""

    value: Decimal = Decimal(0)
    samples: int = 0
    total: Decimal | None = None


class OutOfRange(ValueError):
    """The contribution would take the tally out of its range: refuse the item, change nothing."""


def step(function: str, tally: Tally, number: Decimal) -> Tally:
    """`tally` after one more contribution (COUNT: 1 per matching event; the others: the number read)."""
    if function in ADDITIVE:
        value = tally.value + number
        if not in_range(value):
            raise OutOfRange(f"the counter would reach {value}, outside the range {RANGE_TEXT}")
        return replace(tally, value=value, samples=tally.samples + 1)
    if function in EXTREMES:
        pick = max if function == "MAX" else min
        value = number if tally.samples == 0 else pick(tally.value, number)
        return Tally(value=value, samples=tally.samples + 1, total=None)
    if function == "AVG":
        with decimal.localcontext(prec=40):
            total = (tally.total or Decimal(0)) + number
            if abs(total) > TOTAL_MAX:
                raise OutOfRange(f"the sum behind the average would reach {total}, beyond {TOTAL_MAX}")
            samples = tally.samples + 1
            return Tally(value=(total / samples).quantize(PLACES).normalize(), samples=samples, total=total)
    raise ValueError(f"{function!r} is not folded number by number")


def fold(function: str, tally: Tally, numbers: Iterable[Decimal]) -> Tally:
    for number in numbers:
        tally = step(function, tally, number)
    return tally


@dataclass(slots=True)
class Numbers:
    """Numbers to fold into a tally at once, with their sum and extremes: read before the write
    transaction (on SQLite it holds the database's write lock), so that folding them there takes a few
    operations whatever their count (`fold_checked`). Not frozen (nobody changes one once made; a
    batch makes one per owner and column of amounts, and a frozen one cost twice as much to build)."""

    values: Sequence[Decimal]
    total: Decimal  # exact: 40 digits hold the sum of a batch of numbers of at most 28
    high: Decimal
    low: Decimal
    # The largest magnitude times the count: no partial sum of the numbers exceeds it in magnitude.
    largest: Decimal

    @classmethod
    def of(cls, values: Sequence[Decimal]) -> Numbers | None:
        """None: no numbers."""
        if not values:
            return None
        with decimal.localcontext(prec=40):  # exact: a number of at most 28 digits times a count
            first = values[0]
            if len(set(map(id, values))) == 1:
                # One number throughout (COUNT's ones, the same object each): its sum is a product, without
                # comparing or adding them one by one (added to 0 as `sum` starts: the same exponent).
                total = Decimal(0) + first * len(values)
                return cls(values, total, first, first, max(first, -first) * len(values))
            high, low = max(values), min(values)
            return cls(values, sum(values, Decimal(0)), high, low, max(high, -low) * len(values))


def fold_checked(
    function: str, tally: Tally, numbers: Sequence[Decimal] | Numbers | None
) -> tuple[Tally, list[tuple[int, str]]]:
    """`tally` after `numbers` in order, as `step` folds them one by one; a number that would take the
    tally out of its range is skipped and reported with its position and why. Folds a window's numbers
    at once when no partial result can leave the range (the common case), which gives the same tally."""
    read = numbers if isinstance(numbers, Numbers) or numbers is None else Numbers.of(numbers)
    if read is None:
        return tally, []
    values = read.values
    if function in EXTREMES:
        best = read.high if function == "MAX" else read.low
        pick = max if function == "MAX" else min
        value = best if tally.samples == 0 else pick(tally.value, best)
        return Tally(value=value, samples=tally.samples + len(values), total=None), []
    # No partial sum can leave the range when the largest magnitude times the count stays within it: a
    # bound read from the extremes, before summing magnitudes one by one (only near the range's edge).
    # Within that bound the sum is exact at the default 28 digits too: the same tally as step by step.
    largest = read.largest
    if function in ADDITIVE and (
        abs(tally.value) + largest <= USAGE_MAX or abs(tally.value) + sum(abs(n) for n in values) <= USAGE_MAX
    ):
        return Tally(tally.value + read.total, tally.samples + len(values), tally.total), []
    if function == "AVG":
        with decimal.localcontext(prec=40):
            previous = tally.total or Decimal(0)
            if abs(previous) + largest <= TOTAL_MAX or abs(previous) + sum(abs(n) for n in values) <= TOTAL_MAX:
                total = previous + read.total
                samples = tally.samples + len(values)
                return Tally(value=(total / samples).quantize(PLACES).normalize(), samples=samples, total=total), []
    refused: list[tuple[int, str]] = []
    for position, number in enumerate(values):
        try:
            tally = step(function, tally, number)
        except OutOfRange as exc:
            refused.append((position, str(exc)))
    return tally, refused


def merge(function: str, into: Tally, other: Tally) -> Tally:
    """Both tallies as one (usage that waited for its owner joining a window). Never refused: the usage
    was acknowledged; each side is within its range, so the sum still fits (see the module docstring)."""
    if function in ADDITIVE:
        return Tally(value=into.value + other.value, samples=into.samples + other.samples)
    if function in EXTREMES:
        if other.samples == 0:
            return into
        if into.samples == 0:
            return other
        pick = max if function == "MAX" else min
        return Tally(value=pick(into.value, other.value), samples=into.samples + other.samples)
    if function == "AVG":
        samples = into.samples + other.samples
        if samples == 0:
            return into
        with decimal.localcontext(prec=40):
            total = (into.total or Decimal(0)) + (other.total or Decimal(0))
            return Tally(value=(total / samples).quantize(PLACES).normalize(), samples=samples, total=total)
    raise ValueError(f"{function!r} is merged by its distinct values")
