"""The pure rules of recurring credits and credit-priced usage, for any dates, cadences and amounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from entitle.credits import rules
from entitle.periods import add_months

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))
cadences = st.sampled_from(["MONTH", "YEAR"])
credit_amounts = st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False)


@given(instants, st.integers(0, 400), st.integers(0, 5000), cadences)
def test_grant_periods_tile_time_from_the_anchor(
    start: datetime, trial_days: int, later_days: int, cadence: str
) -> None:
    anchor = start + timedelta(days=trial_days)
    now = start + timedelta(days=later_days, seconds=later_days)
    begin, end = rules.grant_period(cadence, start, anchor, now)
    assert begin <= now < end and start <= begin
    months = rules.CADENCE_MONTHS[cadence]
    if now >= anchor:
        # A period boundary of the anchor's schedule (no drift), one cadence long.
        k = next(k for k in range(0, 12 * 100, months) if add_months(anchor, k) == begin)
        assert end == add_months(anchor, k + months)
    else:  # the trial: cut at the anchor, never overlapping the paid cycle's first period
        assert end <= anchor
    # The next period starts where this one ends.
    assert rules.grant_period(cadence, start, anchor, end)[0] == end


@given(credit_amounts, st.lists(st.tuples(credit_amounts, credit_amounts), min_size=1, max_size=6))
def test_regranting_gives_exactly_the_target_over_a_period(
    first: Decimal, steps: list[tuple[Decimal, Decimal]]
) -> None:
    """Whatever the changes of terms and the consumption between them, what the period's grants give in
    the end is the last target, or what was already used when that is more."""
    live: list[list[Decimal]] = [[first, rules.ZERO]] if first > 0 else []  # [amount, used] of live grants
    ended_used = rules.ZERO  # what voided grants had given
    for target, spend in steps:
        available = sum((a - u for a, u in live), rules.ZERO)
        take = min(spend, available)
        for g in live:  # consume, grant by grant
            used = min(take, g[0] - g[1])
            g[1] += used
            take -= used
        granted = sum((a for a, _ in live), rules.ZERO) + ended_used
        used_total = sum((u for _, u in live), rules.ZERO) + ended_used
        change = rules.regrant(target, granted, used_total)
        if change.void:
            ended_used += sum((u for _, u in live), rules.ZERO)
            live = []
        assert change.new_amount >= 0
        if change.new_amount > 0:
            live.append([change.new_amount, rules.ZERO])
        given_now = sum((a for a, _ in live), rules.ZERO) + ended_used
        assert given_now == max(target, used_total)


@given(st.decimals(min_value=0, max_value=10**6, places=5), st.decimals(min_value=0, max_value=10**4, places=6))
def test_credit_rates_round_half_even_at_six_places(units: Decimal, rate: Decimal) -> None:
    cost = rules.credits_for(units, rate)
    exact = units * rate
    assert rules.places_problem(cost) is None
    assert abs(cost - exact) <= Decimal("0.0000005")
    if abs(cost - exact) == Decimal("0.0000005"):  # a tie goes to the even last digit
        assert int(cost.scaleb(rules.PLACES)) % 2 == 0
    if exact == exact.quantize(rules.QUANTUM):
        assert cost == exact


def test_half_even_ties() -> None:
    assert rules.credits_for(Decimal("0.0000005"), Decimal(1)) == 0
    assert rules.credits_for(Decimal("0.0000015"), Decimal(1)) == Decimal("0.000002")
    assert rules.credits_for(Decimal(3), Decimal("0.333333")) == Decimal("0.999999")
