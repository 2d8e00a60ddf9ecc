"""Issue 12: a batch is measured once per kind of event (its name and the dimensions a meter reads), not
once per event; what each event contributes, and which events are refused, stay exactly what measuring
each event alone answers. Values that are equal yet measure apart (True, 1, 1.0, "1") must not share
an answer, and a value that cannot be a key (not a dimension value) is still measured."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.events.ingested import NewEvent
from entitle.usage import batch_store
from entitle.usage import store as usage_store
from entitle.usage.measuring import measure_events
from entitle.usage.meters import dimensions_read, field_path, measure
from entitle.usage.rules import usage_number

AT = datetime(2026, 1, 1, tzinfo=UTC)
# Mostly values equal to each other yet measured apart, so a batch holds several of them.
values = st.one_of(
    st.sampled_from([True, False, 1, 1.0, "1", 0, 0.0, "0", "true", 10**16, -(10**16), 1e-13, "7e3", None]),
    st.integers(min_value=-2, max_value=2),
)
dimensions = st.dictionaries(st.sampled_from(["tokens", "model", "cached"]), values, max_size=3)
conditions = st.sampled_from(
    [
        {"field": "eventName", "operation": "EQUALS", "value": "completion"},
        {"field": "eventName", "operation": "EQUALS", "value": "upload"},
        {"field": "dimensions.cached", "operation": "EQUALS", "value": "true"},
        {"field": "tokens", "operation": "GREATER_THAN", "value": "0"},
        {"field": "model", "operation": "IN", "values": ["1", "true"]},
        {"field": "model", "operation": "IS_NULL"},
    ]
)
meters = st.builds(
    lambda function, field, filters: {"aggregation": {"function": function, "field": field}, "filters": filters},
    st.sampled_from(["COUNT", "SUM", "MAX", "MIN", "AVG", "UNIQUE"]),
    st.sampled_from(["tokens", "dimensions.tokens", "model", "cached", "eventName"]),
    st.lists(st.builds(lambda cs: {"conditions": cs}, st.lists(conditions, max_size=2)), max_size=2),
)
events = st.lists(st.tuples(st.sampled_from(["completion", "upload"]), dimensions), max_size=30)


@given(st.lists(meters, min_size=1, max_size=3), events)
def test_a_batch_measured_by_kind_answers_as_each_event_measured_alone(
    chosen: list[dict[str, Any]], batch: list[tuple[str, dict[str, Any]]]
) -> None:
    features: Any = [SimpleNamespace(ref_id=f"f{n}", meter=m) for n, m in enumerate(chosen)]
    new = [NewEvent("c", None, name, dims, AT, index) for index, (name, dims) in enumerate(batch * 2)]
    amounts, problems = measure_events(features, new)
    refused: dict[int, dict[str, str]] = {}
    for feature in features:
        for e in new:
            alone = measure(feature.meter, e.event_name, e.dimensions)
            kept = usage_number(alone) if isinstance(alone, Decimal) else alone
            assert amounts[feature.ref_id][e.index] == kept
            assert type(amounts[feature.ref_id][e.index]) is type(kept)
            if isinstance(alone, Decimal) and kept is None:
                refused.setdefault(e.index, {"field": f"events.{e.index}.{field_path(feature.meter)}", "problem": ""})
    assert [p["field"] for p in problems] == [refused[i]["field"] for i in sorted(refused)]


def test_an_event_whose_dimension_cannot_be_a_key_is_measured_alone() -> None:
    meter = {"aggregation": {"function": "UNIQUE", "field": "user"}, "filters": []}
    feature: Any = SimpleNamespace(ref_id="f", meter=meter)
    new = [
        NewEvent("c", None, "e", {"user": ["a"]}, AT, 0),
        NewEvent("c", None, "e", {"user": ["b"]}, AT, 1),
        NewEvent("c", None, "e", {"user": "a"}, AT, 2),
    ]
    amounts, problems = measure_events([feature], new)
    assert amounts["f"] == ["['a']", "['b']", "a"]
    assert problems == []


def test_a_meter_reads_the_dimensions_of_its_conditions_and_its_field() -> None:
    meter = {
        "aggregation": {"function": "SUM", "field": "dimensions.tokens"},
        "filters": [
            {"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "x"}]},
            {"conditions": [{"field": "model", "operation": "IN", "values": ["a"]}, {"field": "tokens"}]},
        ],
    }
    assert dimensions_read(meter) == ("model", "tokens")
    assert dimensions_read({"aggregation": {"function": "COUNT"}, "filters": []}) == ()


class _EmptiedByAnotherBatch(dict[str, str]):
    """The process's digests, emptied by a batch prepared concurrently right after each look-up."""

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key, default)
        self.clear()
        return found

    def __contains__(self, key: object) -> bool:
        found = super().__contains__(key)
        self.clear()
        return found


def test_unique_values_are_digested_whatever_another_batch_does_to_the_remembered_digests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """UNIQUE values are digested before the write transaction, so batches do it concurrently: a look-up
    must not fail because another batch emptied the digests remembered (it does when they are full)."""
    remembered = _EmptiedByAnotherBatch({"u1": usage_store.digest("u1")})
    monkeypatch.setattr(batch_store, "_DIGESTS", remembered)
    values = ["u1", "u2", "u1", "u3", "u2"]
    assert batch_store.digests_of(values) == sorted({hashlib.sha256(v.encode()).hexdigest() for v in values})
