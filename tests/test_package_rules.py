"""Property tests for the pure package rules (src/entitle/catalog/packages/rules.py)."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.catalog.packages.pricing_rules import check_pricing, check_tiers, expand_charges
from entitle.catalog.packages.rules import (
    CycleError,
    EntitlementTerms,
    FeatureShape,
    Key,
    check_feature_entitlement,
    effective_package_entitlements,
    find_cycle,
    parent_chain,
    reset_configuration,
    with_addons,
)
from entitle.catalog.packages.schemas import ChargesIn, TierIn
from entitle.errors import InvalidArgument, NotFound

REFS = ["a", "b", "c", "d", "e"]
limits = st.decimals(min_value=0, max_value=10**6, places=0, allow_nan=False, allow_infinity=False)


@st.composite
def terms(draw: st.DrawFn, behavior: str | None = None, granted: bool | None = None) -> EntitlementTerms:
    kind = draw(st.sampled_from(["FEATURE", "FEATURE", "CREDIT"]))
    unlimited = kind == "FEATURE" and draw(st.booleans())
    limit = None if unlimited else draw(limits)
    return EntitlementTerms(
        type=kind,
        ref_id=draw(st.sampled_from(REFS)),
        behavior=behavior or draw(st.sampled_from(["Increment", "Override"])),
        is_granted=draw(st.booleans()) if granted is None else granted,
        usage_limit=limit if kind == "FEATURE" else None,
        has_unlimited_usage=unlimited,
        has_soft_limit=draw(st.booleans()),
        enum_values=draw(st.none() | st.frozensets(st.sampled_from("xyz"))) if kind == "FEATURE" else None,
        amount=limit if kind == "CREDIT" else None,
        cadence="MONTH" if kind == "CREDIT" else None,
    )


def level(strategy: st.SearchStrategy[EntitlementTerms] | None = None) -> st.SearchStrategy[list[EntitlementTerms]]:
    """One package's entitlements: at most one per (type, id)."""
    return st.lists(terms() if strategy is None else strategy, max_size=8, unique_by=lambda t: t.key)


def numeric(t: EntitlementTerms) -> tuple[bool, Decimal | None]:
    return (t.has_unlimited_usage, t.amount if t.type == "CREDIT" else t.usage_limit)


# ---------------------------------------------------------------------------------------------- inheritance


@given(st.lists(level(), min_size=1, max_size=5))
def test_the_nearest_definition_wins_whole(chain: list[list[EntitlementTerms]]) -> None:
    result = effective_package_entitlements(chain)
    assert set(result) == {t.key for lvl in chain for t in lvl}
    for key, got in result.items():
        nearest = next(t for lvl in chain for t in lvl if t.key == key)
        assert got == nearest


@given(level(), st.lists(level(), max_size=4))
def test_a_plan_keeps_its_own_entitlements(
    own: list[EntitlementTerms], ancestors: list[list[EntitlementTerms]]
) -> None:
    result = effective_package_entitlements([own, *ancestors])
    for t in own:
        assert result[t.key] == t


@given(st.lists(level(), min_size=2, max_size=5), st.integers(min_value=1, max_value=4))
def test_inheriting_from_an_already_merged_parent_is_the_same(chain: list[list[EntitlementTerms]], cut: int) -> None:
    cut = min(cut, len(chain) - 1)
    merged_parent = list(effective_package_entitlements(chain[cut:]).values())
    assert effective_package_entitlements([*chain[:cut], merged_parent]) == effective_package_entitlements(chain)


def test_inheritance_example() -> None:
    free = [EntitlementTerms("FEATURE", "seats", usage_limit=Decimal(1)), EntitlementTerms("FEATURE", "sso")]
    pro = [EntitlementTerms("FEATURE", "seats", usage_limit=Decimal(10))]
    enterprise = [
        EntitlementTerms("FEATURE", "seats", has_unlimited_usage=True),
        EntitlementTerms("FEATURE", "sso", is_granted=False),
    ]
    assert effective_package_entitlements([pro, free])[("FEATURE", "seats")].usage_limit == 10
    assert effective_package_entitlements([pro, free])[("FEATURE", "sso")].is_granted
    mine = effective_package_entitlements([enterprise, pro, free])
    assert mine[("FEATURE", "seats")].has_unlimited_usage
    assert not mine[("FEATURE", "sso")].is_granted  # a child can withhold what its parent grants


