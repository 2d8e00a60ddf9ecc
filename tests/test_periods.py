"""Property tests for the time rules (src/entitle/periods.py).

The oracles here are written independently of the implementation: plain year/month arithmetic and
`calendar.monthrange` instead of relativedelta, weekday numbers instead of schedules, so a wrong rule
in periods.py shows up as a disagreement rather than being checked against itself.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from entitle.periods import (
    BillingPeriod,
    BillingWindow,
    PastCalendarEnd,
    ResetAnchor,
    ResetPeriod,
    TrialUnit,
    UsagePeriod,
    add_months,
    billing_period_at,
    ensure_utc,
    next_reset,
    reset_times_between,
    resolve_reset_anchor,
    trial_end,
    usage_period_at,
    usage_periods_between,
)

US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)

WEEKDAYS = {  # datetime.weekday(): Monday is 0
    "EveryMonday": 0,
    "EveryTuesday": 1,
    "EveryWednesday": 2,
    "EveryThursday": 3,
    "EveryFriday": 4,
    "EverySaturday": 5,
    "EverySunday": 6,
}

# Every valid reset configuration, as the wire spells it (None = no configuration sent).
CONFIGS: list[tuple[str, str | None]] = [
    ("YEAR", None),
    ("YEAR", "SubscriptionStart"),
    ("MONTH", None),
    ("MONTH", "SubscriptionStart"),
    ("MONTH", "StartOfTheMonth"),
    ("WEEK", None),
    ("WEEK", "SubscriptionStart"),
    *[("WEEK", name) for name in WEEKDAYS],
    ("DAY", None),
    ("DAY", "SubscriptionStart"),
    ("HOUR", None),
    ("HOUR", "SubscriptionStart"),
]
CALENDAR_ANCHORED = {"StartOfTheMonth", *WEEKDAYS}


# ---------------------------------------------------------------------------------------------
# Oracles


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def oracle_add_months(anchor: datetime, n: int) -> datetime:
    """Month stepping by hand: same time of day, day clamped to the target month's length."""
    years, month0 = divmod(anchor.month - 1 + n, 12)
    year, month = anchor.year + years, month0 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, days_in_month(year, month)))


def months_between(a: datetime, b: datetime) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month)


def first_of_next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def is_midnight(t: datetime) -> bool:
    return (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0)


def time_of_day(t: datetime) -> tuple[int, int, int, int]:
    return (t.hour, t.minute, t.second, t.microsecond)


# ---------------------------------------------------------------------------------------------
# Strategies: aware UTC instants in 1970-2100, biased towards month ends and leap days.

LO, HI = datetime(1970, 1, 1), datetime(2100, 12, 31, 23, 59, 59, 999_999)
plain_instants = st.datetimes(min_value=LO, max_value=HI, timezones=st.just(UTC))


@st.composite
def edge_instants(draw: st.DrawFn) -> datetime:
    """The 1st or one of the last four days of a month (Feb 29 included), at midnight or any time."""
    year = draw(st.integers(1970, 2100))
    month = draw(st.integers(1, 12))
    dim = days_in_month(year, month)
    day = draw(st.sampled_from([1, dim, dim - 1, dim - 2, dim - 3]))
    if draw(st.booleans()):
        return datetime(year, month, day, tzinfo=UTC)
    t = draw(st.times())
    return datetime(year, month, day, t.hour, t.minute, t.second, t.microsecond, tzinfo=UTC)


leap_days = st.sampled_from([y for y in range(1970, 2101) if calendar.isleap(y)])
leap_day_instants = st.builds(lambda y, t: datetime.combine(datetime(y, 2, 29), t, tzinfo=UTC), leap_days, st.times())

instants = st.one_of(plain_instants, edge_instants(), leap_day_instants)


@st.composite
def start_and_now(draw: st.DrawFn) -> tuple[datetime, datetime]:
    """A subscription start and an instant at or after it: far apart, close, or equal."""
    start = draw(instants)
    how = draw(st.sampled_from(["far", "near", "same"]))
    if how == "far":
        other = draw(instants)
        return min(start, other), max(start, other)
    if how == "near":
        return start, start + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)))
    return start, start


configs = st.sampled_from(CONFIGS)
SCALE = 10**9
fractions = st.integers(0, SCALE - 1)


