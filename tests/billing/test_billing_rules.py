"""Pure billing rules: subscription item edits, the per-customer subscription limit, usage per period."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.billing import rules
from entitle.errors import InvalidArgument
from entitle.subscriptions import rules as subscription_rules

PRICES = st.sampled_from(["price_a", "price_b", "price_c", "price_d", "price_e"])
QUANTITIES = st.one_of(st.none(), st.integers(min_value=1, max_value=5))


@st.composite
def current_items(draw: st.DrawFn) -> list[rules.CurrentItem]:
    prices = draw(st.lists(PRICES, unique=True, max_size=4))
    return [rules.CurrentItem(f"si_{i}", p, draw(QUANTITIES)) for i, p in enumerate(prices)]


@st.composite
def wanted_items(draw: st.DrawFn) -> list[rules.WantedItem]:
    prices = draw(st.lists(PRICES, unique=True, max_size=4))
    return [rules.WantedItem(p, draw(QUANTITIES)) for p in prices]


def _bag(items: list[rules.WantedItem]) -> Counter[tuple[str, int | None]]:
    return Counter((i.price, i.quantity) for i in items)


@given(current_items(), wanted_items())
def test_item_changes_turn_what_stripe_holds_into_what_is_wanted(
    current: list[rules.CurrentItem], wanted: list[rules.WantedItem]
) -> None:
    changes = rules.item_changes(current, wanted)
    after = rules.apply_item_changes(current, changes)
    # Metered items (quantity None) keep whatever quantity Stripe shows; the rest match exactly.
    held = {i.price: i.quantity for i in current}
    expected = [
        rules.WantedItem(w.price, held[w.price] if w.quantity is None and w.price in held else w.quantity)
        for w in wanted
    ]
    assert _bag(after) == _bag(expected)
    # Each existing item is touched at most once, and nothing is sent when nothing differs.
    touched = [c.id for c in changes if c.id is not None]
    assert len(touched) == len(set(touched))
    if _bag([rules.WantedItem(c.price, c.quantity) for c in current]) == _bag(expected):
        assert changes == []


def test_a_plan_change_replaces_the_item_in_place_and_an_addon_removal_deletes_it() -> None:
    current = [rules.CurrentItem("si_plan", "price_pro", 1), rules.CurrentItem("si_addon", "price_seats", 3)]
    changes = rules.item_changes(current, [rules.WantedItem("price_team", 1)])
    assert changes == [
        rules.ItemChange(id="si_plan", price="price_team", quantity=1),
        rules.ItemChange(id="si_addon", deleted=True),
    ]
    assert rules.item_changes(current, [rules.WantedItem("price_pro", 1), rules.WantedItem("price_seats", 5)]) == [
        rules.ItemChange(id="si_addon", quantity=5)
    ]
    added = rules.item_changes(current[:1], [rules.WantedItem("price_pro", 1), rules.WantedItem("price_x", 2)])
    assert added == [rules.ItemChange(price="price_x", quantity=2)]


def test_the_subscription_limit_refuses_the_one_past_it() -> None:
    rules.check_subscription_limit(499)
    with pytest.raises(rules.TooManySubscriptions) as caught:
        rules.check_subscription_limit(500)
    assert caught.value.code == "BILLING_SUBSCRIPTION_LIMIT_REACHED" and caught.value.status_code == 409
    rules.check_subscription_limit(1, limit=2)
    with pytest.raises(rules.TooManySubscriptions):
        rules.check_subscription_limit(2, limit=2)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_window_that_resets_with_the_period_bills_its_counter() -> None:
    start, end = T0, T0 + timedelta(days=31)
    windows = [(T0 - timedelta(days=31), Decimal(90)), (T0, Decimal(40)), (end, Decimal(7))]
    assert rules.period_usage(windows, start, end, (T0 - timedelta(days=31), Decimal(90))) == (
        Decimal(40),
        T0,
        Decimal(40),
    )


def test_a_running_total_bills_its_growth_past_the_watermark() -> None:
    forever = datetime(1970, 1, 1, tzinfo=UTC)
    first = rules.period_usage([(forever, Decimal(25))], T0, T0 + timedelta(days=31), None)
    assert first == (Decimal(25), forever, Decimal(25))
    second = rules.period_usage(
        [(forever, Decimal(60))], T0 + timedelta(days=31), T0 + timedelta(days=59), (forever, Decimal(25))
    )
    assert second == (Decimal(35), forever, Decimal(60))
    # Set lower in between: nothing billed, never a negative amount.
    assert rules.period_usage([(forever, Decimal(10))], T0, T0 + timedelta(days=1), (forever, Decimal(25)))[0] == 0


@given(st.lists(st.decimals(min_value=0, max_value=10**6, places=3), min_size=1, max_size=12))
def test_reporting_a_running_total_period_by_period_bills_its_final_value_once(increments: list[Decimal]) -> None:
    forever = datetime(1970, 1, 1, tzinfo=UTC)
    total, billed = Decimal(0), Decimal(0)
    previous: tuple[datetime, Decimal] | None = None
    for i, step in enumerate(increments):
        total += step
        start = T0 + timedelta(days=30 * i)
        value, window, cumulative = rules.period_usage([(forever, total)], start, start + timedelta(days=30), previous)
        assert window is not None
        previous = (window, cumulative)
        billed += value
    assert billed == total


def test_identifiers_and_names_are_stable_and_distinct() -> None:
    a = rules.usage_identifier("sub-1", "f-calls", T0)
    assert a == rules.usage_identifier("sub-1", "f-calls", T0)
    assert a != rules.usage_identifier("sub-1", "f-calls", T0 + timedelta(days=31))
    assert a != rules.usage_identifier("sub-2", "f-calls", T0)
    assert len(a) <= 100
    assert rules.meter_event_name("development", "f-calls") != rules.meter_event_name("production", "f-calls")
    assert rules.coupon_billing_ref("development", "10% off!").startswith("entitle_10-off-_")


def test_billing_information_is_checked() -> None:
    assert subscription_rules.days_until_due({"invoiceDaysUntilDue": 14}) == 14
    assert subscription_rules.days_until_due(None) is None
    for bad in ("14", 1.5, -1, True):
        with pytest.raises(InvalidArgument):
            subscription_rules.days_until_due({"invoiceDaysUntilDue": bad})
    assert rules.proration_of({"prorationBehavior": "NONE"}) == "none"
    with pytest.raises(InvalidArgument):
        rules.proration_of({"prorationBehavior": "SOMETIMES"})


@pytest.mark.parametrize(
    ("language", "locales"),
    [
        ("fr-CA", ("fr-CA",)),
        ("fr-FR", ("fr",)),
        ("en_US", ("en",)),
        ("pt-br", ("pt-BR",)),
        ("ZH-tw", ("zh-TW",)),
        (" de ", ("de",)),
        ("tlh", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_a_language_becomes_the_stripe_locale_it_names_or_its_base_or_none(
    language: str | None, locales: tuple[str, ...]
) -> None:
    assert rules.stripe_locales(language) == locales
    assert set(locales) <= rules.STRIPE_LOCALES
