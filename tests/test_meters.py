from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.usage.meters import aggregate, compile_meter, condition_holds, matches, measure
from entitle.usage.rules import (
    USAGE_MAX,
    Numbers,
    OutOfRange,
    Tally,
    fold,
    fold_checked,
    merge,
    step,
    usage_number,
)

names = st.sampled_from(["completion", "embedding", "upload"])
dims = st.fixed_dictionaries(
    {},
    optional={
        "tokens": st.integers(min_value=-5, max_value=500) | st.text(max_size=3),
        "model": st.sampled_from(["small", "large", "xl"]),
        "cached": st.booleans(),
    },
)
events = st.lists(st.tuples(names, dims), max_size=40)


def meter(function: str, field: str | None = "tokens", filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"aggregation": {"function": function, "field": field}, "filters": filters or []}


ONLY_COMPLETIONS = [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "completion"}]}]


@given(events, events)
def test_count_and_sum_add_up_across_batches(first: list[Any], second: list[Any]) -> None:
    # What lets ingestion add a batch's contribution instead of rescanning the window.
    for function in ("COUNT", "SUM"):
        m = meter(function, filters=ONLY_COMPLETIONS)
        assert aggregate(m, first) + aggregate(m, second) == aggregate(m, first + second)


@given(events)
def test_count_counts_matching_events(batch: list[Any]) -> None:
    assert aggregate(meter("COUNT", None, ONLY_COMPLETIONS), batch) == sum(1 for n, _ in batch if n == "completion")


def _as_number(value: Any) -> Decimal | None:
    """A dimension reads as a number when it is one, or is text spelling a finite one ("7", "1e3")."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


@given(events)
def test_max_min_avg_unique_agree_with_python(batch: list[Any]) -> None:
    values = [v for _, d in batch if (v := _as_number(d.get("tokens"))) is not None]
    assert aggregate(meter("MAX"), batch) == (max(values) if values else 0)
    assert aggregate(meter("MIN"), batch) == (min(values) if values else 0)
    assert aggregate(meter("AVG"), batch) == (sum(values) / len(values) if values else 0)
    assert aggregate(meter("UNIQUE", "model"), batch) == len({d["model"] for _, d in batch if "model" in d})


@given(names, dims)
def test_or_of_filters_and_of_conditions(name: str, d: dict[str, Any]) -> None:
    large = {"field": "model", "operation": "EQUALS", "value": "large"}
    cached = {"field": "dimensions.cached", "operation": "EQUALS", "value": "true"}
    completion = {"field": "eventName", "operation": "EQUALS", "value": "completion"}
    m = {"filters": [{"conditions": [completion, large]}, {"conditions": [cached]}]}
    expected = (name == "completion" and d.get("model") == "large") or d.get("cached") is True
    assert matches(m, name, d) == expected


def test_condition_operations() -> None:
    d = {"tokens": 42, "model": "gpt-large", "region": None}
    holds = [
        ("tokens", "GREATER_THAN", "41", None),
        ("tokens", "LESS_THAN_OR_EQUAL", "42", None),
        ("model", "CONTAINS", "large", None),
        ("model", "STARTS_WITH", "gpt", None),
        ("model", "ENDS_WITH", "large", None),
        ("model", "IN", None, ["a", "gpt-large"]),
        ("region", "IS_NULL", None, None),
        ("missing", "IS_NULL", None, None),
        ("tokens", "IS_NOT_NULL", None, None),
        ("model", "NOT_EQUALS", "small", None),
    ]
    for field, op, value, values in holds:
        assert condition_holds({"field": field, "operation": op, "value": value, "values": values}, "e", d), op
    assert not condition_holds({"field": "model", "operation": "GREATER_THAN", "value": "1"}, "e", d)
    assert not condition_holds({"field": "missing", "operation": "EQUALS", "value": "x"}, "e", d)


@given(events, events)
def test_tallies_kept_event_by_event_and_merged_agree_with_the_meter(first: list[Any], second: list[Any]) -> None:
    """What lets ingestion fold each event into a counter (and usage that waited into a window) instead
    of rescanning the window's events."""
    for function in ("COUNT", "SUM", "MAX", "MIN", "AVG"):
        m = meter(function, "tokens" if function != "COUNT" else None, ONLY_COMPLETIONS)

        def tally(batch: list[Any], m: dict[str, Any] = m, function: str = function) -> Tally:
            amounts = [measure(m, name, d) for name, d in batch]
            return fold(function, Tally(), [usage_number(a) or Decimal(0) for a in amounts if isinstance(a, Decimal)])

        whole = aggregate(m, first + second)
        assert tally(first + second).value == whole.quantize(Decimal("1e-12")).normalize(), function
        assert merge(function, tally(first), tally(second)).value == tally(first + second).value, function


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_usage_numbers_are_bounded_and_kept_to_12_places(value: Decimal) -> None:
    kept = usage_number(value)
    if not value.is_finite() or abs(value) > USAGE_MAX:
        assert kept is None
    else:
        assert kept is not None and abs(kept - value) <= Decimal("5e-13")
        assert kept.as_tuple().exponent >= -12  # type: ignore[operator]


