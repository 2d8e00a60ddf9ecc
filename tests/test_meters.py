from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from entitle.usage.meters import aggregate, condition_holds, matches

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


@given(events)
def test_max_min_avg_unique_agree_with_python(batch: list[Any]) -> None:
    values = [
        Decimal(d["tokens"])
        for _, d in batch
        if isinstance(d.get("tokens"), int) and not isinstance(d.get("tokens"), bool)
    ]
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
