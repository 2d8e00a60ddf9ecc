"""Pure rules of plans and add-ons (no I/O): what a package may contain, and how packages combine.

Validation (`check_feature_entitlement`, `reset_configuration`, `check_pricing`) raises
`InvalidArgument` (or `NotFound` for a feature the caller could not find) with a message naming the
offending field; callers pass in what they loaded. The combination functions are what the entitlement
engine calls:

- **Inheritance** (`effective_package_entitlements`): a plan with a parent plan has every entitlement
  of its parent (recursively), except where it defines an entitlement for the same feature or
  currency itself: then its own definition replaces the inherited one as a whole (the nearest
  definition wins; limits are not added up along the chain).
- **Add-ons** (`with_addons`): an add-on entitlement with behavior *Increment* adds its limit (or
  credit amount) times the add-on quantity to the plan's; *Override* replaces the plan's outright
  (several overrides: the most generous wins). The per-feature arithmetic is the entitlement engine's
  (`entitle.catalog.packages.allowance.subscription_allowance`), so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from entitle.catalog.packages.allowance import AddonGrant, Allowance, subscription_allowance
from entitle.catalog.packages.models import PackageCharge, PackageEntitlement
from entitle.catalog.packages.schemas import (
    ChargesIn,
    OveragePricingModelIn,
    PricePeriodIn,
    PricingModelIn,
    TierIn,
    decimal_text,
)
from entitle.errors import InvalidArgument, NotFound

Key = tuple[str, str]
"""An entitlement's identity inside a package: (type FEATURE|CREDIT, feature id or currency id)."""


# ---------------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureShape:
    """What the rules need to know about a feature."""

    ref_id: str
    feature_type: str
    meter_type: str = "None"
    enum_values: frozenset[str] = frozenset()
    archived: bool = False

    @property
    def metered(self) -> bool:
        """Usage is measured (INCREMENTAL or FLUCTUATING)."""
        return self.meter_type != "None"

    @property
    def resettable(self) -> bool:
        """Usage that accumulates (INCREMENTAL) can be reset each period. A FLUCTUATING count (seats)
        is a current level, not an accumulation, so it never resets; a configuration number
        (meterType None) has no usage at all."""
        return self.meter_type == "INCREMENTAL"


def reset_configuration(
    reset_period: str | None, monthly: str | None, weekly: str | None, yearly: str | None
) -> dict[str, str] | None:
    """The stored `resetPeriodConfiguration` for a reset period and the anchors sent with it.

    A monthly anchor goes only with MONTH, a weekly one only with WEEK, a yearly one only with YEAR;
    DAY and HOUR take none. MONTH/WEEK/YEAR without an anchor reset on the subscription's start
    (`SubscriptionStart`), which is what the configuration would say anyway.
    """
    given = {"MONTH": ("monthly", monthly), "WEEK": ("weekly", weekly), "YEAR": ("yearly", yearly)}
    for period, (name, anchor) in given.items():
        if anchor is not None and reset_period != period:
            raise InvalidArgument(
                f"{name}ResetPeriodConfiguration goes with resetPeriod {period}, not {reset_period or 'none'}"
            )
    if reset_period is None or reset_period not in given:
        return None
    return {"accordingTo": given[reset_period][1] or "SubscriptionStart"}


