"""Price overrides of a sales-led deal, as pure functions: which catalog price each override replaces,
whether the subscription may have it, and the prices after it.

An override replaces one price's amount for the one subscription, in that price's currency:
- `baseCharge: true`: the plan's flat fee;
- `featureId`: the plan's per-unit or usage-based price of that feature (its unit price);
- `addonId`: the price of an add-on the subscription has (its flat fee or unit price);
- `featureId` with `creditRate`: how many credits of the rate's custom currency one unit of a feature the
  subscription prices in credits (a CREDIT_BASED price of its plan or add-ons) costs; `credit_rates` reads
  them back, and the credits domain draws usage at that rate.
Tiered prices keep their tiers (an override would need tiers of its own, which are refused), and
overage prices are not overridden. The subscription keeps its overrides in wire form (`stored`);
`amounts` reads them back, keyed by `key_of` of the price they replace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from entitle.errors import InvalidArgument
from entitle.money import minor_unit_exponent
from entitle.subscriptions import pricing
from entitle.subscriptions.schemas import PriceOverride

Key = tuple[str, str]  # ("BASE", ""), ("FEATURE", featureId), ("ADDON", addonId) or ("CREDIT_RATE", featureId)
BASE: Key = ("BASE", "")
OVERRIDABLE_MODELS = ("FLAT_FEE", "PER_UNIT", "USAGE_BASED")


def key_of(billing_model: str, feature_ref: str | None, addon_ref: str | None = None) -> Key | None:
    """Which override would replace a price of the plan (`addon_ref` None) or of that add-on."""
    if billing_model not in OVERRIDABLE_MODELS:
        return None
    if addon_ref is not None:
        return ("ADDON", addon_ref)
    if billing_model == "FLAT_FEE":
        return BASE
    return ("FEATURE", feature_ref) if feature_ref else None


def _describe(key: Key) -> str:
    if key == BASE:
        return "baseCharge"
    if key[0] == "CREDIT_RATE":
        return f"the creditRate of featureId '{key[1]}'"
    return f"{'featureId' if key[0] == 'FEATURE' else 'addonId'} '{key[1]}'"


def check(
    overrides: Sequence[PriceOverride],
    plan_prices: Sequence[pricing.Price],
    addon_prices: Mapping[str, Sequence[pricing.Price]],
    billing_period: str | None,
    credit_priced: Mapping[str, Collection[str]] | None = None,
) -> list[dict[str, Any]] | None:
    """The overrides in the form the subscription keeps (each with its price's currency), or a 400: each
    names a price the subscription has for its billing period, once, in that price's currency.
    `credit_priced`: the features the subscription prices in credits, with the custom currencies of their
    rates (what a `creditRate` override may name)."""
    if not overrides:
        return None
    targets: dict[Key, list[pricing.Price]] = {}
    for price in plan_prices:
        key = key_of(price.billing_model, price.feature_ref)
        if key is not None:
            targets.setdefault(key, []).append(price)
    for addon_ref, prices in addon_prices.items():
        for price in prices:
            key = key_of(price.billing_model, price.feature_ref, addon_ref)
            if key is not None:
                targets.setdefault(key, []).append(price)
    seen: set[Key] = set()
    stored: list[dict[str, Any]] = []
    for index, override in enumerate(overrides):
        key = override.key()
        where = f"priceOverrides[{index}]"
        if key in seen:
            raise InvalidArgument(f"{where}: {_describe(key)} is overridden twice")
        seen.add(key)
        if override.credit_rate is not None:
            stored.append(_credit_rate(override, (credit_priced or {}).get(key[1]), where, billing_period))
            continue
        found = targets.get(key, [])
        if not found:
            raise InvalidArgument(
                f"{where}: the subscription has no {billing_period or 'recurring'} price for {_describe(key)} to "
                "override (a base charge is the plan's flat fee, a feature's its per-unit or usage price, an "
                "add-on's one the subscription has)"
            )
        if len(found) > 1:
            raise InvalidArgument(f"{where}: {_describe(key)} has several prices; one override cannot say which")
        price = found[0]
        assert override.amount is not None  # the schema asks an amount of an override without a credit rate
        if price.tiers:
            raise InvalidArgument(
                f"{where}: the price of {_describe(key)} is tiered; overriding tiers is not supported"
            )
        if override.currency is not None and override.currency != price.currency:
            raise InvalidArgument(f"{where}: currency {override.currency} is not the price's ({price.currency})")
        exponent = minor_unit_exponent(price.currency)
        if price.billing_model == "FLAT_FEE" and override.amount != override.amount.quantize(
            Decimal(1).scaleb(-exponent)
        ):
            raise InvalidArgument(f"{where}: a flat fee in {price.currency} has at most {exponent} decimals")
        entry: dict[str, Any] = {"amount": str(override.amount), "currency": price.currency}
        entry |= {"baseCharge": True} if key == BASE else {f"{key[0].lower()}Id": key[1]}
        stored.append(entry)
    return stored


def _credit_rate(
    override: PriceOverride, currencies: Collection[str] | None, where: str, billing_period: str | None
) -> dict[str, Any]:
    rate = override.credit_rate
    assert rate is not None and override.feature_id is not None
    if not currencies:
        raise InvalidArgument(
            f"{where}: the subscription prices featureId '{override.feature_id}' in no credits for its "
            f"{billing_period or 'recurring'} period (a creditRate overrides a CREDIT_BASED price of its plan "
            "or add-ons)"
        )
    if rate.currency_id not in currencies:
        raise InvalidArgument(
            f"{where}: featureId '{override.feature_id}' is priced in {', '.join(sorted(currencies))}, not in "
            f"'{rate.currency_id}'"
        )
    kept = {"amount": str(rate.amount), "currencyId": rate.currency_id}
    return {"featureId": override.feature_id, "creditRate": kept}


def amounts(stored: Iterable[Mapping[str, Any]] | None) -> dict[Key, Decimal]:
    """The kept overrides of money prices by the price they replace (credit rates: `credit_rates`)."""
    found: dict[Key, Decimal] = {}
    for entry in stored or ():
        if entry.get("creditRate"):
            continue
        if entry.get("featureId"):
            key: Key = ("FEATURE", str(entry["featureId"]))
        elif entry.get("addonId"):
            key = ("ADDON", str(entry["addonId"]))
        else:
            key = BASE
        found[key] = Decimal(str(entry["amount"]))
    return found


def credit_rates(stored: Iterable[Mapping[str, Any]] | None) -> dict[str, tuple[str, Decimal]]:
    """The kept credit-rate overrides: feature -> (custom currency, credits per unit)."""
    found: dict[str, tuple[str, Decimal]] = {}
    for entry in stored or ():
        rate = entry.get("creditRate")
        if rate:
            found[str(entry["featureId"])] = (str(rate["currencyId"]), Decimal(str(rate["amount"])))
    return found


def applied(price: pricing.Price, overrides: Mapping[Key, Decimal], addon_ref: str | None = None) -> pricing.Price:
    """The price as this subscription pays it."""
    key = key_of(price.billing_model, price.feature_ref, addon_ref)
    if key is None or key not in overrides or price.tiers:
        return price
    return dataclasses.replace(price, amount=overrides[key])


def minor_units(amount: Decimal, currency: str) -> Decimal:
    """An amount in the currency's minor units (exact: a unit price may have more decimals)."""
    return amount.scaleb(minor_unit_exponent(currency))
