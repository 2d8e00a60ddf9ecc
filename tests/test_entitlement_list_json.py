"""A warm list joins each grant's result kept as JSON in its view (`answers.listing_json`): for any view
(with features priced in credits or not), any credits and any succession of usages it answers byte for byte
what serializing the list afresh answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from entitle.catalog.packages.allowance import Allowance
from entitle.credits.checks import CurrencyView, FeatureRate, Standing, WalletState
from entitle.credits.engine import Balance
from entitle.credits.schemas import CreditCheckResult
from entitle.entitlements import answers
from entitle.entitlements.schemas import EntitlementResult
from entitle.entitlements.snapshot import CustomerView, FeatureView, GrantView, customer_view
from entitle.grants.engine import Window

NOW = datetime(2026, 12, 5, 13, 0, tzinfo=UTC)
# Equal values written differently ("5" and "5.0") must share an entry without changing the bytes.
AMOUNTS = st.sampled_from([Decimal(0), Decimal(1), Decimal("1.0"), Decimal("2.5"), Decimal(10), Decimal("1e3")])


@st.composite
def grants(draw: st.DrawFn, ref: str) -> GrantView:
    meter_type = draw(st.sampled_from(["None", "Fluctuating", "Incremental"]))
    feature = FeatureView(
        ref_id=ref,
        display_name=ref.title(),
        feature_status="ACTIVE",
        feature_type="NUMBER" if meter_type != "None" else draw(st.sampled_from(["BOOLEAN", "ENUM"])),
        meter_type=meter_type,
        feature_units=draw(st.sampled_from([None, "call"])),
        feature_units_plural=draw(st.sampled_from([None, "calls"])),
    )
    resets = draw(st.booleans())
    enum_values = frozenset(draw(st.lists(st.sampled_from(["a", "b", "c"]))))
    allowance = Allowance(
        usage_limit=draw(st.none() | AMOUNTS),
        has_unlimited=draw(st.booleans()),
        has_soft_limit=draw(st.booleans()),
        enum_values=enum_values if feature.feature_type == "ENUM" else None,
        reset_period="MONTH" if resets else None,
        valid_until=draw(st.none() | st.just(NOW + timedelta(days=40))),
    )
    window = Window(start=NOW - timedelta(days=4), end=NOW + timedelta(days=26) if resets else None, anchor=NOW)
    return GrantView(feature, allowance, window, NOW - timedelta(days=9))


CURRENCIES = ["credits", "tokens"]


@st.composite
def views(draw: st.DrawFn) -> CustomerView:
    refs = draw(st.lists(st.sampled_from(["seats", "api-calls", "sso", "tier", "storage"]), unique=True))
    priced = draw(st.lists(st.sampled_from(refs), unique=True)) if refs else []
    rates = {
        ref: tuple(
            FeatureRate(currency, draw(AMOUNTS), draw(st.booleans()))
            for currency in draw(st.lists(st.sampled_from(CURRENCIES), min_size=1, unique=True))
        )
        for ref in priced
    }
    return customer_view(
        1,
        archived=draw(st.booleans()),
        has_subscription=draw(st.booleans()),
        grants={ref: draw(grants(ref)) for ref in refs},
        loaded_at=NOW,
        valid_until=None,
        credit_rates=rates,
    )


@st.composite
def standings(draw: st.DrawFn) -> Standing:
    """Wallets in some of the currencies (a rate's currency without one has nothing), some soft-limited."""
    wallets = {}
    for currency in draw(st.lists(st.sampled_from(CURRENCIES), unique=True)):
        granted, used = draw(AMOUNTS), draw(AMOUNTS)
        balance = Balance(granted, used, Decimal(0), Decimal(0), draw(st.none() | st.just(NOW)), NOW, None)
        wallets[currency] = WalletState(balance, None)
    currencies = {
        ref: CurrencyView(ref, ref.title(), None, {"tier": "a"}, "credit", "credits", NOW - timedelta(days=30))
        for ref in wallets
    }
    return Standing(wallets, currencies, frozenset(draw(st.lists(st.sampled_from(CURRENCIES)))))


@given(
    views(),
    standings(),
    st.lists(st.dictionaries(st.sampled_from(["seats", "api-calls", "storage"]), AMOUNTS), min_size=1),
)
def test_a_list_joined_from_kept_results_is_the_list_serialized_afresh(
    view: CustomerView, credits: Standing, usages: list[dict[str, Decimal]]
) -> None:
    for usage in usages:
        assert answers.listing_json(view, usage, credits) == answers.to_json(answers.listing(view, usage, credits))
    # One usage kept per grant: a view's memory stays bounded.
    assert view.listed.keys() == view.listed_usage.keys() <= view.grants.keys()


@given(views(), standings(), st.dictionaries(st.sampled_from(["seats", "api-calls", "storage"]), AMOUNTS))
def test_the_list_answers_each_feature_as_its_check_and_each_wallet_as_its_currency_check(
    view: CustomerView, credits: Standing, usage: dict[str, Decimal]
) -> None:
    listed = answers.listing(view, usage, credits).entitlements
    if view.archived:
        assert listed == []
        return
    features = [r for r in listed if isinstance(r, EntitlementResult)]
    assert [r.feature.id for r in features if r.feature] == sorted(view.grants)
    for result in features:
        assert result.feature is not None
        assert result == answers.check(view, usage, credits, result.feature.id, None)
    balances = [r for r in listed if isinstance(r, CreditCheckResult)]
    assert listed == features + balances  # features first
    assert [r.currency.currency_id for r in balances] == sorted(credits.wallets)
    for result in balances:
        currency = credits.currencies[result.currency.currency_id]
        assert result == answers.currency_check(view, credits, currency, None)


REQUESTED = st.none() | AMOUNTS | st.sampled_from([Decimal("0.1"), Decimal("3.14159"), Decimal("1e15"), Decimal("-0")])
# Values a client may send, commas split out (`comma_list`): quotes, escapes and non-ASCII written alike.
VALUES = st.none() | st.lists(st.sampled_from(["a", "b", "c"]) | st.text(min_size=1).filter(lambda v: "," not in v))


@given(
    views(),
    standings(),
    st.lists(
        st.tuples(
            st.sampled_from(["seats", "api-calls", "sso", "tier", "storage", "unknown"]),
            st.dictionaries(st.sampled_from(["seats", "api-calls", "storage"]), AMOUNTS),
            REQUESTED,
            VALUES,
        ),
        min_size=1,
    ),
)
def test_a_check_written_into_its_kept_listed_result_is_the_check_serialized_afresh(
    view: CustomerView,
    credits: Standing,
    checks: list[tuple[str, dict[str, Decimal], Decimal | None, list[str] | None]],
) -> None:
    for ref, usage, requested_usage, requested_values in checks:
        feature = view.grants[ref].feature if ref in view.grants else None
        asked = {"requested_usage": requested_usage, "requested_values": requested_values}
        expected = answers.to_json(answers.check(view, usage, credits, ref, feature, **asked))
        assert answers.check_json(view, usage, credits, ref, feature, **asked) == expected
