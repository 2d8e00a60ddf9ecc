"""The time rules: billing periods, usage reset windows, trial ends. Pure functions.

Nothing here reads a clock, a database or the environment: every function is handed the instants it
needs (`now`, the subscription start, ...) and returns new instants. The entitlement engine and the
subscription scheduler call these; nothing else should compute a period boundary.

Conventions that hold for every function in this module:

* **UTC only.** Every datetime argument must be timezone-aware; a naive datetime raises `ValueError`
  (a naive value on the wire is turned into UTC by `entitle.clock.as_utc` *before* it gets here). An
  aware datetime in another zone is converted to UTC first, so calendar rules ("1st of the month",
  "every Sunday", "start of the day") are always UTC calendar rules and daylight saving never
  matters. Every datetime returned carries `tzinfo=datetime.UTC`.
* **Half-open windows.** A period or window is `[start, end)`: it contains `start`, not `end`, and the
  next one starts exactly at `end`. Consecutive windows tile time with no gap and no overlap.
* **No drift.** Month and year steps are always counted from the original anchor
  (`add_months(anchor, k)`), never from the previous boundary: a cycle anchored on Jan 31 goes
  Jan 31 → Feb 28 (29 in leap years) → Mar 31 → Apr 30 → May 31, never settling on the 28th.
  Month-end clamping and leap years are python-dateutil's `relativedelta` arithmetic.
* **Nothing before the start.** Asking for the period containing an instant before the
  subscription's anchor/start raises `ValueError`: there is no period then, and silently returning
  the first period would hide a caller's bug. (To get the first period, ask at the start itself.)

Rules where Stigg's contract is silent, chosen here:

* A missing reset configuration (`according_to=None`) means `SubscriptionStart` for MONTH, WEEK and
  YEAR. DAY and HOUR take no configuration (`None`, or `SubscriptionStart` which means the same).
* DAY windows are 24 hours aligned to the subscription start's time of day; HOUR windows are
  aligned to its minute, second and microsecond within the hour. So a subscription started at
  09:30:15 resets daily at 09:30:15 UTC and hourly at hh:30:15. No DAY/HOUR window is partial.
* Calendar-anchored resets (MONTH `StartOfTheMonth`, WEEK `Every<Weekday>`) reset at 00:00 UTC on
  the 1st of each month / on that weekday. Their **first window is partial** when the subscription
  does not start exactly on such a boundary: it runs from the subscription start to the first
  boundary after it (a subscription started Feb 15 12:00 with StartOfTheMonth has a first window
  [Feb 15 12:00, Mar 1 00:00)). Every later window is a full calendar month / week.
* `SubscriptionStart` resets step from the subscription start itself: WEEK in exact 7-day steps,
  MONTH by `add_months` (day clamped to the month's end, back to the anchor day when it fits), YEAR
  by 12 months (a Feb 29 start resets on Feb 28 in common years and Feb 29 in leap years). The
  caller chooses which instant is "the subscription start" (e.g. the billing cycle anchor).
* `UsagePeriod.anchor` is the origin of the reset schedule: every reset is `anchor` plus a whole
  number of steps. It is the subscription start for `SubscriptionStart`, DAY and HOUR; for calendar
  anchors it is the calendar boundary at or before the subscription start (the 1st of its month,
  or the most recent such weekday at 00:00), which can precede the subscription start.
* Trials: DAY units add exact 24-hour days; MONTH units use `add_months` from the trial start.

Proration is not computed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from dateutil.relativedelta import relativedelta

__all__ = [
    "BillingPeriod",
    "BillingWindow",
    "ResetAnchor",
    "ResetPeriod",
    "TrialUnit",
    "UsagePeriod",
    "add_months",
    "billing_period_at",
    "ensure_utc",
    "next_reset",
    "reset_times_between",
    "resolve_reset_anchor",
    "trial_end",
    "usage_period_at",
    "usage_periods_between",
]


class BillingPeriod(StrEnum):
    """How often a subscription is billed (the contract's `billingPeriod`)."""

    MONTHLY = "MONTHLY"
    ANNUALLY = "ANNUALLY"


class ResetPeriod(StrEnum):
    """How often metered usage resets (the contract's `resetPeriod`)."""

    YEAR = "YEAR"
    MONTH = "MONTH"
    WEEK = "WEEK"
    DAY = "DAY"
    HOUR = "HOUR"


class ResetAnchor(StrEnum):
    """Where reset windows are anchored (the contract's `accordingTo`)."""

    SUBSCRIPTION_START = "SubscriptionStart"
    START_OF_THE_MONTH = "StartOfTheMonth"
    EVERY_SUNDAY = "EverySunday"
    EVERY_MONDAY = "EveryMonday"
    EVERY_TUESDAY = "EveryTuesday"
    EVERY_WEDNESDAY = "EveryWednesday"
    EVERY_THURSDAY = "EveryThursday"
    EVERY_FRIDAY = "EveryFriday"
    EVERY_SATURDAY = "EverySaturday"


class TrialUnit(StrEnum):
    """Units of a trial's duration (the contract's trial `units`)."""

    DAY = "DAY"
    MONTH = "MONTH"


# datetime.weekday(): Monday is 0, Sunday is 6.
WEEKDAY_OF_ANCHOR: dict[ResetAnchor, int] = {
    ResetAnchor.EVERY_MONDAY: 0,
    ResetAnchor.EVERY_TUESDAY: 1,
    ResetAnchor.EVERY_WEDNESDAY: 2,
    ResetAnchor.EVERY_THURSDAY: 3,
    ResetAnchor.EVERY_FRIDAY: 4,
    ResetAnchor.EVERY_SATURDAY: 5,
    ResetAnchor.EVERY_SUNDAY: 6,
}

ALLOWED_ANCHORS: dict[ResetPeriod, frozenset[ResetAnchor]] = {
    ResetPeriod.YEAR: frozenset({ResetAnchor.SUBSCRIPTION_START}),
    ResetPeriod.MONTH: frozenset({ResetAnchor.SUBSCRIPTION_START, ResetAnchor.START_OF_THE_MONTH}),
    ResetPeriod.WEEK: frozenset({ResetAnchor.SUBSCRIPTION_START, *WEEKDAY_OF_ANCHOR}),
    ResetPeriod.DAY: frozenset({ResetAnchor.SUBSCRIPTION_START}),
    ResetPeriod.HOUR: frozenset({ResetAnchor.SUBSCRIPTION_START}),
}


class BillingWindow(NamedTuple):
    """One billing period `[start, end)`."""

    start: datetime
    end: datetime


class UsagePeriod(NamedTuple):
    """One usage window `[start, end)`; `end` is the next reset. `anchor` is the schedule's origin:
    every reset is `anchor` plus whole steps (see the module docstring)."""

    start: datetime
    end: datetime
    anchor: datetime


def ensure_utc(value: datetime, name: str = "datetime") -> datetime:
    """`value` as a UTC datetime. Naive values raise `ValueError`; other zones are converted."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def add_months(anchor: datetime, n: int) -> datetime:
    """`anchor` moved by `n` calendar months (negative moves back), keeping its time of day.

    The day is the anchor's day clamped to the target month's length: Jan 31 + 1 → Feb 28 (Feb 29 in
    a leap year), Jan 31 + 2 → Mar 31. Always step from the original anchor (`add_months(a, k)` for
    the k-th boundary), never from a previous result, or clamped days would stick.
    """
    a = ensure_utc(anchor, "anchor")
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    return a + relativedelta(months=n)


# ----------------------------------------------------------------------------------------------
# Schedules: an origin plus a step; boundary k is origin + k steps (k may be negative).


@dataclass(frozen=True)
class _FixedSchedule:
    origin: datetime
    step: timedelta

    def at(self, k: int) -> datetime:
        return self.origin + k * self.step

    def index_at(self, t: datetime) -> int:
        """The largest k with at(k) <= t."""
        return (t - self.origin) // self.step


@dataclass(frozen=True)
class _MonthlySchedule:
    origin: datetime
    months: int

    def at(self, k: int) -> datetime:
        return self.origin + relativedelta(months=k * self.months)

    def index_at(self, t: datetime) -> int:
        """The largest k with at(k) <= t."""
        elapsed = (t.year - self.origin.year) * 12 + (t.month - self.origin.month)
        k = elapsed // self.months
        while self.at(k) > t:
            k -= 1
        while self.at(k + 1) <= t:
            k += 1
        return k


_Schedule = _FixedSchedule | _MonthlySchedule


def _parse_reset_period(value: ResetPeriod | str) -> ResetPeriod:
    try:
        return ResetPeriod(value)
    except ValueError:
        raise ValueError(f"unknown reset period {value!r}") from None


def resolve_reset_anchor(reset_period: ResetPeriod | str, according_to: ResetAnchor | str | None) -> ResetAnchor:
    """The anchor a reset configuration means, validated against its period.

    `None` means `SubscriptionStart` (for every period). Allowed: YEAR → SubscriptionStart;
    MONTH → SubscriptionStart | StartOfTheMonth; WEEK → SubscriptionStart | Every<Weekday>;
    DAY and HOUR → SubscriptionStart only. Anything else raises `ValueError`.
    """
    period = _parse_reset_period(reset_period)
    if according_to is None:
        return ResetAnchor.SUBSCRIPTION_START
    try:
        anchor = ResetAnchor(according_to)
    except ValueError:
        raise ValueError(f"unknown reset anchor {according_to!r}") from None
    if anchor not in ALLOWED_ANCHORS[period]:
        raise ValueError(f"reset anchor {anchor.value!r} is not valid for reset period {period.value!r}")
    return anchor


def _usage_schedule(period: ResetPeriod, anchor: ResetAnchor, start: datetime) -> _Schedule:
    if period is ResetPeriod.HOUR:
        return _FixedSchedule(start, timedelta(hours=1))
    if period is ResetPeriod.DAY:
        return _FixedSchedule(start, timedelta(days=1))
    if period is ResetPeriod.WEEK:
        if anchor is ResetAnchor.SUBSCRIPTION_START:
            return _FixedSchedule(start, timedelta(weeks=1))
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        days_back = (start.weekday() - WEEKDAY_OF_ANCHOR[anchor]) % 7
        return _FixedSchedule(midnight - timedelta(days=days_back), timedelta(weeks=1))
    if period is ResetPeriod.MONTH:
        if anchor is ResetAnchor.START_OF_THE_MONTH:
            return _MonthlySchedule(start.replace(day=1, hour=0, minute=0, second=0, microsecond=0), 1)
        return _MonthlySchedule(start, 1)
    return _MonthlySchedule(start, 12)  # YEAR


def _billing_schedule(period: BillingPeriod | str, anchor: datetime) -> _MonthlySchedule:
    try:
        parsed = BillingPeriod(period)
    except ValueError:
        raise ValueError(f"unknown billing period {period!r}") from None
    return _MonthlySchedule(anchor, 1 if parsed is BillingPeriod.MONTHLY else 12)


def _not_before(now: datetime, start: datetime, what: str) -> None:
    if now < start:
        raise ValueError(f"{now.isoformat()} is before the {what} {start.isoformat()}: there is no period then")


# ----------------------------------------------------------------------------------------------
# Billing periods


def billing_period_at(anchor: datetime, period: BillingPeriod | str, now: datetime) -> BillingWindow:
    """The billing period containing `now` for a cycle anchored at `anchor`: `start <= now < end`.

    Period k is `[add_months(anchor, k*m), add_months(anchor, (k+1)*m))` with m = 1 (MONTHLY) or
    12 (ANNUALLY), counted from the anchor so month-end anchors never drift; boundaries keep the
    anchor's time of day. Monthly periods last 28-31 days, annual ones 365-366. `now` before
    `anchor` raises `ValueError`.
    """
    a = ensure_utc(anchor, "anchor")
    t = ensure_utc(now, "now")
    schedule = _billing_schedule(period, a)
    _not_before(t, a, "billing anchor")
    k = schedule.index_at(t)
    return BillingWindow(schedule.at(k), schedule.at(k + 1))


# ----------------------------------------------------------------------------------------------
# Usage reset windows


def usage_period_at(
    reset_period: ResetPeriod | str,
    according_to: ResetAnchor | str | None,
    subscription_start: datetime,
    now: datetime,
) -> UsagePeriod:
    """The usage window containing `now`: `start <= now < end`, `end` being the next reset.

    * HOUR: 1-hour windows from the subscription start (aligned to its minute/second).
    * DAY: 24-hour windows from the subscription start (aligned to its time of day).
    * WEEK + SubscriptionStart: 7-day windows from the subscription start.
    * WEEK + Every<Weekday>: weeks starting on that weekday at 00:00 UTC.
    * MONTH + SubscriptionStart: `add_months(subscription_start, k)` boundaries (no drift).
    * MONTH + StartOfTheMonth: calendar months, starting on the 1st at 00:00 UTC.
    * YEAR + SubscriptionStart: `add_months(subscription_start, 12k)` boundaries.

    Windows never start before the subscription: for calendar anchors the first window is partial,
    `[subscription_start, first calendar boundary after it)`. `now` before the subscription start
    raises `ValueError`; `according_to` is validated by `resolve_reset_anchor`.
    """
    period = _parse_reset_period(reset_period)
    anchor = resolve_reset_anchor(period, according_to)
    start = ensure_utc(subscription_start, "subscription_start")
    t = ensure_utc(now, "now")
    _not_before(t, start, "subscription start")
    schedule = _usage_schedule(period, anchor, start)
    k = schedule.index_at(t)
    return UsagePeriod(max(schedule.at(k), start), schedule.at(k + 1), schedule.origin)


def next_reset(
    reset_period: ResetPeriod | str,
    according_to: ResetAnchor | str | None,
    subscription_start: datetime,
    now: datetime,
) -> datetime:
    """When usage next resets after `now`: the end of the window containing `now` (always > now)."""
    return usage_period_at(reset_period, according_to, subscription_start, now).end


def usage_periods_between(
    reset_period: ResetPeriod | str,
    according_to: ResetAnchor | str | None,
    subscription_start: datetime,
    since: datetime,
    until: datetime,
) -> Iterator[UsagePeriod]:
    """The usage windows that overlap `[since, until)`, in order, unclipped.

    Instants before the subscription start belong to no window, so `since` may precede it (the
    first window yielded is then the subscription's first). Nothing is yielded when
    `until <= max(since, subscription_start)`. Lazy: a long range of HOUR windows costs nothing
    until iterated.
    """
    period = _parse_reset_period(reset_period)
    anchor = resolve_reset_anchor(period, according_to)
    start = ensure_utc(subscription_start, "subscription_start")
    lo = max(ensure_utc(since, "since"), start)
    hi = ensure_utc(until, "until")
    if hi <= lo:
        # The window containing `lo` starts at or before it, so the loop's own stop would still yield it.
        return
    schedule = _usage_schedule(period, anchor, start)
    k = schedule.index_at(lo)
    while True:
        window_start = max(schedule.at(k), start)
        if window_start >= hi:
            return
        yield UsagePeriod(window_start, schedule.at(k + 1), schedule.origin)
        k += 1


def reset_times_between(
    reset_period: ResetPeriod | str,
    according_to: ResetAnchor | str | None,
    subscription_start: datetime,
    since: datetime,
    until: datetime,
) -> list[datetime]:
    """Every reset instant `r` with `since <= r < until`, ascending (usage history reset markers).

    A reset is the start of a usage window other than the first: the subscription start itself is
    not a reset, every later window start is. Empty when `until <= since`.
    """
    start = ensure_utc(subscription_start, "subscription_start")
    lo = ensure_utc(since, "since")
    return [
        w.start
        for w in usage_periods_between(reset_period, according_to, start, lo, until)
        if w.start > start and w.start >= lo
    ]


# ----------------------------------------------------------------------------------------------
# Trials


def trial_end(start: datetime, duration: int, units: TrialUnit | str) -> datetime:
    """When a trial of `duration` `units` starting at `start` ends (the first instant not in trial).

    DAY: `start + duration * 24h`. MONTH: `add_months(start, duration)` (a trial from Jan 31 for one
    month ends Feb 28/29 at the same time of day). `duration` must be a positive int. Raises
    `PastCalendarEnd` when the end falls after year 9999.
    """
    s = ensure_utc(start, "start")
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise TypeError(f"duration must be an int, got {type(duration).__name__}")
    if duration < 1:
        raise ValueError(f"trial duration must be positive, got {duration}")
    try:
        unit = TrialUnit(units)
    except ValueError:
        raise ValueError(f"unknown trial units {units!r}") from None
    try:
        if unit is TrialUnit.DAY:
            return s + timedelta(days=duration)
        return add_months(s, duration)
    except (OverflowError, ValueError) as exc:  # timedelta/datetime overflow; relativedelta's "year out of range"
        raise PastCalendarEnd(
            f"a trial of {duration} {unit.value.lower()}(s) from {s.isoformat()} ends after year 9999"
        ) from exc


class PastCalendarEnd(OverflowError):
    """A computed instant falls after the last one Python's datetime holds (year 9999)."""
