"""Pure pricing rules of plans and add-ons (no I/O): what a package's charges may be
(`check_pricing`, `check_tiers`) and the charge rows a pricing request becomes (`expand_charges`,
`ChargeSpec`), keyed so a charge keeps its id across drafts (`charge_key`). Refusals raise
`InvalidArgument` (or `NotFound` for a feature the caller could not find) naming the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from entitle.catalog.packages.models import PackageCharge
from entitle.catalog.packages.rules import FeatureShape, check_feature_entitlement, reset_configuration
from entitle.catalog.packages.schemas import (
    ChargesIn,
    OveragePricingModelIn,
    PricePeriodIn,
    PricingModelIn,
    TierIn,
    decimal_text,
)
from entitle.errors import InvalidArgument, NotFound


@dataclass
class ChargeSpec:
    """One charge row to write, before it gets its id (see `expand_charges`)."""

    is_overage: bool
    billing_model: str
    billing_period: str
    billing_cadence: str = "RECURRING"
    billing_country_code: str | None = None
    feature_ref: str | None = None
    custom_currency_ref: str | None = None
    price_amount: Decimal | None = None
    price_currency: str | None = None
    tiers: list[dict[str, Any]] | None = None
    tiers_mode: str | None = None
    block_size: Decimal | None = None
    min_unit_quantity: int | None = None
    max_unit_quantity: int | None = None
    reset_period: str | None = None
    reset_period_configuration: dict[str, str] | None = None
    credit_grant_cadence: str | None = None
    credit_rate_amount: Decimal | None = None
    credit_rate_currency_ref: str | None = None
    credit_rate_cost_formula: str | None = None
    top_up_custom_currency_ref: str | None = None

    @property
    def key(self) -> tuple[bool, str, str | None, str, str | None]:
        return charge_key(
            self.is_overage,
            self.billing_model,
            self.feature_ref or self.custom_currency_ref,
            self.billing_period,
            self.billing_country_code,
        )


def charge_key(
    is_overage: bool, billing_model: str, subject: str | None, billing_period: str, country: str | None
) -> tuple[bool, str, str | None, str, str | None]:
    """A package has at most one price per (base|overage, billing model, feature or currency, billing
    period, country); the charge id stays with the key across drafts."""
    return (is_overage, billing_model, subject, billing_period, country.upper() if country else None)


def key_of_charge(c: PackageCharge) -> tuple[bool, str, str | None, str, str | None]:
    return charge_key(
        c.is_overage, c.billing_model, c.feature_ref or c.custom_currency_ref, c.billing_period, c.billing_country_code
    )


def check_tiers(tiers: Sequence[TierIn], where: str) -> None:
    """Tiers: at least one; each has a unitPrice or a flatPrice (or both); `upTo` strictly ascending;
    only the last tier is open-ended (no `upTo`), and it must be."""
    if not tiers:
        raise InvalidArgument(f"{where}.tiers: give at least one tier")
    previous: Decimal | None = None
    for i, tier in enumerate(tiers):
        if tier.unit_price is None and tier.flat_price is None:
            raise InvalidArgument(f"{where}.tiers[{i}]: a tier needs a unitPrice or a flatPrice")
        last = i == len(tiers) - 1
        if tier.up_to is None:
            if not last:
                raise InvalidArgument(f"{where}.tiers[{i}]: only the last tier may be open-ended (no upTo)")
            continue
        if last:
            raise InvalidArgument(f"{where}.tiers[{i}]: the last tier must be open-ended (no upTo)")
        if previous is not None and tier.up_to <= previous:
            raise InvalidArgument(f"{where}.tiers[{i}]: upTo must be strictly ascending")
        previous = tier.up_to


def _feature(features: Mapping[str, FeatureShape], ref: str, where: str) -> FeatureShape:
    feature = features.get(ref)
    if feature is None:
        raise NotFound("feature", ref)
    if feature.archived:
        raise InvalidArgument(f"{where}: feature '{ref}' is archived")
    return feature


def _check_price_period(pp: PricePeriodIn, model: str, tiers_mode: str | None, where: str) -> None:
    credit = model == "CREDIT_BASED"
    if not credit and (pp.credit_rate is not None or pp.credit_grant_cadence is not None):
        raise InvalidArgument(f"{where}: creditRate and creditGrantCadence are only for CREDIT_BASED pricing")
    if pp.price is not None and pp.tiers is not None:
        raise InvalidArgument(f"{where}: give either a price or tiers, not both")
    if model in ("FLAT_FEE", "MINIMUM_SPEND"):
        if pp.price is None:
            raise InvalidArgument(f"{where}: {model} needs a price")
        if pp.tiers is not None or pp.block_size is not None:
            raise InvalidArgument(f"{where}: {model} takes no tiers or blockSize")
        return
    if credit:
        if pp.credit_rate is None:
            raise InvalidArgument(f"{where}: CREDIT_BASED needs a creditRate")
    elif pp.price is None and pp.tiers is None:
        raise InvalidArgument(f"{where}: give a price or tiers")
    if pp.tiers is not None:
        if tiers_mode is None:
            raise InvalidArgument(f"{where}: tiers need tiersMode (VOLUME or GRADUATED)")
        check_tiers(pp.tiers, where)


def _check_periods(periods: Sequence[PricePeriodIn], where: str) -> None:
    """Per-country prices override a default price: each country's price needs a default (no
    country) price for the same billing period in the same pricing model."""
    defaults = {pp.billing_period for pp in periods if pp.billing_country_code is None}
    for i, pp in enumerate(periods):
        if pp.billing_country_code is not None and pp.billing_period not in defaults:
            raise InvalidArgument(
                f"{where}.pricePeriods[{i}]: the {pp.billing_country_code} price overrides a default "
                f"{pp.billing_period} price, which is missing"
            )


def _check_pricing_model(pm: PricingModelIn, features: Mapping[str, FeatureShape], where: str) -> None:
    model = pm.billing_model
    feature: FeatureShape | None = None
    if model in ("FLAT_FEE", "MINIMUM_SPEND"):
        if pm.feature_id is not None:
            raise InvalidArgument(f"{where}: {model} is not tied to a feature; drop featureId")
    elif model in ("PER_UNIT", "USAGE_BASED"):
        if pm.feature_id is None:
            raise InvalidArgument(f"{where}: {model} needs featureId")
        feature = _feature(features, pm.feature_id, where)
        if feature.feature_type != "NUMBER":
            raise InvalidArgument(
                f"{where}: {model} needs a NUMBER feature; '{feature.ref_id}' is {feature.feature_type}"
            )
        if model == "USAGE_BASED" and not feature.metered:
            raise InvalidArgument(
                f"{where}: USAGE_BASED needs a metered feature; '{feature.ref_id}' has meterType None"
            )
    elif pm.feature_id is not None:  # CREDIT_BASED: the feature whose usage consumes credits
        feature = _feature(features, pm.feature_id, where)
        if feature.feature_type != "NUMBER":
            raise InvalidArgument(
                f"{where}: CREDIT_BASED needs a NUMBER feature; '{feature.ref_id}' is {feature.feature_type}"
            )
    if model != "PER_UNIT" and (pm.min_unit_quantity is not None or pm.max_unit_quantity is not None):
        raise InvalidArgument(f"{where}: minUnitQuantity and maxUnitQuantity are only for PER_UNIT pricing")
    if (
        pm.min_unit_quantity is not None
        and pm.max_unit_quantity is not None
        and pm.max_unit_quantity < pm.min_unit_quantity
    ):
        raise InvalidArgument(f"{where}: maxUnitQuantity is below minUnitQuantity")
    has_tiers = any(pp.tiers is not None for pp in pm.price_periods)
    if pm.tiers_mode is not None and not has_tiers:
        raise InvalidArgument(f"{where}: tiersMode is only for tiered prices")
    reset_configuration(pm.reset_period, *pm.anchors())  # the anchors must match the period
    if pm.reset_period is not None:
        if model not in ("USAGE_BASED", "CREDIT_BASED"):
            raise InvalidArgument(f"{where}: resetPeriod is only for USAGE_BASED or CREDIT_BASED pricing")
        if feature is None or not feature.resettable:
            raise InvalidArgument(f"{where}: resetPeriod needs an INCREMENTAL metered feature")
    if pm.top_up_custom_currency_id is not None and model != "CREDIT_BASED":
        raise InvalidArgument(f"{where}: topUpCustomCurrencyId is only for CREDIT_BASED pricing")
    for i, pp in enumerate(pm.price_periods):
        _check_price_period(pp, model, pm.tiers_mode, f"{where}.pricePeriods[{i}]")
    _check_periods(pm.price_periods, where)


def _check_overage_model(om: OveragePricingModelIn, features: Mapping[str, FeatureShape], where: str) -> None:
    feature_ref = om.feature_id
    if om.entitlement is not None:
        if feature_ref is not None and feature_ref != om.entitlement.feature_id:
            raise InvalidArgument(f"{where}: entitlement.featureId differs from featureId")
        feature_ref = om.entitlement.feature_id
    if (feature_ref is None) == (om.currency_id is None):
        raise InvalidArgument(f"{where}: an overage price is for a featureId or (credits) a currencyId, exactly one")
    if om.currency_id is None:
        if om.credit_entitlement is not None:
            raise InvalidArgument(f"{where}: creditEntitlement goes with a currencyId overage")
        assert feature_ref is not None
        feature = _feature(features, feature_ref, where)
        if feature.feature_type != "NUMBER" or not feature.metered:
            raise InvalidArgument(f"{where}: overage needs a metered NUMBER feature; '{feature_ref}' is not one")
        if om.entitlement is not None:
            e = om.entitlement
            check_feature_entitlement(
                feature,
                usage_limit=e.usage_limit,
                has_unlimited_usage=bool(e.has_unlimited_usage),
                has_soft_limit=bool(e.has_soft_limit),
                reset_period=e.reset_period,
                enum_values=None,
            )
            reset_configuration(e.reset_period, *e.anchors())
    else:
        if om.entitlement is not None:
            raise InvalidArgument(f"{where}: entitlement goes with a featureId overage; use creditEntitlement")
        ce = om.credit_entitlement
        if ce is not None and ce.custom_currency_id != om.currency_id:
            raise InvalidArgument(f"{where}: creditEntitlement.customCurrencyId differs from currencyId")
    for i, pp in enumerate(om.price_periods):
        # Overage is charged per unit beyond the included amount; a tiered overage is graduated.
        _check_price_period(pp, "USAGE_BASED", "GRADUATED", f"{where}.pricePeriods[{i}]")
    _check_periods(om.price_periods, where)


def check_pricing(req: ChargesIn, features: Mapping[str, FeatureShape]) -> None:
    """The `charges` of a PATCH (a full replace of the draft's pricing) must be consistent:

    - pricingType FREE or CUSTOM takes no prices (no pricing models, overage models or minimum spend);
      PAID needs at least one pricing model or overage pricing model;
    - FLAT_FEE and MINIMUM_SPEND take no featureId and need a `price` in every price period;
    - PER_UNIT needs a NUMBER feature, USAGE_BASED a metered NUMBER feature (meterType not None);
      CREDIT_BASED needs a creditRate in each price period (credits come later: the currency is stored,
      not checked);
    - every other price period has a price or tiers (not both); tiers need tiersMode, ascend by
      `upTo` and end open-ended (`check_tiers`); min/maxUnitQuantity only for PER_UNIT, max >= min;
    - resetPeriod (with a matching anchor) only on USAGE_BASED / CREDIT_BASED of an INCREMENTAL feature;
    - at most one price per (base|overage, billing model, feature, billing period, country); a
      per-country price (billingCountryCode) overrides a default price of the same period and model,
      which must exist;
    - one currency per country: all default prices (and the minimum spend) share one currency, and
      all prices of one country share one, which is also that of every default price of the period
      the country does not replace (a subscriber there pays both);
    - an overage model prices a metered NUMBER feature (or, for credits, a currencyId); its
      `entitlement` is checked as that feature's entitlement.
    """
    if req.pricing_type in ("FREE", "CUSTOM"):
        if req.pricing_models or req.overage_pricing_models or req.minimum_spend:
            raise InvalidArgument(
                f"pricingType {req.pricing_type} takes no prices: send no pricingModels, "
                "overagePricingModels or minimumSpend"
            )
    elif not req.pricing_models and not req.overage_pricing_models:
        raise InvalidArgument("pricingType PAID needs at least one pricing model")
    for i, pm in enumerate(req.pricing_models):
        _check_pricing_model(pm, features, f"pricingModels[{i}]")
    for i, om in enumerate(req.overage_pricing_models):
        _check_overage_model(om, features, f"overagePricingModels[{i}]")
    periods = [ms.billing_period for ms in req.minimum_spend or ()]
    if len(set(periods)) != len(periods):
        raise InvalidArgument("minimumSpend: one minimum per billing period")
    seen: set[tuple[bool, str, str | None, str, str | None]] = set()
    specs = list(expand_charges(req))
    for spec in specs:
        if spec.key in seen:
            subject = spec.feature_ref or spec.custom_currency_ref
            raise InvalidArgument(
                f"two {'overage ' if spec.is_overage else ''}{spec.billing_model} prices for "
                f"{f'{subject!r}, ' if subject else ''}{spec.billing_period}"
                f"{', ' + spec.billing_country_code if spec.billing_country_code else ''}: give one"
            )
        seen.add(spec.key)
    by_country: dict[str | None, set[str]] = {}
    for spec in specs:
        by_country.setdefault(_country(spec.billing_country_code), set()).update(_spec_currencies(spec))
    for country, currencies in by_country.items():
        if len(currencies) > 1:
            where = f"country {country}" if country else "the default prices"
            raise InvalidArgument(f"{where} mix currencies {', '.join(sorted(currencies))}: use one")
    _check_countries_pay_in_one_currency(specs)


def _check_countries_pay_in_one_currency(specs: Sequence[ChargeSpec]) -> None:
    """A country's prices replace only the default prices they stand for: a subscriber there pays its
    own prices plus every default price of the period it does not replace. Those must share its
    currency, or one subscription would bill two currencies (Stripe refuses it, the preview cannot add
    them up)."""
    defaults: dict[str, list[tuple[tuple[bool, str, str | None], str]]] = {}
    by_country: dict[tuple[str, str], tuple[set[tuple[bool, str, str | None]], set[str]]] = {}
    for spec in specs:
        subject = (spec.is_overage, spec.billing_model, spec.feature_ref or spec.custom_currency_ref)
        currencies = _spec_currencies(spec)
        if spec.billing_country_code is None:
            defaults.setdefault(spec.billing_period, []).extend((subject, c) for c in currencies)
            continue
        keys, own = by_country.setdefault((spec.billing_country_code.upper(), spec.billing_period), (set(), set()))
        keys.add(subject)
        own.update(currencies)
    for (country, period), (replaced, own) in sorted(by_country.items()):
        for subject, currency in defaults.get(period, ()):
            if subject not in replaced and own and currency not in own:
                what = f"{subject[1]} price{f' of {subject[2]!r}' if subject[2] else ''}"
                raise InvalidArgument(
                    f"country {country} ({period}) is priced in {', '.join(sorted(own))} but keeps the default "
                    f"{what} in {currency}: a subscriber there would pay in two currencies; give {country} "
                    f"its own {what} or price it in {currency}"
                )


def _spec_currencies(spec: ChargeSpec) -> set[str]:
    found = {spec.price_currency} if spec.price_currency else set()
    for tier in spec.tiers or ():
        for price in (tier.get("unitPrice"), tier.get("flatPrice")):
            if price is not None:
                found.add(price["currency"])
    return found


def _country(code: str | None) -> str | None:
    return code.upper() if code else None


def _tier_doc(tier: TierIn) -> dict[str, Any]:
    def price(p: Any) -> dict[str, str] | None:
        return None if p is None else {"amount": decimal_text(p.amount), "currency": p.currency}

    return {
        "upTo": decimal_text(tier.up_to) if tier.up_to is not None else None,
        "unitPrice": price(tier.unit_price),
        "flatPrice": price(tier.flat_price),
    }


def _spec(pp: PricePeriodIn, **columns: Any) -> ChargeSpec:
    spec = ChargeSpec(billing_period=pp.billing_period, **columns)
    spec.billing_country_code = pp.billing_country_code
    if pp.price is not None:
        spec.price_amount = pp.price.amount
        spec.price_currency = pp.price.currency
    if pp.tiers is not None:
        spec.tiers = [_tier_doc(t) for t in pp.tiers]
    spec.block_size = pp.block_size
    spec.credit_grant_cadence = pp.credit_grant_cadence
    if pp.credit_rate is not None:
        spec.credit_rate_amount = pp.credit_rate.amount
        spec.credit_rate_currency_ref = pp.credit_rate.currency_id
        spec.credit_rate_cost_formula = pp.credit_rate.cost_formula
    return spec


def expand_charges(req: ChargesIn) -> list[ChargeSpec]:
    """One charge per pricing model x price period, then the minimum spends (billing model
    MINIMUM_SPEND), then one overage charge (USAGE_BASED for a feature, CREDIT_BASED for a currency)
    per overage model x price period. Tiered overage prices are graduated."""
    specs: list[ChargeSpec] = []
    for pm in req.pricing_models:
        reset = reset_configuration(pm.reset_period, *pm.anchors())
        for pp in pm.price_periods:
            specs.append(
                _spec(
                    pp,
                    is_overage=False,
                    billing_model=pm.billing_model,
                    billing_cadence=pm.billing_cadence,
                    feature_ref=pm.feature_id,
                    tiers_mode=pm.tiers_mode if pp.tiers is not None else None,
                    min_unit_quantity=pm.min_unit_quantity,
                    max_unit_quantity=pm.max_unit_quantity,
                    reset_period=pm.reset_period,
                    reset_period_configuration=reset,
                    top_up_custom_currency_ref=pm.top_up_custom_currency_id,
                )
            )
    for ms in req.minimum_spend or ():
        specs.append(
            ChargeSpec(
                is_overage=False,
                billing_model="MINIMUM_SPEND",
                billing_period=ms.billing_period,
                price_amount=ms.minimum.amount,
                price_currency=ms.minimum.currency,
            )
        )
    for om in req.overage_pricing_models:
        feature_ref = om.feature_id or (om.entitlement.feature_id if om.entitlement else None)
        for pp in om.price_periods:
            specs.append(
                _spec(
                    pp,
                    is_overage=True,
                    billing_model="CREDIT_BASED" if om.currency_id else "USAGE_BASED",
                    feature_ref=feature_ref,
                    custom_currency_ref=om.currency_id,
                    tiers_mode="GRADUATED" if pp.tiers is not None else None,
                )
            )
    return specs