def inside(start: datetime, end: datetime, frac: int) -> datetime:
    """The instant frac/SCALE of the way through [start, end): always >= start and < end."""
    return start + timedelta(microseconds=((end - start) // US) * frac // SCALE)


billing_periods = st.sampled_from(["MONTHLY", "ANNUALLY"])


# ---------------------------------------------------------------------------------------------
# add_months and trials


@given(instants, st.integers(-1200, 1200))
def test_add_months_clamps_to_month_end_and_keeps_time(anchor: datetime, n: int) -> None:
    got = add_months(anchor, n)
    assert got == oracle_add_months(anchor, n)
    assert got.tzinfo is UTC
    assert months_between(anchor, got) == n
    assert got.day == min(anchor.day, days_in_month(got.year, got.month))
    assert time_of_day(got) == time_of_day(anchor)


@given(instants, st.integers(1, 120), st.integers(1, 120))
def test_add_months_counts_from_the_anchor_even_where_chaining_would_drift(anchor: datetime, m: int, n: int) -> None:
    # Chained steps may only lose days (clamping sticks); the direct step always restores the anchor day.
    direct, chained = add_months(anchor, m + n), add_months(add_months(anchor, m), n)
    assert chained <= direct
    assert direct.day == min(anchor.day, days_in_month(direct.year, direct.month))


@given(instants, st.integers(1, 3650))
def test_day_trials_last_exactly_that_many_days(start: datetime, days: int) -> None:
    assert trial_end(start, days, "DAY") - start == timedelta(days=days)
    assert trial_end(start, days, TrialUnit.DAY) == start + timedelta(days=days)


@given(instants, st.integers(1, 36))
def test_month_trials_end_on_the_clamped_anchor_day(start: datetime, months: int) -> None:
    assert trial_end(start, months, "MONTH") == oracle_add_months(start, months)


@pytest.mark.parametrize("duration", [0, -1])
def test_trials_need_a_positive_duration(duration: int) -> None:
    with pytest.raises(ValueError):
        trial_end(datetime(2024, 1, 1, tzinfo=UTC), duration, "DAY")


def test_trials_reject_unknown_units_and_non_integer_durations() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        trial_end(start, 1, "WEEK")
    with pytest.raises(TypeError):
        trial_end(start, 1.5, "DAY")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        trial_end(start, True, "DAY")


# ---------------------------------------------------------------------------------------------
# Billing periods


@given(billing_periods, start_and_now())
def test_billing_period_contains_now_and_has_calendar_length(period: str, sn: tuple[datetime, datetime]) -> None:
    anchor, now = sn
    start, end = billing_period_at(anchor, period, now)
    assert start <= now < end
    assert start >= anchor
    assert start.tzinfo is UTC and end.tzinfo is UTC
    length = end - start
    assert length % DAY == timedelta(0)
    if period == "MONTHLY":
        assert timedelta(days=28) <= length <= timedelta(days=31)
    else:
        assert timedelta(days=365) <= length <= timedelta(days=366)


@given(billing_periods, start_and_now())
def test_billing_periods_start_on_the_anchor_day_clamped(period: str, sn: tuple[datetime, datetime]) -> None:
    anchor, now = sn
    window = billing_period_at(anchor, period, now)
    step = 1 if period == "MONTHLY" else 12
    k, rem = divmod(months_between(anchor, window.start), step)
    assert rem == 0
    assert window == (oracle_add_months(anchor, k * step), oracle_add_months(anchor, (k + 1) * step))
    if period == "ANNUALLY":
        assert window.start.month == anchor.month


@given(billing_periods, start_and_now(), fractions)
def test_billing_periods_tile_time(period: str, sn: tuple[datetime, datetime], frac: int) -> None:
    anchor, now = sn
    w = billing_period_at(anchor, period, now)
    assert billing_period_at(anchor, period, w.end).start == w.end
    assert billing_period_at(anchor, period, w.end - US) == w
    assert billing_period_at(anchor, period, inside(w.start, w.end, frac)) == w
    if w.start > anchor:
        assert billing_period_at(anchor, period, w.start - US).end == w.start
    else:
        assert w.start == anchor


@settings(deadline=None)
@given(billing_periods, instants, st.integers(1, 60))
def test_walking_billing_periods_never_drifts(period: str, anchor: datetime, steps: int) -> None:
    step = 1 if period == "MONTHLY" else 12
    w = billing_period_at(anchor, period, anchor)
    for k in range(steps):
        assert w.start == oracle_add_months(anchor, k * step)
        w = billing_period_at(anchor, period, w.end)


@given(instants, st.timedeltas(min_value=US, max_value=timedelta(days=4000)))
def test_no_billing_period_before_the_anchor(anchor: datetime, before: timedelta) -> None:
    with pytest.raises(ValueError):
        billing_period_at(anchor, "MONTHLY", anchor - before)


def test_unknown_billing_period_is_rejected() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        billing_period_at(t, "WEEKLY", t)


def test_jan_31_monthly_billing_through_a_leap_february() -> None:
    anchor = datetime(2024, 1, 31, 9, 30, tzinfo=UTC)
    expected = [
        (datetime(2024, 1, 31, 9, 30, tzinfo=UTC), datetime(2024, 2, 29, 9, 30, tzinfo=UTC)),
        (datetime(2024, 2, 29, 9, 30, tzinfo=UTC), datetime(2024, 3, 31, 9, 30, tzinfo=UTC)),
        (datetime(2024, 3, 31, 9, 30, tzinfo=UTC), datetime(2024, 4, 30, 9, 30, tzinfo=UTC)),
        (datetime(2024, 4, 30, 9, 30, tzinfo=UTC), datetime(2024, 5, 31, 9, 30, tzinfo=UTC)),
    ]
    for start, end in expected:
        assert billing_period_at(anchor, BillingPeriod.MONTHLY, start) == BillingWindow(start, end)
        assert billing_period_at(anchor, BillingPeriod.MONTHLY, end - US) == BillingWindow(start, end)
    # A common year: Feb 28, then back to Mar 31 (not Mar 28).
    anchor = datetime(2023, 1, 31, tzinfo=UTC)
    assert billing_period_at(anchor, "MONTHLY", datetime(2023, 3, 1, tzinfo=UTC)) == (
        datetime(2023, 2, 28, tzinfo=UTC),
        datetime(2023, 3, 31, tzinfo=UTC),
    )


def test_feb_29_annual_billing() -> None:
    anchor = datetime(2024, 2, 29, tzinfo=UTC)
    starts = [billing_period_at(anchor, "ANNUALLY", datetime(y, 6, 1, tzinfo=UTC)).start for y in range(2024, 2033)]
    assert [(s.year, s.day) for s in starts] == [
        (2024, 29),
        (2025, 28),
        (2026, 28),
        (2027, 28),
        (2028, 29),
        (2029, 28),
        (2030, 28),
        (2031, 28),
        (2032, 29),
    ]
    assert all(s.month == 2 for s in starts)


# ---------------------------------------------------------------------------------------------
# Usage windows: properties over every reset period and anchor


@given(configs, start_and_now())
def test_usage_window_contains_now(cfg: tuple[str, str | None], sn: tuple[datetime, datetime]) -> None:
    period, anchor = cfg
    start, now = sn
    w = usage_period_at(period, anchor, start, now)
    assert w.start <= now < w.end
    assert w.start >= start
    assert w.anchor <= start
    assert w.start.tzinfo is UTC and w.end.tzinfo is UTC and w.anchor.tzinfo is UTC
    assert next_reset(period, anchor, start, now) == w.end


@given(configs, start_and_now(), fractions)
def test_usage_windows_tile_time(cfg: tuple[str, str | None], sn: tuple[datetime, datetime], frac: int) -> None:
    period, anchor = cfg
    start, now = sn
    w = usage_period_at(period, anchor, start, now)
    after = usage_period_at(period, anchor, start, w.end)
    assert after.start == w.end, "gap or overlap after the window"
    assert after.anchor == w.anchor
    assert usage_period_at(period, anchor, start, w.end - US) == w
    assert usage_period_at(period, anchor, start, inside(w.start, w.end, frac)) == w
    if w.start > start:
        assert usage_period_at(period, anchor, start, w.start - US).end == w.start, "gap or overlap before"
    else:
        assert w.start == start


FULL_LENGTH = {
    "HOUR": (HOUR, HOUR),
    "DAY": (DAY, DAY),
    "WEEK": (WEEK, WEEK),
    "MONTH": (timedelta(days=28), timedelta(days=31)),
    "YEAR": (timedelta(days=365), timedelta(days=366)),
}


@given(configs, start_and_now())
def test_usage_window_length(cfg: tuple[str, str | None], sn: tuple[datetime, datetime]) -> None:
    period, anchor = cfg
    start, now = sn
    w = usage_period_at(period, anchor, start, now)
    shortest, longest = FULL_LENGTH[period]
    length = w.end - w.start
    if anchor in CALENDAR_ANCHORED and w.start == start:
        # The documented partial first window: from the subscription start to the first boundary.
        assert timedelta(0) < length <= longest
    else:
        assert shortest <= length <= longest
        if period in ("MONTH", "YEAR"):
            assert length % DAY == timedelta(0)


@given(st.sampled_from(sorted(WEEKDAYS)), start_and_now())
def test_weekday_anchored_windows_run_between_that_weekdays_midnights(
    anchor: str, sn: tuple[datetime, datetime]
) -> None:
    start, now = sn
    w = usage_period_at("WEEK", anchor, start, now)
    assert w.end.weekday() == WEEKDAYS[anchor] and is_midnight(w.end)
    assert w.anchor.weekday() == WEEKDAYS[anchor] and is_midnight(w.anchor)
    if w.start != start:
        assert w.start.weekday() == WEEKDAYS[anchor] and is_midnight(w.start)
        assert w.end - w.start == WEEK
    else:
        # First window: ends at the first such midnight strictly after the subscription start.
        assert start < w.end <= start + WEEK
        on_boundary = start.weekday() == WEEKDAYS[anchor] and is_midnight(start)
        assert (w.end - w.start == WEEK) == on_boundary


@given(start_and_now())
def test_start_of_the_month_windows_are_calendar_months(sn: tuple[datetime, datetime]) -> None:
    start, now = sn
    w = usage_period_at("MONTH", "StartOfTheMonth", start, now)
    assert w.end == first_of_next_month(w.start)
    assert w.anchor == datetime(start.year, start.month, 1, tzinfo=UTC)
    if w.start != start:
        assert w.start.day == 1 and is_midnight(w.start)
        assert w.end - w.start == timedelta(days=days_in_month(w.start.year, w.start.month))
    else:
        assert (w.start.year, w.start.month) == (now.year, now.month)


@given(st.sampled_from(["SubscriptionStart", None]), start_and_now())
def test_subscription_start_monthly_windows_start_on_the_clamped_anchor_day(
    anchor: str | None, sn: tuple[datetime, datetime]
) -> None:
    start, now = sn
    w = usage_period_at("MONTH", anchor, start, now)
    k = months_between(start, w.start)
    assert w.start == oracle_add_months(start, k)
    assert w.end == oracle_add_months(start, k + 1)
    for boundary in (w.start, w.end):
        assert boundary.day == min(start.day, days_in_month(boundary.year, boundary.month))
        assert time_of_day(boundary) == time_of_day(start)
    assert w.anchor == start


@given(st.sampled_from(["SubscriptionStart", None]), start_and_now())
def test_yearly_windows_follow_the_anchor_including_feb_29(anchor: str | None, sn: tuple[datetime, datetime]) -> None:
    start, now = sn
    w = usage_period_at("YEAR", anchor, start, now)
    years = w.start.year - start.year
    assert w.start == oracle_add_months(start, 12 * years)
    assert w.end == oracle_add_months(start, 12 * (years + 1))
    assert w.start.month == start.month


@given(st.sampled_from(["SubscriptionStart", None]), start_and_now())
def test_subscription_start_weekly_windows_are_seven_day_steps(
    anchor: str | None, sn: tuple[datetime, datetime]
) -> None:
    start, now = sn
    w = usage_period_at("WEEK", anchor, start, now)
    assert (w.start - start) % WEEK == timedelta(0)
    assert w.start.weekday() == start.weekday()
    assert time_of_day(w.start) == time_of_day(start)


@given(start_and_now())
def test_day_windows_align_to_the_subscription_time_of_day(sn: tuple[datetime, datetime]) -> None:
    start, now = sn
    w = usage_period_at("DAY", None, start, now)
    assert time_of_day(w.start) == time_of_day(start)
    assert (w.start - start) % DAY == timedelta(0)


@given(start_and_now())
def test_hour_windows_align_to_the_subscription_minute(sn: tuple[datetime, datetime]) -> None:
    start, now = sn
    w = usage_period_at("HOUR", None, start, now)
    assert (w.start.minute, w.start.second, w.start.microsecond) == (start.minute, start.second, start.microsecond)
    assert (w.start - start) % HOUR == timedelta(0)
    assert now - w.start < HOUR


@settings(deadline=None)
@given(st.sampled_from(["MONTH", "YEAR"]), instants, st.integers(1, 60))
def test_walking_subscription_start_windows_never_drifts(period: str, start: datetime, steps: int) -> None:
    step = 1 if period == "MONTH" else 12
    w = usage_period_at(period, "SubscriptionStart", start, start)
    for k in range(steps):
        assert w.start == oracle_add_months(start, k * step)
        w = usage_period_at(period, "SubscriptionStart", start, w.end)


@given(configs, start_and_now(), st.integers(-14 * 60, 14 * 60))
def test_only_the_instant_matters_not_the_zone_it_is_written_in(
    cfg: tuple[str, str | None], sn: tuple[datetime, datetime], offset_minutes: int
) -> None:
    period, anchor = cfg
    start, now = sn
    zone = timezone(timedelta(minutes=offset_minutes))
    w = usage_period_at(period, anchor, start.astimezone(zone), now.astimezone(zone))
    assert w == usage_period_at(period, anchor, start, now)
    assert w.start.tzinfo is UTC and w.end.tzinfo is UTC
    b = billing_period_at(start.astimezone(zone), "MONTHLY", now.astimezone(zone))
    assert b == billing_period_at(start, "MONTHLY", now)
    assert b.start.tzinfo is UTC


@given(configs, instants, st.timedeltas(min_value=US, max_value=timedelta(days=4000)))
def test_no_usage_window_before_the_subscription_starts(
    cfg: tuple[str, str | None], start: datetime, before: timedelta
) -> None:
    period, anchor = cfg
    with pytest.raises(ValueError):
        usage_period_at(period, anchor, start, start - before)


# ---------------------------------------------------------------------------------------------
# Listing windows and resets between two instants

RANGE_CAP = {
    "HOUR": timedelta(days=5),
    "DAY": timedelta(days=200),
    "WEEK": timedelta(days=1500),
    "MONTH": timedelta(days=3650),
    "YEAR": timedelta(days=36500),
}


@st.composite
def ranges(draw: st.DrawFn, period: str) -> tuple[datetime, datetime, datetime]:
    """(subscription start, since, until); since may precede the start, until may precede since."""
    start = draw(instants)
    since = start + draw(st.timedeltas(min_value=-RANGE_CAP[period], max_value=RANGE_CAP[period] * 3))
    until = since + draw(st.timedeltas(min_value=-DAY, max_value=RANGE_CAP[period]))
    return start, since, until


@st.composite
def config_and_range(draw: st.DrawFn) -> tuple[str, str | None, datetime, datetime, datetime]:
    period, anchor = draw(configs)
    return (period, anchor, *draw(ranges(period)))


@settings(deadline=None)
@given(config_and_range())
def test_reset_times_are_exactly_the_window_starts_in_range(
    case: tuple[str, str | None, datetime, datetime, datetime],
) -> None:
    period, anchor, start, since, until = case
    got = reset_times_between(period, anchor, start, since, until)
    # Oracle: walk window by window with usage_period_at from the first window touching the range.
    expected: list[datetime] = []
    t = max(start, since)
    while t < until:
        w = usage_period_at(period, anchor, start, t)
        if w.start > start and w.start >= since:
            expected.append(w.start)
        t = w.end
    assert got == expected
    assert all(since <= r < until and r > start for r in got)
    assert all(a < b for a, b in pairwise(got))


@settings(deadline=None)
@given(config_and_range())
# An empty range starting just inside the first window (found by hypothesis): no window.
@example(("YEAR", None, datetime(1972, 2, 29, tzinfo=UTC), *[datetime(1972, 2, 29, 0, 0, 0, 1, tzinfo=UTC)] * 2))
def test_windows_between_are_consecutive_and_cover_the_range(
    case: tuple[str, str | None, datetime, datetime, datetime],
) -> None:
    period, anchor, start, since, until = case
    windows = list(usage_periods_between(period, anchor, start, since, until))
    lo = max(since, start)
    if until <= lo:
        assert windows == []
        return
    assert windows, "a non-empty range overlaps at least one window"
    assert windows[0] == usage_period_at(period, anchor, start, lo)
    assert windows[-1] == usage_period_at(period, anchor, start, until - US)
    for a, b in pairwise(windows):
        assert a.end == b.start


# ---------------------------------------------------------------------------------------------
# Hand-written examples


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_jan_31_monthly_resets_through_a_leap_february() -> None:
    start = utc(2024, 1, 31, 15, 0)
    boundaries = [usage_period_at("MONTH", "SubscriptionStart", start, start).start]
    for _ in range(5):
        boundaries.append(next_reset("MONTH", "SubscriptionStart", start, boundaries[-1]))
    assert boundaries == [
        utc(2024, 1, 31, 15),
        utc(2024, 2, 29, 15),
        utc(2024, 3, 31, 15),
        utc(2024, 4, 30, 15),
        utc(2024, 5, 31, 15),
        utc(2024, 6, 30, 15),
    ]
    assert usage_period_at("MONTH", None, start, utc(2024, 3, 15)) == UsagePeriod(
        utc(2024, 2, 29, 15), utc(2024, 3, 31, 15), start
    )


def test_feb_29_yearly_resets() -> None:
    start = utc(2024, 2, 29, 8, 0)
    assert usage_period_at("YEAR", "SubscriptionStart", start, utc(2025, 2, 28, 7, 59)) == UsagePeriod(
        utc(2024, 2, 29, 8), utc(2025, 2, 28, 8), start
    )
    assert usage_period_at("YEAR", None, start, utc(2027, 12, 31)) == UsagePeriod(
        utc(2027, 2, 28, 8), utc(2028, 2, 29, 8), start
    )
    assert next_reset("YEAR", None, start, utc(2028, 2, 29, 8)) == utc(2029, 2, 28, 8)


def test_every_sunday() -> None:
    start = utc(2024, 1, 3, 10, 0)  # a Wednesday
    assert usage_period_at("WEEK", "EverySunday", start, utc(2024, 1, 5)) == UsagePeriod(
        start, utc(2024, 1, 7), utc(2023, 12, 31)
    )
    assert usage_period_at("WEEK", ResetAnchor.EVERY_SUNDAY, start, utc(2024, 1, 7)) == UsagePeriod(
        utc(2024, 1, 7), utc(2024, 1, 14), utc(2023, 12, 31)
    )
    assert reset_times_between("WEEK", "EverySunday", start, utc(2024, 1, 1), utc(2024, 1, 28)) == [
        utc(2024, 1, 7),
        utc(2024, 1, 14),
        utc(2024, 1, 21),
    ]
    # Starting on a Sunday at midnight: the first window is already a full week.
    assert usage_period_at("WEEK", "EverySunday", utc(2024, 1, 7), utc(2024, 1, 7)).end == utc(2024, 1, 14)


def test_start_of_the_month_with_a_mid_month_start() -> None:
    start = utc(2024, 2, 15, 12, 34)
    assert usage_period_at("MONTH", "StartOfTheMonth", start, start) == UsagePeriod(
        start, utc(2024, 3, 1), utc(2024, 2, 1)
    )
    assert usage_period_at("MONTH", "StartOfTheMonth", start, utc(2024, 3, 1)) == UsagePeriod(
        utc(2024, 3, 1), utc(2024, 4, 1), utc(2024, 2, 1)
    )
    assert next_reset("MONTH", "StartOfTheMonth", start, utc(2024, 12, 31, 23, 59)) == utc(2025, 1, 1)


def test_day_and_hour_follow_the_subscription_clock() -> None:
    start = utc(2024, 3, 10, 6, 30, 15)
    assert usage_period_at("DAY", None, start, utc(2024, 3, 12, 5)) == UsagePeriod(
        utc(2024, 3, 11, 6, 30, 15), utc(2024, 3, 12, 6, 30, 15), start
    )
    assert usage_period_at("HOUR", None, start, utc(2024, 3, 12, 5)) == UsagePeriod(
        utc(2024, 3, 12, 4, 30, 15), utc(2024, 3, 12, 5, 30, 15), start
    )


def test_daylight_saving_changes_nothing() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        new_york = zoneinfo.ZoneInfo("America/New_York")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database on this machine")
    start = datetime(2024, 3, 9, 12, 0, tzinfo=new_york)  # 17:00 UTC, the day before the spring change
    w = usage_period_at("DAY", None, start, datetime(2024, 3, 10, 14, 0, tzinfo=new_york))  # 18:00 UTC
    assert w == UsagePeriod(utc(2024, 3, 10, 17), utc(2024, 3, 11, 17), utc(2024, 3, 9, 17))
    assert w.end - w.start == DAY


def test_trial_examples() -> None:
    assert trial_end(utc(2024, 1, 31, 10), 1, "MONTH") == utc(2024, 2, 29, 10)
    assert trial_end(utc(2023, 1, 31, 10), 1, "MONTH") == utc(2023, 2, 28, 10)
    assert trial_end(utc(2024, 1, 31, 10), 2, "MONTH") == utc(2024, 3, 31, 10)
    assert trial_end(utc(2024, 2, 20), 14, "DAY") == utc(2024, 3, 5)


# ---------------------------------------------------------------------------------------------
# Input validation

NAIVE = datetime(2024, 1, 1)
AWARE = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ensure_utc(NAIVE),
        lambda: add_months(NAIVE, 1),
        lambda: billing_period_at(NAIVE, "MONTHLY", AWARE),
        lambda: billing_period_at(AWARE, "MONTHLY", NAIVE),
        lambda: usage_period_at("MONTH", None, NAIVE, AWARE),
        lambda: usage_period_at("MONTH", None, AWARE, NAIVE),
        lambda: next_reset("DAY", None, AWARE, NAIVE),
        lambda: list(usage_periods_between("DAY", None, AWARE, NAIVE, AWARE)),
        lambda: list(usage_periods_between("DAY", None, AWARE, AWARE, NAIVE)),
        lambda: reset_times_between("DAY", None, NAIVE, AWARE, AWARE),
        lambda: reset_times_between("DAY", None, AWARE, NAIVE, AWARE),
        lambda: reset_times_between("DAY", None, AWARE, AWARE, NAIVE),
        lambda: trial_end(NAIVE, 1, "DAY"),
    ],
)
def test_naive_datetimes_are_rejected(call: Any) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call()


