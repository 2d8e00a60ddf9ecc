from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.subscriptions.rules import (
    LIVE,
    TRANSITIONS,
    Event,
    IllegalTransition,
    Status,
    billing_country,
    prorated_amount,
    transition,
)

TERMINAL = {Status.CANCELED, Status.EXPIRED}


@given(st.sampled_from(list(Status)), st.sampled_from(list(Event)))
def test_every_pair_is_either_listed_or_refused(status: Status, event: Event) -> None:
    if (status, event) in TRANSITIONS:
        assert transition(status, event) == TRANSITIONS[(status, event)]
    else:
        with pytest.raises(IllegalTransition):
            transition(status, event)


@given(st.sampled_from(sorted(TERMINAL)), st.sampled_from(list(Event)))
def test_nothing_leaves_an_ended_subscription(status: Status, event: Event) -> None:
    with pytest.raises(IllegalTransition):
        transition(status, event)


def test_documented_paths() -> None:
    assert transition("PAYMENT_PENDING", "PAYMENT_SUCCEEDED") == Status.ACTIVE
    assert transition("PAYMENT_PENDING", "PAYMENT_FAILED") == Status.PAYMENT_PENDING
    assert transition("IN_TRIAL", "TRIAL_ENDED") == Status.EXPIRED
    assert transition("IN_TRIAL", "TRIAL_CONVERTED") == Status.ACTIVE
    assert transition("NOT_STARTED", "START") == Status.ACTIVE
    assert Status.PAYMENT_PENDING not in LIVE


start = datetime(2026, 1, 1, tzinfo=UTC)
amounts = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False, allow_infinity=False)


@given(amounts, st.integers(min_value=0, max_value=31 * 24 * 3600))
def test_proration_is_a_share_of_the_amount(amount: Decimal, offset: int) -> None:
    end = start + timedelta(days=31)
    at = start + timedelta(seconds=offset)
    part = prorated_amount(amount, "usd", start, end, at)
    assert Decimal(0) <= part <= amount
    assert part == part.quantize(Decimal("0.01"))
    rest = prorated_amount(amount, "usd", start, end, start + (end - at))  # the mirror instant
    assert abs(part + rest - amount) <= Decimal("0.01")


@given(amounts, st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=30))
def test_later_changes_cost_less(amount: Decimal, a: int, b: int) -> None:
    end = start + timedelta(days=31)
    early, late = sorted((a, b))
    assert prorated_amount(amount, "usd", start, end, start + timedelta(days=early)) >= prorated_amount(
        amount, "usd", start, end, start + timedelta(days=late)
    )


def test_proration_examples() -> None:
    end = start + timedelta(days=30)
    assert prorated_amount(Decimal("30"), "usd", start, end, start + timedelta(days=10)) == Decimal("20.00")
    assert prorated_amount(Decimal("3000"), "jpy", start, end, start + timedelta(days=15)) == Decimal("1500")
    assert prorated_amount(Decimal("10"), "usd", start, end, end) == Decimal("0.00")


COUNTRY = st.sampled_from([None, "", "DE", "FR", "US"])


@given(st.lists(st.tuples(st.booleans(), COUNTRY), max_size=6), COUNTRY)
def test_a_subscribed_country_wins_over_the_one_asked_for(
    subscribed: list[tuple[bool, str | None]], asked: str | None
) -> None:
    country = billing_country(subscribed, asked)
    of_product = [c for same, c in subscribed if same and c]
    anywhere = [c for _, c in subscribed if c]
    if of_product:
        assert country == of_product[-1]  # the newest subscription of the product asked about
    elif anywhere:
        assert country == anywhere[-1]
    else:
        assert country == (asked or None)
    # Nothing but a subscribed country or the one asked for; never "" (no country).
    assert country is None or country in {c for _, c in subscribed} | {asked}
    assert country != ""