def check_feature_entitlement(
    feature: FeatureShape,
    *,
    usage_limit: Decimal | None,
    has_unlimited_usage: bool,
    has_soft_limit: bool,
    reset_period: str | None,
    enum_values: Sequence[str] | None,
) -> None:
    """A feature entitlement must fit its feature:

    - the feature is not archived;
    - BOOLEAN: no usageLimit, hasUnlimitedUsage, hasSoftLimit, resetPeriod or enumValues;
    - NUMBER: a usageLimit >= 0 or hasUnlimitedUsage (not both), no enumValues; a resetPeriod only
      when the feature's usage accumulates (meterType INCREMENTAL, see `FeatureShape.resettable`);
    - ENUM: a non-empty list of distinct enumValues, each one of the feature's values; no limit,
      soft limit or reset.
    """
    ref = feature.ref_id
    if feature.archived:
        raise InvalidArgument(f"feature '{ref}' is archived")
    if feature.feature_type == "BOOLEAN":
        if usage_limit is not None or has_unlimited_usage or has_soft_limit or reset_period or enum_values:
            raise InvalidArgument(
                f"'{ref}' is a BOOLEAN feature: it takes no usageLimit, hasUnlimitedUsage, hasSoftLimit, "
                "resetPeriod or enumValues"
            )
        return
    if feature.feature_type == "NUMBER":
        if enum_values:
            raise InvalidArgument(f"'{ref}' is a NUMBER feature: enumValues are only for ENUM features")
        if usage_limit is None and not has_unlimited_usage:
            raise InvalidArgument(f"'{ref}' is a NUMBER feature: it needs usageLimit or hasUnlimitedUsage")
        if usage_limit is not None and has_unlimited_usage:
            raise InvalidArgument(f"'{ref}': usageLimit and hasUnlimitedUsage exclude each other")
        if usage_limit is not None and usage_limit < 0:
            raise InvalidArgument(f"'{ref}': usageLimit cannot be negative")
        if reset_period and not feature.resettable:
            raise InvalidArgument(
                f"'{ref}' has meterType {feature.meter_type}: "
                "only an INCREMENTAL metered feature can have a resetPeriod"
            )
        return
    if feature.feature_type == "ENUM":
        if usage_limit is not None or has_unlimited_usage or has_soft_limit or reset_period:
            raise InvalidArgument(
                f"'{ref}' is an ENUM feature: it takes enumValues, not a limit, soft limit or resetPeriod"
            )
        if not enum_values:
            raise InvalidArgument(f"'{ref}' is an ENUM feature: grant a non-empty enumValues list")
        if len(set(enum_values)) != len(enum_values):
            raise InvalidArgument(f"'{ref}': enumValues must be distinct")
        unknown = set(enum_values) - feature.enum_values
        if unknown:
            raise InvalidArgument(f"feature '{ref}' has no value(s) {', '.join(sorted(unknown))}")
        return
    raise InvalidArgument(f"feature '{ref}' has an unknown type {feature.feature_type}")


# ---------------------------------------------------------------------------------------------- pricing


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


def _currencies_of(pp: PricePeriodIn) -> set[str]:
    found: set[str] = set()
    if pp.price is not None:
        found.add(pp.price.currency)
    for tier in pp.tiers or ():
        for price in (tier.unit_price, tier.flat_price):
            if price is not None:
                found.add(price.currency)
    return found


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
    for pm in req.pricing_models:
        for pp in pm.price_periods:
            by_country.setdefault(_country(pp.billing_country_code), set()).update(_currencies_of(pp))
    for om in req.overage_pricing_models:
        for pp in om.price_periods:
            by_country.setdefault(_country(pp.billing_country_code), set()).update(_currencies_of(pp))
    for ms in req.minimum_spend or ():
        by_country.setdefault(None, set()).add(ms.minimum.currency)
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


# ---------------------------------------------------------------------------------------------- graphs


class CycleError(ValueError):
    def __init__(self, path: list[str]) -> None:
        super().__init__(" -> ".join(path))
        self.path = path


def parent_chain(ref: str, parent_of: Mapping[str, str | None]) -> list[str]:
    """`[ref, parent, grandparent, ...]`, following `parent_of` until a plan with no parent (or one
    `parent_of` does not know). Raises `CycleError` when the chain comes back on itself."""
    chain = [ref]
    seen = {ref}
    current = parent_of.get(ref)
    while current is not None:
        if current in seen:
            raise CycleError([*chain, current])
        chain.append(current)
        seen.add(current)
        current = parent_of.get(current)
    return chain