filters = st.sampled_from(
    [
        [],
        ONLY_COMPLETIONS,
        [{"conditions": [{"field": "model", "operation": "IN", "values": ["small", "xl"]}]}],
        [{"conditions": [{"field": "tokens", "operation": "GREATER_THAN", "value": "10"}]}, *ONLY_COMPLETIONS],
        [
            {
                "conditions": [
                    {"field": "tokens", "operation": "GREATER_THAN", "value": "10"},
                    *ONLY_COMPLETIONS[0]["conditions"],
                ]
            }
        ],
    ]
)


@given(st.sampled_from(["COUNT", "SUM", "MAX", "MIN", "AVG", "UNIQUE"]), filters, events)
def test_a_compiled_meter_measures_as_the_meter(function: str, chosen: list[dict[str, Any]], batch: list[Any]) -> None:
    """Ingestion compiles each meter once per batch (and remembers the numbers a batch repeats)."""
    m = meter(function, {"COUNT": None, "UNIQUE": "model"}.get(function, "tokens"), chosen)
    numbers: dict[tuple[type, Any], Decimal | None] = {}
    compiled, remembering = compile_meter(m), compile_meter(m, numbers)
    for name, d in batch * 2:  # twice: the second time from what it remembered
        assert compiled(name, d) == remembering(name, d) == measure(m, name, d)


big = st.one_of(
    st.integers(min_value=-5, max_value=500).map(Decimal),
    st.sampled_from([USAGE_MAX, -USAGE_MAX, USAGE_MAX / 3, Decimal("0.000000000001"), Decimal("1e9")]),
)


@given(st.sampled_from(["COUNT", "SUM", "MAX", "MIN", "AVG"]), st.lists(big, max_size=30), st.lists(big, max_size=30))
def test_folding_a_window_at_once_equals_folding_event_by_event(
    function: str, before: list[Decimal], numbers: list[Decimal]
) -> None:
    """Including near the bounds, where an event that would leave the range is named and skipped."""
    tally, _ = fold_checked(function, Tally(), before)
    expected, refused = tally, []
    for position, number in enumerate(numbers):
        try:
            expected = step(function, expected, number)
        except OutOfRange as exc:
            refused.append((position, str(exc)))
    assert fold_checked(function, tally, numbers) == (expected, refused)


@pytest.mark.parametrize(
    "number", [Decimal(1), Decimal("2.50"), Decimal("1E+9"), Decimal("-0"), Decimal("-0.000000000001"), USAGE_MAX]
)
@pytest.mark.parametrize("count", [1, 3, 5000])
def test_one_number_throughout_reads_as_adding_them_one_by_one(number: Decimal, count: int) -> None:
    """The same number throughout (COUNT's ones) is read as a product: the same sum, exponent and sign
    included (its text is what the counter stores), and the same extremes."""
    numbers = [number] * count
    read = Numbers.of(numbers)
    assert read is not None
    with decimal.localcontext(prec=40):
        total = sum(numbers, Decimal(0))
        largest = max(max(numbers), -min(numbers)) * count
    assert (str(read.total), str(read.high), str(read.low), str(read.largest)) == (
        str(total),
        str(max(numbers)),
        str(min(numbers)),
        str(largest),
    )
