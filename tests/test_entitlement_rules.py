"""Property tests for the entitlement calculation (catalog/packages/allowance.py, entitlements/rules.py)."""

from __future__ import annotations

from decimal import Decimal
from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

from entitle.catalog.packages.allowance import (
    AddonGrant,
    Allowance,
    increment,
    more_generous,
    most_generous,
    subscription_allowance,
)
from entitle.entitlements.rules import DeniedReason, decide

limits = st.decimals(min_value=0, max_value=10**9, places=0, allow_nan=False, allow_infinity=False)
enum_sets = st.none() | st.frozensets(st.sampled_from(["a", "b", "c", "d"]), max_size=4)
allowances = st.builds(
    Allowance,
    usage_limit=st.none() | limits,
    has_unlimited=st.booleans(),
    has_soft_limit=st.booleans(),
    enum_values=enum_sets,
)
numeric = st.builds(Allowance, usage_limit=limits, has_unlimited=st.booleans(), has_soft_limit=st.booleans())
usage = st.decimals(min_value=0, max_value=2 * 10**9, places=0, allow_nan=False, allow_infinity=False)


def rank(a: Allowance) -> tuple[int, Decimal]:
    if a.has_unlimited:
        return (3, Decimal(0))
    if a.usage_limit is None:
        return (0, Decimal(0))
    return (2 if a.has_soft_limit else 1, a.usage_limit)


@given(allowances, allowances)
def test_the_generous_choice_is_at_least_as_generous_as_either(a: Allowance, b: Allowance) -> None:
    c = more_generous(a, b)
    assert rank(c) == max(rank(a), rank(b))
    assert set(c.enum_values or ()) == set(a.enum_values or ()) | set(b.enum_values or ())


@given(st.lists(allowances, min_size=1, max_size=6), st.randoms())
def test_order_of_sources_does_not_matter(sources: list[Allowance], rnd: object) -> None:
    shuffled = list(sources)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    x, y = most_generous(sources), most_generous(shuffled)
    assert x is not None and y is not None
    assert rank(x) == rank(y)
    assert x.enum_values == y.enum_values


@given(numeric, numeric, st.integers(min_value=0, max_value=100))
def test_increment_adds_limit_times_quantity(base: Allowance, addon: Allowance, qty: int) -> None:
    result = increment(base, addon, qty)
    if base.has_unlimited or addon.has_unlimited:
        assert result.has_unlimited and result.usage_limit is None
    else:
        assert result.usage_limit == (base.usage_limit or 0) + (addon.usage_limit or 0) * qty


@given(
    st.none() | numeric,
    st.lists(st.tuples(numeric, st.sampled_from(["Increment", "Override"]), st.integers(0, 5)), max_size=4),
)
def test_override_addons_replace_the_plan_and_increments_stack_on_top(
    plan: Allowance | None, grants: list[tuple[Allowance, str, int]]
) -> None:
    addons = [AddonGrant(a, behavior, qty) for a, behavior, qty in grants]
    result = subscription_allowance(plan, addons)
    live = [g for g in addons if g.quantity > 0]
    overrides = [g.allowance for g in live if g.behavior == "Override"]
    base = most_generous(overrides) if overrides else plan
    increments = [g for g in live if g.behavior == "Increment"]
    expected = reduce(lambda acc, g: increment(acc, g.allowance, g.quantity), increments, base or Allowance())
    if base is None and not increments:
        assert result is None
    else:
        assert result is not None
        assert (result.has_unlimited, result.usage_limit) == (expected.has_unlimited, expected.usage_limit)


def test_subscription_override_wins_over_everything() -> None:
    override = Allowance(usage_limit=Decimal(3))
    plan = Allowance(has_unlimited=True)
    addon = AddonGrant(Allowance(usage_limit=Decimal(100)), "Increment", 2)
    assert subscription_allowance(plan, [addon], override) == override


@given(numeric, usage, st.none() | usage)
def test_metered_check_matches_the_documented_inequality(a: Allowance, current: Decimal, req: Decimal | None) -> None:
    d = decide("NUMBER", "INCREMENTAL", a, current_usage=current, requested_usage=req)
    if a.has_unlimited or a.has_soft_limit:
        assert d.is_granted
    else:
        assert a.usage_limit is not None
        expected = current < a.usage_limit if req is None else current + req <= a.usage_limit
        assert d.is_granted == expected
        assert d.reason == (None if expected else DeniedReason.USAGE_EXCEEDING_LIMIT)


@given(numeric, numeric, usage, st.none() | usage)
def test_a_more_generous_allowance_never_turns_a_grant_into_a_denial(
    a: Allowance, b: Allowance, current: Decimal, req: Decimal | None
) -> None:
    if decide("NUMBER", "INCREMENTAL", a, current_usage=current, requested_usage=req).is_granted:
        bigger = more_generous(a, b)
        assert decide("NUMBER", "INCREMENTAL", bigger, current_usage=current, requested_usage=req).is_granted


@given(numeric, usage, usage, st.none() | usage)
def test_more_usage_never_turns_a_denial_into_a_grant(
    a: Allowance, current: Decimal, extra: Decimal, req: Decimal | None
) -> None:
    if not decide("NUMBER", "FLUCTUATING", a, current_usage=current, requested_usage=req).is_granted:
        assert not decide("NUMBER", "FLUCTUATING", a, current_usage=current + extra, requested_usage=req).is_granted


@given(st.frozensets(st.sampled_from("abcd")), st.lists(st.sampled_from("abcde"), max_size=3))
def test_enum_check_is_subset(allowed: frozenset[str], wanted: list[str]) -> None:
    d = decide("ENUM", "None", Allowance(enum_values=allowed), requested_values=wanted)
    assert d.is_granted == set(wanted).issubset(allowed)


def test_examples() -> None:
    ten = Allowance(usage_limit=Decimal(10))
    assert decide("NUMBER", "INCREMENTAL", ten, current_usage=Decimal(9)).is_granted
    assert not decide("NUMBER", "INCREMENTAL", ten, current_usage=Decimal(10)).is_granted
    assert decide("NUMBER", "INCREMENTAL", ten, current_usage=Decimal(7), requested_usage=Decimal(3)).is_granted
    assert not decide("NUMBER", "INCREMENTAL", ten, current_usage=Decimal(7), requested_usage=Decimal(4)).is_granted
    retention = Allowance(usage_limit=Decimal(30))
    assert decide("NUMBER", "None", retention, requested_usage=Decimal(30)).is_granted
    assert not decide("NUMBER", "None", retention, requested_usage=Decimal(31)).is_granted
    assert decide("NUMBER", "None", None).reason == DeniedReason.NO_FEATURE_ENTITLEMENT
    assert decide("BOOLEAN", "None", Allowance()).is_granted
