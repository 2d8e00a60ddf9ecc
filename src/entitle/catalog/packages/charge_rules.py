"""Pure rules of one-charge edits: a draft's stored charges read back as the `charges` of a PATCH (the
inverse of `pricing_rules.expand_charges`), so one charge can be added, changed or removed and the whole pricing
replaced through the same checks as a PATCH."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from decimal import Decimal
from typing import Any, Protocol

from entitle.catalog.packages.pricing_rules import ChargeSpec

# Every column of a charge this module reads back; a new ChargeSpec field must be added here (and to
# `charges_doc`), or a one-charge edit would drop it from the other charges (a test compares the sets).
READ_BACK = frozenset(
    {
        "is_overage",
        "billing_model",
        "billing_period",
        "billing_cadence",
        "billing_country_code",
        "feature_ref",
        "custom_currency_ref",
        "price_amount",
        "price_currency",
        "tiers",
        "tiers_mode",
        "block_size",
        "min_unit_quantity",
        "max_unit_quantity",
        "reset_period",
        "reset_period_configuration",
        "credit_grant_cadence",
        "credit_rate_amount",
        "credit_rate_currency_ref",
        "credit_rate_cost_formula",
        "top_up_custom_currency_ref",
    }
)
assert {f.name for f in fields(ChargeSpec)} == READ_BACK, "charge_rules.READ_BACK is out of date"


class ChargeRow(Protocol):
    """A stored charge (`PackageCharge`) or one about to be stored (`ChargeSpec`)."""

    is_overage: bool
    billing_model: str
    billing_period: str
    billing_cadence: str
    billing_country_code: str | None
    feature_ref: str | None
    custom_currency_ref: str | None
    price_amount: Decimal | None
    price_currency: str | None
    tiers: list[dict[str, Any]] | None
    tiers_mode: str | None
    block_size: Decimal | None
    min_unit_quantity: int | None
    max_unit_quantity: int | None
    reset_period: str | None
    reset_period_configuration: dict[str, Any] | None
    credit_grant_cadence: str | None
    credit_rate_amount: Decimal | None
    credit_rate_currency_ref: str | None
    credit_rate_cost_formula: str | None
    top_up_custom_currency_ref: str | None


def _money(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if doc is None else {"amount": Decimal(str(doc["amount"])), "currency": doc["currency"]}


def _period(c: ChargeRow) -> dict[str, Any]:
    period: dict[str, Any] = {"billing_period": c.billing_period}
    if c.billing_country_code is not None:
        period["billing_country_code"] = c.billing_country_code
    if c.price_amount is not None:
        period["price"] = {"amount": c.price_amount, "currency": c.price_currency or "usd"}
    if c.tiers is not None:
        period["tiers"] = [
            {
                "up_to": Decimal(str(t["upTo"])) if t.get("upTo") is not None else None,
                "unit_price": _money(t.get("unitPrice")),
                "flat_price": _money(t.get("flatPrice")),
            }
            for t in c.tiers
        ]
    if c.block_size is not None:
        period["block_size"] = c.block_size
    if c.credit_grant_cadence is not None:
        period["credit_grant_cadence"] = c.credit_grant_cadence
    if c.credit_rate_amount is not None:
        rate: dict[str, Any] = {"amount": c.credit_rate_amount, "currency_id": c.credit_rate_currency_ref}
        if c.credit_rate_cost_formula is not None:
            rate["cost_formula"] = c.credit_rate_cost_formula
        period["credit_rate"] = rate
    return period


def charges_doc(
    rows: Iterable[ChargeRow], pricing_type: str, billing_id: str | None, overage_billing_period: str | None
) -> dict[str, Any]:
    """The `charges` (ChargesIn fields, snake case) that `expand_charges` turns back into these rows.

    A country's price must sit in the same pricing model as its period's default price, and a package
    has one default price per (model, feature, period): so all rows of one model, feature and period
    came from one pricing model, and grouping them so is always a valid request."""
    models: dict[tuple[Any, ...], dict[str, Any]] = {}
    overages: dict[tuple[Any, ...], dict[str, Any]] = {}
    minimums: list[dict[str, Any]] = []
    for c in rows:
        if c.billing_model == "MINIMUM_SPEND" and not c.is_overage:
            minimums.append(
                {
                    "billing_period": c.billing_period,
                    "minimum": {"amount": c.price_amount, "currency": c.price_currency},
                }
            )
            continue
        if c.is_overage:
            overage_key = (c.feature_ref, c.custom_currency_ref, c.billing_period)
            model = overages.setdefault(overage_key, {"price_periods": []})
            if c.custom_currency_ref is not None:
                model["currency_id"] = c.custom_currency_ref
            elif c.feature_ref is not None:
                model["feature_id"] = c.feature_ref
            model["price_periods"].append(_period(c))
            continue
        key = (
            c.billing_model,
            c.billing_cadence,
            c.feature_ref,
            c.min_unit_quantity,
            c.max_unit_quantity,
            c.top_up_custom_currency_ref,
            c.reset_period,
            c.billing_period,
        )
        model = models.setdefault(key, {"billing_model": c.billing_model, "price_periods": []})
        for name, value in (
            ("billing_cadence", c.billing_cadence),
            ("feature_id", c.feature_ref),
            ("min_unit_quantity", c.min_unit_quantity),
            ("max_unit_quantity", c.max_unit_quantity),
            ("top_up_custom_currency_id", c.top_up_custom_currency_ref),
            ("reset_period", c.reset_period),
        ):
            if value is not None:
                model[name] = value
        if c.tiers_mode is not None:
            model["tiers_mode"] = c.tiers_mode
        model["price_periods"].append(_period(c))
    doc: dict[str, Any] = {
        "pricing_type": pricing_type,
        "pricing_models": list(models.values()),
        "overage_pricing_models": list(overages.values()),
    }
    if minimums:
        doc["minimum_spend"] = minimums
    if billing_id is not None:
        doc["billing_id"] = billing_id
    if overage_billing_period is not None:
        doc["overage_billing_period"] = overage_billing_period
    return doc
