"""The cache's hot path (`cached_answer`: prepared answers, int comparisons, shared `Answer`s, memo) gives
exactly what the plain rule (`evaluate`) gives, for any entitlement and any request; and its results
behave as the frozen values they were."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.sdk.state import State, cached_answer, evaluate, to_decimal
from entitle.sdk.types import FIELDS, EntitlementResult, Source

numbers = st.integers(min_value=-(10**20), max_value=10**20) | st.decimals(
    min_value=-(10**20), max_value=10**20, places=3, allow_nan=False, allow_infinity=False
)
usages = st.none() | numbers | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.booleans()


@st.composite
def entitlements(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["BOOLEAN", "NUMBER", "ENUM"]))
    raw: dict[str, Any] = {"feature": {"id": "f", "featureType": kind}}
    if draw(st.booleans()):
        raw["usageLimit"] = draw(numbers)
    if draw(st.booleans()):
        raw["currentUsage"] = draw(numbers)
    raw["hasUnlimitedUsage"] = draw(st.booleans())
    raw["hasSoftLimit"] = draw(st.booleans())
    if draw(st.booleans()):
        raw["enumValues"] = draw(st.lists(st.sampled_from("abc"), max_size=3))
    return raw


def _as_json(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal) and value == value.to_integral_value() else value


@given(
    entry=st.none() | entitlements(),
    requests=st.lists(
        st.tuples(usages, st.none() | st.lists(st.sampled_from("abcd"), max_size=3).map(tuple)), max_size=12
    ),
)
def test_the_hot_path_answers_as_the_rule(entry: dict[str, Any] | None, requests: list[tuple[Any, Any]]) -> None:
    if entry is not None:
        entry = {k: _as_json(v) for k, v in entry.items()}
    state = State.from_wire({"entitlements": [entry] if entry else []}, written_at=0.0)
    # Twice: the second round is answered from the memo.
    for _ in range(2):
        for usage, values in requests:
            got = cached_answer(state, "c", "f", None, usage, values, 1.0)
            want = evaluate(
                state, "c", "f", None, Source.CACHE, None if usage is None else to_decimal(usage), values, 1.0
            )
            assert got == want and got.as_dict() == want.as_dict(), (usage, values)
            assert isinstance(got.requested_usage, Decimal | None)


def test_a_result_is_a_frozen_value() -> None:
    state = State.from_wire(
        {"entitlements": [{"feature": {"id": "f", "featureType": "NUMBER"}, "usageLimit": 10, "currentUsage": 4}]},
        written_at=0.0,
    )
    result = cached_answer(state, "c", "f", None, 6, None, 1.0)
    assert (result.is_granted, result.has_access, result.requested_usage) == (True, True, Decimal(6))
    assert cached_answer(state, "c", "f", None, 7, None, 1.0).access_denied_reason == "RequestedUsageExceedingLimit"
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.is_granted = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.requested_usage = Decimal(1)  # type: ignore[misc]
    same = EntitlementResult(**result.as_dict())
    assert same == result and hash(same) == hash(result) and same is not result
    assert copy.copy(result) == result and pickle.loads(pickle.dumps(result)) == result
    assert list(result.as_dict()) == list(FIELDS) and repr(result).startswith("EntitlementResult(customer_id='c'")
    assert result != cached_answer(state, "c", "f", None, 5, None, 1.0)
