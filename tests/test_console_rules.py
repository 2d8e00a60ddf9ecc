"""Pure rules of the console (issue 14): MRR per currency, sign-in throttling, roles, what the audit log
writes down, and the server-side chart."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from entitle.audit import rules as audit
from entitle.console import charts, rules
from entitle.console.rules import Permission, RecurringCharge, Role

CURRENCIES = ("usd", "eur", "jpy")
amounts = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)
charges = st.builds(
    RecurringCharge,
    currency=st.sampled_from(CURRENCIES),
    billing_period=st.sampled_from(("MONTHLY", "ANNUALLY")),
    amount=amounts,
    status=st.sampled_from(("ACTIVE", "IN_TRIAL", "CANCELED", "EXPIRED", "NOT_STARTED", "PAYMENT_PENDING")),
    pricing_type=st.sampled_from(("PAID", "FREE", "CUSTOM")),
    in_trial=st.booleans(),
)


def _exact(items: list[RecurringCharge]) -> dict[str, Decimal]:
    """The definition, spelled out: active, non-trial, paid; annual / 12; summed before rounding."""
    totals: dict[str, Decimal] = {}
    for c in items:
        if c.status == "ACTIVE" and not c.in_trial and c.pricing_type == "PAID" and c.amount > 0:
            months = 12 if c.billing_period == "ANNUALLY" else 1
            totals[c.currency] = totals.get(c.currency, Decimal(0)) + c.amount / months
    return totals


@given(st.lists(charges, max_size=30))
def test_mrr_counts_active_paid_non_trial_charges_with_annual_prices_over_twelve(items: list[RecurringCharge]) -> None:
    got = rules.mrr(items)
    exact = _exact(items)
    assert set(got) == set(exact)
    for currency, total in exact.items():
        minor = Decimal(1) if currency == "jpy" else Decimal("0.01")
        # Rounded once, after summing: never further than half a minor unit from the exact sum.
        assert abs(got[currency] - total) <= minor / 2
        assert got[currency] == got[currency].quantize(minor)
        assert got[currency] >= 0


@given(st.lists(charges, max_size=20), st.lists(charges, max_size=20))
def test_mrr_of_two_books_is_the_sum_of_each(a: list[RecurringCharge], b: list[RecurringCharge]) -> None:
    both, left, right = rules.mrr(a + b), rules.mrr(a), rules.mrr(b)
    for currency in both:
        assert abs(both[currency] - left.get(currency, Decimal(0)) - right.get(currency, Decimal(0))) <= Decimal("1.5")


@given(amounts.filter(lambda a: a > 0))
def test_an_annual_price_counts_a_twelfth_of_itself(amount: Decimal) -> None:
    yearly = RecurringCharge("usd", "ANNUALLY", amount * 12, "ACTIVE", "PAID", False)
    monthly = RecurringCharge("usd", "MONTHLY", amount, "ACTIVE", "PAID", False)
    assert rules.mrr([yearly]) == rules.mrr([monthly])
    assert rules.mrr([RecurringCharge("usd", "MONTHLY", amount, "ACTIVE", "PAID", True)]) == {}
    assert rules.mrr([RecurringCharge("usd", "MONTHLY", amount, "IN_TRIAL", "PAID", False)]) == {}


@given(st.lists(st.integers(min_value=0, max_value=40 * 60), max_size=20))
def test_sign_in_locks_after_max_failures_within_the_window(minutes_between: list[int]) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now, state = start, None
    recent: list[datetime] = []
    for gap in minutes_between:
        now += timedelta(minutes=gap)
        if rules.locked(state, now):
            assert state is not None and state.locked_until is not None and now < state.locked_until
            continue
        state = rules.after_failure(state, now)
        recent = [t for t in recent if now - state.window_start <= rules.FAILURE_WINDOW and t >= state.window_start]
        recent.append(now)
        assert state.count == len(recent)
        assert (state.count >= rules.MAX_FAILURES) == (state.locked_until is not None and state.locked_until > now)
    assert not rules.locked(None, now)


def test_roles_grant_what_the_issue_says() -> None:
    assert all(rules.may(Role.ADMIN, p) for p in Permission)
    assert rules.may(Role.EDITOR, Permission.EDIT) and not rules.may(Role.EDITOR, Permission.ADMINISTER)
    assert rules.may(Role.VIEWER, Permission.READ)
    assert not rules.may(Role.VIEWER, Permission.EDIT) and not rules.may(Role.VIEWER, Permission.ADMINISTER)


@given(st.text(max_size=40))
def test_the_audit_log_never_writes_a_secret_down(value: str) -> None:
    for column in ("password_hash", "key_hash", "secret_key_encrypted", "signing_secret_encrypted", "csrf_token"):
        assert audit.created_changes({column: value})[column] == audit.REDACTED
        assert audit.updated_changes({column: ("old", value)}).get(column, [None, audit.REDACTED])[1] == (
            audit.REDACTED
        )
    # Other text is kept as written (a NUL, which PostgreSQL's JSONB cannot hold, becomes U+FFFD).
    assert audit.created_changes({"name": value}) == {"name": value.replace("\x00", "\ufffd")}


def test_the_audit_log_keeps_amounts_exact_and_skips_unchanged_and_bookkeeping_columns() -> None:
    assert audit.updated_changes({"price_amount": (Decimal("1.10"), Decimal("1.1"))}) == {}
    assert audit.updated_changes({"price_amount": (Decimal("1.10"), Decimal("2.05"))}) == {
        "price_amount": ["1.10", "2.05"]
    }
    assert audit.updated_changes({"updated_at": (datetime(2026, 1, 1), datetime(2026, 1, 2))}) == {}
    assert audit.created_changes({"pk": 3, "email": None, "n": 0}) == {"n": 0}


def test_the_chart_is_labelled_svg_with_one_bar_a_day() -> None:
    days = [(date(2026, 1, 1) + timedelta(days=i), i % 3) for i in range(30)]
    svg = charts.bar_chart(days, "New <subscriptions>")
    assert svg.startswith("<svg") and 'role="img"' in svg and "New &lt;subscriptions&gt;: 30 from 2026-01-01" in svg
    assert svg.count("<rect") == 30 and "<script" not in svg
    assert charts.bar_chart([], "Nothing").count("<rect") == 0


def test_the_usage_chart_steps_through_each_report() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [(start + timedelta(days=2), Decimal(5)), (start + timedelta(days=4), Decimal(8))]
    svg = charts.step_chart(points, start, start + timedelta(days=10), "Calls <usage>")
    assert 'aria-label="Calls &lt;usage&gt;: 2 reports from 2026-01-01 to 2026-01-11, now 8, at most 8"' in svg
    line = svg.split('<polyline points="', 1)[1].split('"', 1)[0].split()
    # From zero, a step up at each report (two points at its time), held to the end.
    assert len(line) == 1 + 2 * len(points) + 1
    assert line[1].split(",")[0] == line[2].split(",")[0]
    assert charts.step_chart([], start, start, "none").count("<polyline") == 1


refs = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@given(kind=st.sampled_from(sorted(rules.STRIPE_DASHBOARD_PATHS)), billing_id=refs, livemode=st.booleans())
def test_a_synced_entity_links_to_its_page_of_the_stripe_dashboard(kind: str, billing_id: str, livemode: bool) -> None:
    url = rules.dashboard_url("STRIPE", livemode, kind, billing_id)
    assert url is not None
    head, _, tail = url.rpartition("/")
    mode = "" if livemode else "test/"
    assert head == f"https://dashboard.stripe.com/{mode}{rules.STRIPE_DASHBOARD_PATHS[kind]}"
    assert unquote(tail) == billing_id  # one path segment, whatever the id holds


def test_no_dashboard_link_without_a_billing_id_or_for_another_provider() -> None:
    assert (
        rules.dashboard_url("STRIPE", False, "CUSTOMER", "cus_1") == "https://dashboard.stripe.com/test/customers/cus_1"
    )
    assert rules.dashboard_url("STRIPE", True, "PLAN", "prod_1") == "https://dashboard.stripe.com/products/prod_1"
    assert rules.dashboard_url("STRIPE", False, "CUSTOMER", None) is None
    assert rules.dashboard_url("OTHER", False, "CUSTOMER", "cus_1") is None
    assert rules.dashboard_url("STRIPE", False, "FEATURE", "x") is None