# ---------------------------------------------------------------------------------------------- add-ons


def as_map(items: list[EntitlementTerms]) -> dict[Key, EntitlementTerms]:
    return {t.key: t for t in items}


@given(level(), st.lists(st.tuples(level(), st.just(0)), max_size=3))
def test_no_addons_or_zero_quantities_change_nothing(base: list[EntitlementTerms], addons: Any) -> None:
    assert with_addons(as_map(base), []) == as_map(base)
    assert with_addons(as_map(base), addons) == as_map(base)


@given(level(), level(terms(behavior="Increment", granted=True)), st.integers(min_value=1, max_value=20))
def test_quantity_n_is_n_copies(base: list[EntitlementTerms], addon: list[EntitlementTerms], n: int) -> None:
    once = with_addons(as_map(base), [(addon, n)])
    copies = with_addons(as_map(base), [(addon, 1)] * n)
    assert {k: numeric(v) for k, v in once.items()} == {k: numeric(v) for k, v in copies.items()}


@given(level(), st.lists(st.tuples(level(), st.integers(0, 5)), max_size=4), st.randoms())
def test_the_order_of_addons_does_not_matter(base: list[EntitlementTerms], addons: Any, rnd: random.Random) -> None:
    shuffled = list(addons)
    rnd.shuffle(shuffled)
    a, b = with_addons(as_map(base), addons), with_addons(as_map(base), shuffled)
    assert set(a) == set(b)
    for key in a:
        assert numeric(a[key]) == numeric(b[key])
        assert a[key].enum_values == b[key].enum_values


@given(
    level(terms(granted=True)), st.lists(st.tuples(level(terms(behavior="Increment")), st.integers(0, 5)), max_size=4)
)
def test_increments_never_take_away(base: list[EntitlementTerms], addons: Any) -> None:
    result = with_addons(as_map(base), addons)
    assert set(as_map(base)) <= set(result)
    for t in base:
        got = result[t.key]
        unlimited, limit = numeric(got)
        if t.has_unlimited_usage:
            assert unlimited
        elif not unlimited:
            base_limit = numeric(t)[1]
            assert limit is not None and base_limit is not None and limit >= base_limit
        assert (t.enum_values or frozenset()) <= (got.enum_values or frozenset())


@given(
    level(),
    level(),
    st.lists(st.tuples(level(terms(behavior="Override", granted=True)), st.integers(1, 3)), min_size=1, max_size=3),
)
def test_an_override_ignores_the_plan(
    plan_a: list[EntitlementTerms], plan_b: list[EntitlementTerms], overrides: Any
) -> None:
    a, b = with_addons(as_map(plan_a), overrides), with_addons(as_map(plan_b), overrides)
    for key in {t.key for lvl, _ in overrides for t in lvl}:
        assert numeric(a[key]) == numeric(b[key])


def test_addon_examples() -> None:
    plan = as_map(
        [
            EntitlementTerms("FEATURE", "seats", usage_limit=Decimal(5)),
            EntitlementTerms("CREDIT", "tok", amount=Decimal(100), cadence="MONTH"),
        ]
    )
    seats = [EntitlementTerms("FEATURE", "seats", usage_limit=Decimal(10))]
    credits = [EntitlementTerms("CREDIT", "tok", amount=Decimal("2.5"), cadence="MONTH")]
    unlimited = [EntitlementTerms("FEATURE", "seats", behavior="Override", has_unlimited_usage=True)]
    region = [EntitlementTerms("FEATURE", "region", enum_values=frozenset({"apac"}))]
    got = with_addons(plan, [(seats, 3), (credits, 4), (region, 1)])
    assert got[("FEATURE", "seats")].usage_limit == 35
    assert got[("CREDIT", "tok")].amount == Decimal(110)
    assert got[("FEATURE", "region")].enum_values == frozenset({"apac"})  # granted from zero
    assert with_addons(plan, [(unlimited, 1), (seats, 1)])[("FEATURE", "seats")].has_unlimited_usage
    small_override = [EntitlementTerms("FEATURE", "seats", behavior="Override", usage_limit=Decimal(2))]
    assert with_addons(plan, [(small_override, 1)])[("FEATURE", "seats")].usage_limit == 2
    not_granted = [EntitlementTerms("FEATURE", "seats", usage_limit=Decimal(10), is_granted=False)]
    assert with_addons(plan, [(not_granted, 1)]) == plan
    with pytest.raises(ValueError):
        with_addons(plan, [(seats, -1)])


