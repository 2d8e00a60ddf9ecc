"""The currency check answered from memory writes the decision in front of the rest of its answer, kept
as JSON with the held wallet state (`credits.checks.credit_answer_json`): for any balance, currency,
soft limit and any succession of requested usages it answers byte for byte what building and serializing
the answer afresh (`credit_answer`) answers, and a state read again with another currency shows that one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from entitle.credits.checks import CurrencyView, WalletState, credit_answer, credit_answer_json
from entitle.credits.engine import Balance

NOW = datetime(2026, 12, 5, 13, 0, tzinfo=UTC)
AMOUNTS = st.sampled_from(
    [Decimal(0), Decimal(1), Decimal("1.0"), Decimal("2.5"), Decimal(10), Decimal("1e3"), Decimal("0.000001")]
)
REQUESTED = st.none() | AMOUNTS | st.sampled_from([Decimal("0.1"), Decimal("1e15"), Decimal("-0")])
INSTANTS = st.none() | st.sampled_from([NOW, NOW + timedelta(days=30, microseconds=5)])
TEXT = st.none() | st.sampled_from(["Credits", 'quo"te', "naïve \\ ✓", ""])


@st.composite
def currencies(draw: st.DrawFn) -> CurrencyView:
    return CurrencyView(
        currency_id=draw(st.sampled_from(["credits", "tokens"])),
        display_name=draw(st.sampled_from(["Credits", 'Tok"ens', "Ünits"])),
        description=draw(TEXT),
        metadata=draw(st.dictionaries(st.sampled_from(["tier", "ké"]), st.sampled_from(["a", "é\n"]))),
        unit_singular=draw(TEXT),
        unit_plural=draw(TEXT),
        created_at=NOW - timedelta(days=30),
    )


@st.composite
def states(draw: st.DrawFn) -> WalletState:
    balance = Balance(
        usage_limit=draw(AMOUNTS),
        current_usage=draw(AMOUNTS),
        reserved=draw(AMOUNTS),
        reserved_on_expired_grants=draw(AMOUNTS),
        valid_until=draw(INSTANTS),
        updated_at=draw(INSTANTS),
        period_end=draw(INSTANTS),
    )
    return WalletState(balance, draw(INSTANTS))


def _afresh(currency: CurrencyView, state: WalletState | None, soft: bool, requested: Decimal | None) -> bytes:
    answer = credit_answer(currency, state, soft_limit=soft, requested_usage=requested)
    return answer.__pydantic_serializer__.to_json(answer, by_alias=True)


@given(currencies(), st.none() | states(), st.booleans(), st.lists(REQUESTED, min_size=1, max_size=4))
def test_the_kept_answer_is_the_answer_serialized_afresh(
    currency: CurrencyView, state: WalletState | None, soft: bool, requests: list[Decimal | None]
) -> None:
    for requested in requests:
        kept = credit_answer_json(currency, state, soft_limit=soft, requested_usage=requested)
        assert kept == _afresh(currency, state, soft, requested)


@given(currencies(), currencies(), states(), REQUESTED)
def test_a_state_shown_with_another_currency_shows_that_one(
    first: CurrencyView, second: CurrencyView, state: WalletState, requested: Decimal | None
) -> None:
    credit_answer_json(first, state, soft_limit=False, requested_usage=requested)
    assert credit_answer_json(second, state, soft_limit=False, requested_usage=requested) == _afresh(
        second, state, False, requested
    )