def find_cycle(start: str, edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A path `start -> ... -> start` through `edges` (e.g. add-on dependencies), or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    visited: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in visited:
                visited.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


# ---------------------------------------------------------------------------------------------- combination


@dataclass(frozen=True)
class EntitlementTerms:
    """A package entitlement as the calculations see it. For CREDIT, `amount` is the grant per
    `cadence`; for FEATURE, `usage_limit`/`has_unlimited_usage`/`enum_values` describe the grant."""

    type: str
    ref_id: str
    behavior: str = "Increment"
    is_granted: bool = True
    usage_limit: Decimal | None = None
    has_unlimited_usage: bool = False
    has_soft_limit: bool = False
    reset_period: str | None = None
    reset_anchor: str | None = None
    enum_values: frozenset[str] | None = None
    amount: Decimal | None = None
    cadence: str | None = None
    # CREDIT: the amount is per unit of this feature's quantity on the subscription.
    dependency_feature_ref: str | None = None

    @property
    def key(self) -> Key:
        return (self.type, self.ref_id)

    def allowance(self) -> Allowance:
        return Allowance(
            usage_limit=self.amount if self.type == "CREDIT" else self.usage_limit,
            has_unlimited=self.has_unlimited_usage,
            has_soft_limit=self.has_soft_limit,
            enum_values=self.enum_values,
            reset_period=self.reset_period,
            reset_anchor=self.reset_anchor,
        )

    def with_allowance(self, a: Allowance) -> EntitlementTerms:
        if self.type == "CREDIT":
            return replace(self, is_granted=True, amount=a.usage_limit, has_soft_limit=a.has_soft_limit)
        return replace(
            self,
            is_granted=True,
            usage_limit=a.usage_limit,
            has_unlimited_usage=a.has_unlimited,
            has_soft_limit=a.has_soft_limit,
            enum_values=a.enum_values,
            reset_period=a.reset_period,
            reset_anchor=a.reset_anchor,
        )


def terms_of(e: PackageEntitlement) -> EntitlementTerms:
    """The stored entitlement row as `EntitlementTerms`."""
    anchor = (e.reset_period_configuration or {}).get("accordingTo")
    return EntitlementTerms(
        type=e.entitlement_type,
        ref_id=e.ref_id,
        behavior=e.behavior,
        is_granted=e.is_granted,
        usage_limit=e.usage_limit,
        has_unlimited_usage=bool(e.has_unlimited_usage),
        has_soft_limit=bool(e.has_soft_limit),
        reset_period=e.reset_period,
        reset_anchor=anchor,
        enum_values=frozenset(e.enum_values) if e.enum_values is not None else None,
        amount=e.amount,
        cadence=e.cadence,
        dependency_feature_ref=e.dependency_feature_ref,
    )


def effective_package_entitlements(chain: Sequence[Iterable[EntitlementTerms]]) -> dict[Key, EntitlementTerms]:
    """A plan's entitlements with inheritance applied.

    `chain[0]` is the plan's own entitlements, `chain[1]` its parent's, `chain[2]` the grandparent's,
    and so on (see `parent_chain`). For each (type, id) the nearest definition wins whole: a plan's
    own entitlement replaces what it would inherit, and an entitlement it does not define is
    inherited from the nearest ancestor that does. An inherited entitlement that is not granted
    (`isGranted` false) is kept as such, so a child can also withhold a feature its parent grants by
    defining it with `isGranted` false.
    """
    result: dict[Key, EntitlementTerms] = {}
    for level in chain:
        for terms in level:
            result.setdefault(terms.key, terms)
    return result


def with_addons(
    base: Mapping[Key, EntitlementTerms], addons: Iterable[tuple[Iterable[EntitlementTerms], int]]
) -> dict[Key, EntitlementTerms]:
    """The plan's (effective) entitlements combined with add-ons bought in the given quantities.

    For each feature or currency an add-on entitles: *Increment* adds `limit x quantity` to the
    plan's limit (credit amounts likewise; unlimited absorbs; enum values are unioned); *Override*
    replaces the plan's entitlement (with several overrides the most generous wins; increments still
    apply on top). An add-on may entitle a feature the plan does not have: it is granted from zero.
    Add-ons bought with quantity 0 and add-on entitlements with `isGranted` false count for nothing;
    a plan entitlement that is not granted is treated as absent. Negative quantities raise ValueError.
    """
    grants: dict[Key, list[tuple[EntitlementTerms, int]]] = {}
    for entitlements, quantity in addons:
        if quantity < 0:
            raise ValueError("add-on quantity cannot be negative")
        for terms in entitlements:
            if quantity > 0 and terms.is_granted:
                grants.setdefault(terms.key, []).append((terms, quantity))
    result = dict(base)
    for key, items in grants.items():
        plan = base.get(key)
        plan_allowance = plan.allowance() if plan is not None and plan.is_granted else None
        combined = subscription_allowance(plan_allowance, [AddonGrant(t.allowance(), t.behavior, q) for t, q in items])
        template = plan if plan is not None else items[0][0]
        assert combined is not None  # there is at least one grant
        result[key] = template.with_allowance(combined)
    return result
