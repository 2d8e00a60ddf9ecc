"""Money on the wire (`entitle.http.wire.Amount`): any input is a bounded Decimal or a validation error
(a 400), never another exception (a 500)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from entitle.http.wire import Amount

AMOUNT: TypeAdapter[Decimal] = TypeAdapter(Amount)
LIMIT = Decimal(10) ** 24


@given(
    st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.from_regex(r"-?[0-9]{1,40}\.[0-9]{1,60}", fullmatch=True),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**30), max_value=10**30),
    )
)
# Found by a hostile-input run: 23 integer digits and 13 decimals overflowed the default context (500).
@example("99999999999999999999999.9999999999999")
@example("12345678901234567.12345678901234")
def test_an_amount_is_bounded_or_refused(raw: object) -> None:
    try:
        value = AMOUNT.validate_python(raw)
    except ValidationError:
        return
    assert value.is_finite()
    assert abs(value) < LIMIT
    assert value.as_tuple().exponent >= -12  # type: ignore[operator]


def test_many_decimals_round_to_twelve_and_rounding_up_to_the_bound_is_refused() -> None:
    assert AMOUNT.validate_python("99999999999999999999999.9999999999999") == Decimal(10) ** 23
    with pytest.raises(ValidationError):
        AMOUNT.validate_python("999999999999999999999999.9999999999999")
    assert AMOUNT.validate_python("12345678901234567.12345678901234") == Decimal("12345678901234567.123456789012")
