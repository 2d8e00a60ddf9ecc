"""What a subscription costs: invoice lines, tiers, discounts, proration. Pure functions, Decimal only.

- FLAT_FEE: one line at the price.
- PER_UNIT: quantity x price, or tiers: VOLUME prices every unit at the tier the quantity falls in;
  GRADUATED prices each unit at the tier it falls in. A tier's flat price is added once when the
  quantity reaches that tier. `blockSize` rounds the quantity up to whole blocks.
- USAGE_BASED and overage charges are billed in arrears from metered usage, so they appear in no
  preview line.
- CREDIT_BASED credit charges (no feature: each unit grants credits per grant period): per unit, like
  PER_UNIT, at the subscription's CREDIT charge quantity (1 when it names none). A CREDIT_BASED price of a
  feature is a credit rate, paid in credits: no line.
- Add-ons: their flat and per-unit charges times the add-on quantity.
- A coupon takes a percentage off the subtotal, or a fixed amount in the invoice currency (never
  below zero). A proration credits and charges the discounted amounts (`discounted`), as the billing
  provider prorates them. Tax is left to the billing provider.
- Totals are rounded to the currency's minor unit (banker's rounding) only at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from entitle.money import minor_unit_exponent


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None
    unit_price: Decimal = Decimal(0)
    flat_price: Decimal = Decimal(0)


@dataclass(frozen=True)
class Price:
    """One charge of a package for one billing period (country already chosen)."""

    description: str
    billing_model: str
    currency: str
    amount: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    tiers_mode: str | None = None
    block_size: Decimal | None = None
    feature_ref: str | None = None
    credit_currency_ref: str | None = None  # a credit charge's currency (None for every other price)


@dataclass(frozen=True)
class Line:
    description: str
    currency: str
    quantity: Decimal
    unit_price: Decimal
    sub_total: Decimal


@dataclass(frozen=True)
class Invoice:
    currency: str
    lines: tuple[Line, ...]
    sub_total: Decimal
    discount: Decimal
    total: Decimal


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_unit_exponent(currency)), rounding=ROUND_HALF_EVEN)


def blocks(quantity: Decimal, block_size: Decimal | None) -> Decimal:
    if not block_size or block_size <= 0:
        return quantity
    return (quantity / block_size).to_integral_value(rounding=ROUND_CEILING) * block_size


def tiered_cost(quantity: Decimal, tiers: Sequence[Tier], mode: str) -> Decimal:
    """Cost of `quantity` units on ascending tiers (the last one open-ended)."""
    if quantity <= 0 or not tiers:
        return Decimal(0)
    if mode == "VOLUME":
        for tier in tiers:
            if tier.up_to is None or quantity <= tier.up_to:
                return quantity * tier.unit_price + tier.flat_price
        last = tiers[-1]
        return quantity * last.unit_price + last.flat_price
    total, floor = Decimal(0), Decimal(0)
    for tier in tiers:
        ceiling = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if ceiling > floor:
            total += (ceiling - floor) * tier.unit_price + tier.flat_price
        if tier.up_to is None or quantity <= tier.up_to:
            break
        floor = tier.up_to
    return total


def quantity_key(charge_type: str, ref: str) -> str:
    """Where a subscription's charge quantity sits in the quantities `price_lines` takes: under the feature
    for a FEATURE charge (a per-unit price's units), under `credit:<currency>` for a CREDIT charge (the units
    of a credit charge; no feature id has a colon)."""
    return ref if charge_type == "FEATURE" else f"credit:{ref}"


def line_for(price: Price, quantity: Decimal) -> Line | None:
    """The invoice line of one price at a quantity; None for prices billed from usage, and for credit
    rates (a feature's usage paid in credits)."""
    if price.billing_model == "FLAT_FEE":
        amount = price.amount or Decimal(0)
        return Line(price.description, price.currency, quantity, amount, amount * quantity)
    credit_charge = price.billing_model == "CREDIT_BASED" and price.credit_currency_ref is not None
    if credit_charge and price.amount is None and not price.tiers:
        return None  # credits granted at no price
    if price.billing_model == "PER_UNIT" or credit_charge:
        units = blocks(quantity, price.block_size)
        if price.tiers:
            cost = tiered_cost(units, price.tiers, price.tiers_mode or "GRADUATED")
            unit = cost / units if units else Decimal(0)
            return Line(price.description, price.currency, units, unit, cost)
        amount = price.amount or Decimal(0)
        return Line(price.description, price.currency, units, amount, amount * units)
    return None


def invoice(
    currency: str,
    lines: Iterable[Line],
    *,
    percent_off: Decimal | None = None,
    amount_off: Decimal | None = None,
) -> Invoice:
    kept = tuple(lines)
    sub_total = sum((line.sub_total for line in kept), Decimal(0))
    discount = _discount(sub_total, percent_off, amount_off)
    # Round the parts, then subtract: the invoice must add up exactly as printed.
    rounded_sub_total, rounded_discount = round_money(sub_total, currency), round_money(discount, currency)
    return Invoice(
        currency=currency,
        lines=kept,
        sub_total=rounded_sub_total,
        discount=rounded_discount,
        total=rounded_sub_total - rounded_discount,
    )


def _discount(sub_total: Decimal, percent_off: Decimal | None, amount_off: Decimal | None) -> Decimal:
    """What a coupon takes off `sub_total`, unrounded: never below zero nor above the subtotal."""
    discount = Decimal(0)
    if percent_off:
        discount = sub_total * percent_off / 100
    elif amount_off:
        discount = amount_off
    return min(max(discount, Decimal(0)), max(sub_total, Decimal(0)))


def discounted(
    lines: Sequence[Line], *, percent_off: Decimal | None = None, amount_off: Decimal | None = None
) -> list[Line]:
    """The lines of one period with the coupon's discount taken off each of them, in proportion to its
    amount (the same total discount `invoice` takes off their subtotal). A proration prorates what was
    and will be paid, the discount included, as Stripe's proration items do: they carry the
    subscription's discount already and are not discounted again on the invoice."""
    sub_total = sum((line.sub_total for line in lines), Decimal(0))
    discount = _discount(sub_total, percent_off, amount_off)
    if not discount:
        return list(lines)
    keep = 1 - discount / sub_total
    return [Line(ln.description, ln.currency, ln.quantity, ln.unit_price * keep, ln.sub_total * keep) for ln in lines]


def scaled(line: Line, share: Decimal, description: str | None = None) -> Line:
    """A line for part of a period (proration): the quantity stays, the amounts shrink."""
    return Line(
        description or line.description, line.currency, line.quantity, line.unit_price * share, line.sub_total * share
    )
