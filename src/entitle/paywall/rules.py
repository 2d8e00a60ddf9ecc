"""Pure rules of the paywall: the order of plans. (Which price a country pays is the subscriptions'
rule, `subscriptions.preview.charges_for_country`, shared with the preview and the billing sync.)"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

PRICING_RANK = {"FREE": 0, "PAID": 1, "CUSTOM": 2}
HIDDEN_WIDGET = "PAYWALL"


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