@pytest.mark.parametrize(
    ("period", "anchor"),
    [
        ("MONTH", "EverySunday"),
        ("WEEK", "StartOfTheMonth"),
        ("YEAR", "StartOfTheMonth"),
        ("YEAR", "EveryMonday"),
        ("DAY", "StartOfTheMonth"),
        ("HOUR", "EveryFriday"),
        ("MONTH", "EveryMonth"),
        ("MONTH", "subscriptionstart"),
        ("QUARTER", None),
    ],
)
def test_invalid_reset_configurations_are_rejected(period: str, anchor: str | None) -> None:
    with pytest.raises(ValueError):
        resolve_reset_anchor(period, anchor)
    with pytest.raises(ValueError):
        usage_period_at(period, anchor, AWARE, AWARE)


@pytest.mark.parametrize(("period", "anchor"), CONFIGS)
def test_valid_reset_configurations_resolve(period: str, anchor: str | None) -> None:
    resolved = resolve_reset_anchor(period, anchor)
    assert resolved == (anchor or ResetAnchor.SUBSCRIPTION_START)
    assert resolve_reset_anchor(ResetPeriod(period), resolved) is resolved


@given(configs, instants)
def test_a_window_at_the_start_begins_at_the_start(cfg: tuple[str, str | None], start: datetime) -> None:
    period, anchor = cfg
    w = usage_period_at(period, anchor, start, start)
    assert w.start == start
    assume(anchor not in CALENDAR_ANCHORED)
    assert w.anchor == start


@pytest.mark.parametrize(
    ("start", "duration", "units"),
    [
        (datetime(9999, 12, 20, tzinfo=UTC), 30, "DAY"),
        (datetime(9999, 12, 20, tzinfo=UTC), 1, "MONTH"),
        (datetime(2024, 1, 1, tzinfo=UTC), 10**9, "DAY"),
        (datetime(2024, 1, 1, tzinfo=UTC), 10**6, "MONTH"),
    ],
)
def test_a_trial_ending_after_year_9999_is_a_past_calendar_end(start: datetime, duration: int, units: str) -> None:
    with pytest.raises(PastCalendarEnd, match="after year 9999"):
        trial_end(start, duration, units)
