"""Pure rules of the paywall: which price applies in a country, and the order of plans."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

T = TypeVar("T")

PRICING_RANK = {"FREE": 0, "PAID": 1, "CUSTOM": 2}
HIDDEN_WIDGET = "PAYWALL"


@dataclass(frozen=True)
class PriceKey:
    """A price without its country: the same price for other countries is an alternative of it."""

    is_overage: bool
    billing_model: str
    feature_ref: str | None
    billing_period: str


def prices_for_country(prices: Iterable[tuple[PriceKey, str | None, T]], country: str | None) -> list[T]:
    """The default prices (no country), each replaced by its country-specific price when `country`
    is given and one exists; a price that exists only for another country is left out."""
    chosen: dict[PriceKey, tuple[bool, T]] = {}
    for key, price_country, price in prices:
        if price_country is None:
            chosen.setdefault(key, (False, price))
        elif country is not None and price_country.upper() == country.upper():
            chosen[key] = (True, price)
    return [price for _, price in chosen.values()]


def monthly_equivalent(flat_prices: Sequence[tuple[str, Decimal]]) -> Decimal | None:
    """A plan's base price per month from its flat prices `(billing_period, amount)`: the monthly
    price, else the annual one divided by 12; None when the plan has no flat price."""
    monthly = [amount for period, amount in flat_prices if period == "MONTHLY"]
    if monthly:
        return sum(monthly, Decimal(0))
    annual = [amount for period, amount in flat_prices if period == "ANNUALLY"]
    if annual:
        return sum(annual, Decimal(0)) / 12
    return None


def plan_sort_key(pricing_type: str, monthly: Decimal | None, depth: int, pk: int) -> tuple[int, Decimal, int, int]:
    """Cheapest first: free plans, then paid ones by monthly price, then custom (contact us) plans;
    a plan before the plans that inherit from it; ties by creation."""
    return (PRICING_RANK.get(pricing_type, 1), monthly if monthly is not None else Decimal(0), depth, pk)


def in_chosen_order(default_order: Sequence[str], chosen: Sequence[str]) -> list[str]:
    """A product's plans as its pricing page lists them: those of its chosen order (`planOrder`) first,
    in that order, then the others in `default_order`. Chosen ids that are not listed (a plan archived
    or not published since) are skipped."""
    listed = set(default_order)
    first = list(dict.fromkeys(ref for ref in chosen if ref in listed))
    picked = set(first)
    return first + [ref for ref in default_order if ref not in picked]