# ---------------------------------------------------------------------------------------------- graphs


@given(st.dictionaries(st.sampled_from(REFS), st.none() | st.sampled_from(REFS)), st.sampled_from(REFS))
def test_parent_chain_follows_parents_or_reports_the_cycle(parent_of: dict[str, str | None], start: str) -> None:
    # Reference: walk at most len(REFS) steps and see whether a node repeats.
    walk = [start]
    while (nxt := parent_of.get(walk[-1])) is not None and nxt not in walk:
        walk.append(nxt)
    cyclic = parent_of.get(walk[-1]) is not None
    if cyclic:
        with pytest.raises(CycleError) as err:
            parent_chain(start, parent_of)
        assert err.value.path[-1] in err.value.path[:-1]
    else:
        assert parent_chain(start, parent_of) == walk


@given(st.dictionaries(st.sampled_from(REFS), st.lists(st.sampled_from(REFS), max_size=3)), st.sampled_from(REFS))
def test_find_cycle_finds_a_way_back_exactly_when_there_is_one(edges: dict[str, list[str]], start: str) -> None:
    reachable: set[str] = set()
    frontier = list(edges.get(start, []))
    while frontier:
        node = frontier.pop()
        if node not in reachable:
            reachable.add(node)
            frontier.extend(edges.get(node, []))
    cycle = find_cycle(start, edges)
    assert (cycle is not None) == (start in reachable)
    if cycle is not None:
        assert cycle[0] == cycle[-1] == start
        assert all(b in edges.get(a, []) for a, b in itertools.pairwise(cycle))


# ---------------------------------------------------------------------------------------------- tiers, resets, features


def tier(up_to: Decimal | None) -> TierIn:
    return TierIn.model_validate({"upTo": up_to, "unitPrice": {"amount": 1}})


@given(st.lists(st.decimals(min_value=1, max_value=10**6, places=2), max_size=6, unique=True))
def test_ascending_tiers_with_an_open_end_pass(bounds: list[Decimal]) -> None:
    tiers = [tier(b) for b in sorted(bounds)] + [tier(None)]
    check_tiers(tiers, "t")
    if len(bounds) >= 2:
        with pytest.raises(InvalidArgument):
            check_tiers([tier(b) for b in sorted(bounds, reverse=True)] + [tier(None)], "t")
    with pytest.raises(InvalidArgument):
        check_tiers([*tiers[:-1], tier(Decimal(10**7))], "t")  # the last one must be open-ended
    if bounds:
        with pytest.raises(InvalidArgument):
            check_tiers([tier(None), *tiers], "t")  # only the last may be open-ended


def test_tier_needs_a_price() -> None:
    with pytest.raises(InvalidArgument):
        check_tiers([TierIn.model_validate({})], "t")
    with pytest.raises(InvalidArgument):
        check_tiers([], "t")


@pytest.mark.parametrize(
    ("period", "anchors", "expected"),
    [
        (None, (None, None, None), None),
        ("MONTH", (None, None, None), {"accordingTo": "SubscriptionStart"}),
        ("MONTH", ("StartOfTheMonth", None, None), {"accordingTo": "StartOfTheMonth"}),
        ("WEEK", (None, "EveryFriday", None), {"accordingTo": "EveryFriday"}),
        ("YEAR", (None, None, "SubscriptionStart"), {"accordingTo": "SubscriptionStart"}),
        ("DAY", (None, None, None), None),
        ("HOUR", (None, None, None), None),
        ("MONTH", (None, "EveryFriday", None), InvalidArgument),
        ("WEEK", ("StartOfTheMonth", None, None), InvalidArgument),
        ("DAY", ("SubscriptionStart", None, None), InvalidArgument),
        ("HOUR", (None, None, "SubscriptionStart"), InvalidArgument),
        (None, ("SubscriptionStart", None, None), InvalidArgument),
    ],
)
def test_reset_configuration_matches_its_period(period: str | None, anchors: Any, expected: Any) -> None:
    if expected is InvalidArgument:
        with pytest.raises(InvalidArgument):
            reset_configuration(period, *anchors)
    else:
        assert reset_configuration(period, *anchors) == expected


