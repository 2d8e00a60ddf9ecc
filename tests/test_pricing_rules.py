from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from entitle.subscriptions.pricing import Line, Price, Tier, blocks, discounted, invoice, line_for, tiered_cost

TIERS = (
    Tier(Decimal(10), unit_price=Decimal(5)),
    Tier(Decimal(100), unit_price=Decimal(4)),
    Tier(None, unit_price=Decimal(3), flat_price=Decimal(20)),
)
quantities = st.decimals(min_value=0, max_value=10_000, places=0, allow_nan=False, allow_infinity=False)


def test_tier_examples() -> None:
    assert tiered_cost(Decimal(5), TIERS, "GRADUATED") == Decimal(25)
    assert tiered_cost(Decimal(15), TIERS, "GRADUATED") == Decimal(50 + 20)
    assert tiered_cost(Decimal(150), TIERS, "GRADUATED") == Decimal(50 + 360 + 150 + 20)
    assert tiered_cost(Decimal(15), TIERS, "VOLUME") == Decimal(60)
    assert tiered_cost(Decimal(150), TIERS, "VOLUME") == Decimal(450 + 20)
    assert blocks(Decimal(11), Decimal(5)) == Decimal(15)


@given(quantities, quantities)
def test_graduated_cost_never_falls_as_quantity_grows(a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert tiered_cost(low, TIERS, "GRADUATED") <= tiered_cost(high, TIERS, "GRADUATED")


@given(quantities)
def test_graduated_is_the_sum_of_what_each_unit_costs(q: Decimal) -> None:
    per_unit = sum(
        (next(t.unit_price for t in TIERS if t.up_to is None or n <= t.up_to) for n in range(1, int(q) + 1)),
        Decimal(0),
    )
    floors = [Decimal(0)] + [t.up_to or Decimal(0) for t in TIERS[:-1]]  # where each tier starts
    flats = sum((t.flat_price for t, floor in zip(TIERS, floors, strict=True) if q > floor), Decimal(0))
    assert tiered_cost(q, TIERS, "GRADUATED") == per_unit + (flats if q > 0 else 0)


@given(
    st.lists(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False), max_size=6),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=0)),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=10**7, places=2)),
)
def test_discounts_never_make_a_total_negative_or_larger(
    amounts: list[Decimal], percent: Decimal | None, fixed: Decimal | None
) -> None:
    lines = [Line("x", "usd", Decimal(1), a, a) for a in amounts]
    inv = invoice("usd", lines, percent_off=percent, amount_off=fixed)
    assert Decimal(0) <= inv.total <= inv.sub_total
    assert inv.total == inv.sub_total - inv.discount
    assert inv.total == inv.total.quantize(Decimal("0.01"))


@given(
    st.lists(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False), max_size=6),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=0)),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=10**7, places=2)),
)
def test_discounted_lines_add_up_to_what_the_invoice_takes_the_discount_off(
    amounts: list[Decimal], percent: Decimal | None, fixed: Decimal | None
) -> None:
    # A proration prorates each line net of the coupon: the lines must carry exactly the invoice's
    # discount between them, each in proportion to its amount.
    lines = [Line("x", "usd", Decimal(1), a, a) for a in amounts]
    inv = invoice("usd", lines, percent_off=percent, amount_off=fixed)
    net = discounted(lines, percent_off=percent, amount_off=fixed)
    # (the invoice rounds its discount to the cent; the lines keep it exact)
    assert abs(sum((line.sub_total for line in net), Decimal(0)) - inv.total) <= Decimal("0.005000001")
    assert all(Decimal(0) <= after.sub_total <= before.sub_total for before, after in zip(lines, net, strict=True))


def test_a_fixed_amount_off_is_spread_over_the_lines_by_their_amounts() -> None:
    lines = [
        Line("plan", "usd", Decimal(1), Decimal(30), Decimal(30)),
        Line("seat", "usd", Decimal(2), Decimal(5), Decimal(10)),
    ]
    net = discounted(lines, amount_off=Decimal(8))
    assert [line.sub_total for line in net] == [Decimal(24), Decimal(8)]
    assert [line.unit_price for line in net] == [Decimal(24), Decimal(4)]


def test_usage_based_prices_are_billed_in_arrears() -> None:
    assert line_for(Price("calls", "USAGE_BASED", "usd", Decimal("0.01")), Decimal(1)) is None
    flat = line_for(Price("Pro", "FLAT_FEE", "usd", Decimal(29)), Decimal(1))
    assert flat is not None and flat.sub_total == 29
