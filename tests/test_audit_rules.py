"""The audit log's record of a new row, with its table's column decisions made once (`created_columns`,
`created_changes_of`: every audited insert of a request runs it) is the record `created_changes` makes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from entitle.audit import rules

_NAMES = st.sampled_from(
    ["pk", "created_at", "updated_at", "ref_id", "name", "metadata", "secret_key_encrypted", "token_hint", "amount"]
) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(timezones=st.just(UTC)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@given(st.dictionaries(_NAMES, _VALUES, max_size=12))
def test_a_new_rows_record_is_the_same_whichever_way_it_is_made(values: dict[str, Any]) -> None:
    prepared = rules.created_columns(values)
    made = rules.created_changes_of(prepared, values.__getitem__)
    expected = rules.created_changes(values)
    assert made == expected
    assert list(made) == list(expected)  # the same columns in the same order: the same JSON


def test_secret_columns_are_redacted_and_empty_and_bookkeeping_ones_left_out() -> None:
    prepared = rules.created_columns(["pk", "updated_at", "secret_key_encrypted", "name", "amount", "email"])
    values = {"pk": 7, "secret_key_encrypted": "sk_x", "name": "A", "amount": Decimal("1.50"), "email": None}
    made = rules.created_changes_of(prepared, lambda col: values.get(col, datetime(2026, 1, 1, tzinfo=UTC)))
    assert made == {"amount": "1.50", "name": "A", "secret_key_encrypted": rules.REDACTED}


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12))
def test_an_amount_is_recorded_exactly_and_positionally(amount: Decimal) -> None:
    """Amounts read back from the database are normalized (10 is Decimal("1E+1")): the log writes them as
    people do, and exactly."""
    for value in (amount, amount.normalize()):
        text = rules.plain(value)
        assert "E" not in text.upper() and Decimal(text) == amount
    assert rules.plain(Decimal("1E+1")) == "10" and rules.plain(Decimal("1.50")) == "1.50"