BOOLEAN = FeatureShape("sso", "BOOLEAN")
SEATS = FeatureShape("seats", "NUMBER", "FLUCTUATING")
CALLS = FeatureShape("calls", "NUMBER", "INCREMENTAL")
RETENTION = FeatureShape("retention", "NUMBER")
REGION = FeatureShape("region", "ENUM", enum_values=frozenset({"eu", "us"}))


@pytest.mark.parametrize(
    ("feature", "fields", "ok"),
    [
        (BOOLEAN, {}, True),
        (BOOLEAN, {"usage_limit": Decimal(1)}, False),
        (BOOLEAN, {"has_soft_limit": True}, False),
        (SEATS, {"usage_limit": Decimal(0)}, True),
        (SEATS, {"has_unlimited_usage": True}, True),
        (SEATS, {}, False),
        (SEATS, {"usage_limit": Decimal(3), "reset_period": "MONTH"}, False),
        (CALLS, {"usage_limit": Decimal(3), "reset_period": "MONTH"}, True),
        (RETENTION, {"usage_limit": Decimal(3), "reset_period": "DAY"}, False),
        (SEATS, {"usage_limit": Decimal(3), "enum_values": ["eu"]}, False),
        (REGION, {"enum_values": ["eu"]}, True),
        (REGION, {"enum_values": ["eu", "eu"]}, False),
        (REGION, {"enum_values": ["moon"]}, False),
        (REGION, {}, False),
        (FeatureShape("gone", "BOOLEAN", archived=True), {}, False),
    ],
)
def test_feature_entitlement_shapes(feature: FeatureShape, fields: dict[str, Any], ok: bool) -> None:
    args: dict[str, Any] = {
        "usage_limit": None,
        "has_unlimited_usage": False,
        "has_soft_limit": False,
        "reset_period": None,
        "enum_values": None,
        **fields,
    }
    if ok:
        check_feature_entitlement(feature, **args)
    else:
        with pytest.raises(InvalidArgument):
            check_feature_entitlement(feature, **args)


# ---------------------------------------------------------------------------------------------- pricing


FEATURES = {f.ref_id: f for f in (BOOLEAN, SEATS, CALLS, RETENTION, REGION)}
periods = st.lists(
    st.tuples(st.sampled_from(["MONTHLY", "ANNUALLY"]), st.decimals(min_value=0, max_value=10**4, places=2)),
    min_size=1,
    max_size=2,
    unique_by=lambda p: p[0],
)


@given(periods, periods, st.sampled_from(["seats", "calls"]))
def test_one_charge_per_price_period_with_unique_keys(flat: Any, per_unit: Any, feature: str) -> None:
    req = ChargesIn.model_validate(
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "pricePeriods": [{"billingPeriod": p, "price": {"amount": a}} for p, a in flat],
                },
                {
                    "billingModel": "PER_UNIT",
                    "featureId": feature,
                    "pricePeriods": [{"billingPeriod": p, "price": {"amount": a}} for p, a in per_unit],
                },
            ],
            "minimumSpend": [{"billingPeriod": "MONTHLY", "minimum": {"amount": 5}}],
        }
    )
    check_pricing(req, FEATURES)
    specs = expand_charges(req)
    assert len(specs) == len(flat) + len(per_unit) + 1
    assert len({s.key for s in specs}) == len(specs)
    assert sorted(s.price_amount for s in specs if s.billing_model == "FLAT_FEE") == sorted(a for _, a in flat)  # type: ignore[type-var]


def test_pricing_references_unknown_features() -> None:
    req = ChargesIn.model_validate(
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "ghost",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        }
    )
    with pytest.raises(NotFound):
        check_pricing(req, FEATURES)
