"""Plan and add-on wire shapes (stigg/types/v1/plan*.py, addon*.py, plans/*, addons/*)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from entitle.catalog.packages.models import PackageCharge, PackageEntitlement, PackageView
from entitle.http.wire import (
    Amount,
    LongText,
    Metadata,
    NonNegInt,
    RefId,
    ShortText,
    Unsupported,
    WireModel,
    unsupported_values,
)
from entitle.money import Currency

PackageStatus = Literal["DRAFT", "PUBLISHED", "ARCHIVED"]
PricingType = Literal["FREE", "PAID", "CUSTOM"]
ResetPeriod = Literal["YEAR", "MONTH", "WEEK", "DAY", "HOUR"]
Behavior = Literal["Increment", "Override"]
WidgetType = Literal["PAYWALL", "CUSTOMER_PORTAL", "CHECKOUT"]
BillingPeriod = Literal["MONTHLY", "ANNUALLY"]
BillingModel = Literal["FLAT_FEE", "MINIMUM_SPEND", "PER_UNIT", "USAGE_BASED", "CREDIT_BASED"]
BillingCadence = Literal["RECURRING", "ONE_OFF"]
TiersMode = Literal["VOLUME", "GRADUATED"]
CreditCadence = Literal["MONTH", "YEAR"]
CreditGrantCadence = Literal["BEGINNING_OF_BILLING_PERIOD", "MONTHLY"]
OverageBillingPeriod = Literal["ON_SUBSCRIPTION_RENEWAL", "MONTHLY"]
MigrationType = Literal["NEW_CUSTOMERS", "ALL_CUSTOMERS"]
MonthlyAnchor = Literal["SubscriptionStart", "StartOfTheMonth"]
WeeklyAnchor = Literal[
    "SubscriptionStart",
    "EverySunday",
    "EveryMonday",
    "EveryTuesday",
    "EveryWednesday",
    "EveryThursday",
    "EveryFriday",
    "EverySaturday",
]
YearlyAnchor = Literal["SubscriptionStart"]

NonNegAmount = Annotated[Amount, Field(ge=0)]
PositiveAmount = Annotated[Amount, Field(gt=0)]
CountryCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]
Quantity = Annotated[int, Field(ge=1, le=2**31)]


# ---------------------------------------------------------------------------------------------- shared parts


class MonthlyReset(WireModel):
    according_to: MonthlyAnchor


class WeeklyReset(WireModel):
    according_to: WeeklyAnchor


class YearlyReset(WireModel):
    according_to: YearlyAnchor


class ResetFields(WireModel):
    """`resetPeriod` with its three anchor configurations, as every entitlement-like body carries them."""

    reset_period: ResetPeriod | None = None
    monthly_reset_period_configuration: MonthlyReset | None = None
    weekly_reset_period_configuration: WeeklyReset | None = None
    yearly_reset_period_configuration: YearlyReset | None = None

    def anchors(self) -> tuple[str | None, str | None, str | None]:
        m, w, y = (
            self.monthly_reset_period_configuration,
            self.weekly_reset_period_configuration,
            self.yearly_reset_period_configuration,
        )
        return (m.according_to if m else None, w.according_to if w else None, y.according_to if y else None)


class TrialBudget(WireModel):
    has_soft_limit: bool
    limit: NonNegAmount


# A trial lasts whole days or months, at most a century: a longer one ends past the dates a subscription can
# hold (year 9999), and a plan carrying it could never be subscribed to.
TRIAL_MAX = {"DAY": 36_500, "MONTH": 1_200}


class TrialConfig(WireModel):
    duration: PositiveAmount
    units: Literal["DAY", "MONTH"]
    # A trial's spending cap is not enforced.
    budget: Unsupported[TrialBudget] = None
    trial_end_behavior: Literal["CONVERT_TO_PAID", "CANCEL_SUBSCRIPTION"] | None = None

    @model_validator(mode="after")
    def _whole_and_bounded(self) -> TrialConfig:
        if self.duration != self.duration.to_integral_value():
            raise ValueError("duration: a trial lasts a whole number of days or months")
        most = TRIAL_MAX[self.units]
        if self.duration > most:
            raise ValueError(f"duration: a trial lasts at most {most} {self.units.lower()}s")
        return self

    def to_doc(self) -> dict[str, Any]:
        """Stored form: wire names, amounts as exact decimal strings."""
        return {
            "duration": decimal_text(self.duration),
            "units": self.units,
            "budget": (
                {"hasSoftLimit": self.budget.has_soft_limit, "limit": decimal_text(self.budget.limit)}
                if self.budget
                else None
            ),
            "trialEndBehavior": self.trial_end_behavior,
        }


# ---------------------------------------------------------------------------------------------- plans, add-ons


# A plan's or add-on's product at the billing provider: the catalog sync makes its own and links it.
PackageBillingId = Unsupported[ShortText]


class PlanCreate(WireModel):
    id: RefId
    display_name: ShortText = Field(min_length=1)
    product_id: RefId
    description: LongText | None = None
    billing_id: PackageBillingId = None
    metadata: Metadata | None = None
    parent_plan_id: RefId | None = None
    pricing_type: PricingType | None = None
    status: PackageStatus | None = None
    default_trial_config: TrialConfig | None = None


class AddonCreate(WireModel):
    id: RefId
    display_name: ShortText = Field(min_length=1)
    product_id: RefId
    description: LongText | None = None
    billing_id: PackageBillingId = None
    max_quantity: Quantity | None = None
    metadata: Metadata | None = None
    pricing_type: PricingType | None = None
    status: PackageStatus | None = None


class PriceIn(WireModel):
    amount: NonNegAmount
    currency: Currency = "usd"


class TierIn(WireModel):
    up_to: PositiveAmount | None = None
    unit_price: PriceIn | None = None
    flat_price: PriceIn | None = None


class CreditRateIn(WireModel):
    amount: PositiveAmount
    currency_id: RefId
    cost_formula: LongText | None = None


class PricePeriodIn(WireModel):
    billing_period: BillingPeriod
    billing_country_code: CountryCode | None = None
    block_size: PositiveAmount | None = None
    credit_grant_cadence: CreditGrantCadence | None = None
    credit_rate: CreditRateIn | None = None
    price: PriceIn | None = None
    tiers: list[TierIn] | None = Field(default=None, max_length=100)


class PricingModelIn(ResetFields):
    billing_model: BillingModel
    price_periods: list[PricePeriodIn] = Field(min_length=1, max_length=100)
    # A one-off charge is neither added to the provider subscription nor to an invoice of its own yet.
    billing_cadence: Annotated[BillingCadence, unsupported_values("ONE_OFF")] = "RECURRING"
    feature_id: RefId | None = None
    min_unit_quantity: NonNegInt | None = None
    max_unit_quantity: NonNegInt | None = None
    tiers_mode: TiersMode | None = None
    top_up_custom_currency_id: RefId | None = None
    # Usage resets with the feature's entitlement (its resetPeriod), not with a price.
    reset_period: Unsupported[ResetPeriod] = None
    monthly_reset_period_configuration: Unsupported[MonthlyReset] = None
    weekly_reset_period_configuration: Unsupported[WeeklyReset] = None
    yearly_reset_period_configuration: Unsupported[YearlyReset] = None


class OverageEntitlementIn(ResetFields):
    feature_id: RefId
    usage_limit: NonNegAmount | None = None
    has_unlimited_usage: bool | None = None
    has_soft_limit: bool | None = None


class OverageCreditEntitlementIn(WireModel):
    amount: NonNegAmount
    cadence: CreditCadence
    custom_currency_id: RefId


class OveragePricingModelIn(WireModel):
    price_periods: list[PricePeriodIn] = Field(min_length=1, max_length=100)
    feature_id: RefId | None = None
    currency_id: RefId | None = None
    entitlement: OverageEntitlementIn | None = None
    credit_entitlement: OverageCreditEntitlementIn | None = None


class MinimumSpendIn(WireModel):
    billing_period: BillingPeriod
    minimum: PriceIn


class ChargesIn(WireModel):
    """The `charges` of a PATCH: a full replace of the draft's pricing."""

    pricing_type: PricingType
    billing_id: PackageBillingId = None
    # Overage is billed with the subscription's renewal (a metered item of the provider subscription).
    overage_billing_period: Annotated[OverageBillingPeriod, unsupported_values("MONTHLY")] | None = None
    minimum_spend: list[MinimumSpendIn] | None = Field(default=None, max_length=10)
    pricing_models: list[PricingModelIn] = Field(default_factory=list, max_length=100)
    overage_pricing_models: list[OveragePricingModelIn] = Field(default_factory=list, max_length=100)


class PlanUpdate(WireModel):
    display_name: ShortText | None = Field(default=None, min_length=1)
    description: LongText | None = None
    billing_id: PackageBillingId = None
    metadata: Metadata | None = None
    parent_plan_id: RefId | None = None
    compatible_addon_ids: list[RefId] | None = Field(default=None, max_length=500)
    default_trial_config: TrialConfig | None = None
    charges: ChargesIn | None = None


class AddonUpdate(WireModel):
    display_name: ShortText | None = Field(default=None, min_length=1)
    description: LongText | None = None
    billing_id: PackageBillingId = None
    max_quantity: Quantity | None = None
    metadata: Metadata | None = None
    dependencies: list[RefId] | None = Field(default=None, max_length=500)
    status: PackageStatus | None = None
    charges: ChargesIn | None = None


class PublishIn(WireModel):
    migration_type: MigrationType


# ---------------------------------------------------------------------------------------------- entitlements


class EntitlementCommon(WireModel):
    behavior: Behavior | None = None
    is_granted: bool | None = None
    is_custom: bool | None = None
    order: Amount | None = None
    description: LongText | None = None
    display_name_override: ShortText | None = None
    hidden_from_widgets: list[WidgetType] | None = Field(default=None, max_length=3)
    has_soft_limit: bool | None = None


class FeatureEntitlementFields(EntitlementCommon, ResetFields):
    usage_limit: NonNegInt | None = None
    has_unlimited_usage: bool | None = None
    enum_values: list[Annotated[str, Field(min_length=1, max_length=1024)]] | None = Field(default=None, max_length=500)


class FeatureEntitlementIn(FeatureEntitlementFields):
    type: Literal["FEATURE"]
    id: RefId


class FeatureEntitlementUpdate(FeatureEntitlementFields):
    type: Literal["FEATURE"]


class CreditEntitlementFields(EntitlementCommon):
    amount: NonNegAmount | None = None
    cadence: CreditCadence | None = None
    dependency_feature_id: RefId | None = None


class CreditEntitlementIn(CreditEntitlementFields):
    type: Literal["CREDIT"]
    id: RefId
    # `amount` and `cadence` must be sent (amount may be null).
    amount: NonNegAmount | None
    cadence: CreditCadence


class CreditEntitlementUpdate(CreditEntitlementFields):
    type: Literal["CREDIT"]


EntitlementIn = Annotated[FeatureEntitlementIn | CreditEntitlementIn, Field(discriminator="type")]
EntitlementUpdate = Annotated[FeatureEntitlementUpdate | CreditEntitlementUpdate, Field(discriminator="type")]


class EntitlementsCreate(WireModel):
    entitlements: list[EntitlementIn] = Field(min_length=1, max_length=500)


# ---------------------------------------------------------------------------------------------- responses


class EntitlementRef(WireModel):
    id: str
    type: str


class TrialBudgetOut(WireModel):
    has_soft_limit: bool
    limit: Amount


class TrialConfigOut(WireModel):
    duration: Amount
    units: str
    budget: TrialBudgetOut | None = None
    trial_end_behavior: str | None = None


def _package_fields(view: PackageView) -> dict[str, Any]:
    p = view.package
    return {
        "id": p.ref_id,
        "display_name": p.display_name,
        "product_id": view.product_ref,
        "status": p.status,
        "version_number": p.version_number,
        "metadata": p.metadata_ or {},
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "entitlements": [{"id": e.ref_id, "type": e.entitlement_type} for e in view.entitlements],
        "billing_id": p.billing_id,
        "description": p.description,
        "is_latest": p.is_latest,
        "pricing_type": p.pricing_type,
    }


class PlanOut(WireModel):
    id: str
    display_name: str
    product_id: str
    status: str
    version_number: int
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    entitlements: list[EntitlementRef]
    billing_id: str | None = None
    description: str | None = None
    is_latest: bool | None = None
    parent_plan_id: str | None = None
    pricing_type: str | None = None
    compatible_addon_ids: list[str] | None = None
    default_trial_config: TrialConfigOut | None = None

    @classmethod
    def of(cls, view: PackageView) -> PlanOut:
        p = view.package
        return cls.model_validate(
            {
                **_package_fields(view),
                "parent_plan_id": p.parent_plan_ref,
                "compatible_addon_ids": p.compatible_addon_ids,
                "default_trial_config": p.default_trial_config,
            }
        )


class AddonOut(WireModel):
    id: str
    display_name: str
    product_id: str
    status: str
    version_number: int
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    entitlements: list[EntitlementRef]
    billing_id: str | None = None
    description: str | None = None
    is_latest: bool | None = None
    pricing_type: str | None = None
    max_quantity: int | None = None
    dependencies: list[str] | None = None

    @classmethod
    def of(cls, view: PackageView) -> AddonOut:
        p = view.package
        return cls.model_validate(
            {**_package_fields(view), "max_quantity": p.max_quantity, "dependencies": p.dependencies}
        )


class FeatureEntitlementOut(WireModel):
    type: Literal["FEATURE"] = "FEATURE"
    id: str
    behavior: str
    is_granted: bool
    hidden_from_widgets: list[str]
    created_at: datetime
    updated_at: datetime
    usage_limit: Amount | None = None
    has_unlimited_usage: bool | None = None
    has_soft_limit: bool | None = None
    reset_period: str | None = None
    reset_period_configuration: dict[str, Any] | None = None
    enum_values: list[str] | None = None
    is_custom: bool | None = None
    order: Amount | None = None
    description: str | None = None
    display_name_override: str | None = None


class CreditEntitlementOut(WireModel):
    type: Literal["CREDIT"] = "CREDIT"
    id: str
    behavior: str
    is_granted: bool
    hidden_from_widgets: list[str]
    created_at: datetime
    updated_at: datetime
    amount: Amount | None = None
    cadence: str | None = None
    dependency_feature_id: str | None = None
    has_soft_limit: bool | None = None
    is_custom: bool | None = None
    order: Amount | None = None
    description: str | None = None
    display_name_override: str | None = None


EntitlementOut = FeatureEntitlementOut | CreditEntitlementOut


def entitlement_out(e: PackageEntitlement) -> EntitlementOut:
    common: dict[str, Any] = {
        "id": e.ref_id,
        "behavior": e.behavior,
        "is_granted": e.is_granted,
        "hidden_from_widgets": list(e.hidden_from_widgets or []),
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "has_soft_limit": e.has_soft_limit,
        "is_custom": e.is_custom,
        "order": e.order,
        "description": e.description,
        "display_name_override": e.display_name_override,
    }
    if e.entitlement_type == "CREDIT":
        return CreditEntitlementOut.model_validate(
            {**common, "amount": e.amount, "cadence": e.cadence, "dependency_feature_id": e.dependency_feature_ref}
        )
    return FeatureEntitlementOut.model_validate(
        {
            **common,
            "usage_limit": e.usage_limit,
            "has_unlimited_usage": e.has_unlimited_usage,
            "reset_period": e.reset_period,
            "reset_period_configuration": e.reset_period_configuration,
            "enum_values": e.enum_values,
        }
    )


class PriceOut(WireModel):
    amount: Amount
    currency: str


class TierOut(WireModel):
    up_to: Amount | None = None
    unit_price: PriceOut | None = None
    flat_price: PriceOut | None = None


class CreditRateOut(WireModel):
    amount: Amount
    currency_id: str
    cost_formula: str | None = None


class ChargeOut(WireModel):
    id: str
    billing_model: str
    billing_cadence: str
    billing_period: str
    created_at: datetime
    feature_id: str | None = None
    price: PriceOut | None = None
    tiers: list[TierOut] | None = None
    tiers_mode: str | None = None
    block_size: Amount | None = None
    min_unit_quantity: int | None = None
    max_unit_quantity: int | None = None
    billing_country_code: str | None = None
    billing_id: str | None = None
    credit_grant_cadence: str | None = None
    credit_rate: CreditRateOut | None = None
    top_up_custom_currency_id: str | None = None
    crm_id: str | None = None
    crm_link_url: str | None = None
    used_in_subscriptions: bool | None = None

    @classmethod
    def of(cls, c: PackageCharge) -> ChargeOut:
        price = None
        if c.price_amount is not None:
            price = {"amount": c.price_amount, "currency": c.price_currency or "usd"}
        credit_rate = None
        if c.credit_rate_amount is not None and c.credit_rate_currency_ref is not None:
            credit_rate = {
                "amount": c.credit_rate_amount,
                "currency_id": c.credit_rate_currency_ref,
                "cost_formula": c.credit_rate_cost_formula,
            }
        return cls.model_validate(
            {
                "id": c.charge_id,
                "billing_model": c.billing_model,
                "billing_cadence": c.billing_cadence,
                "billing_period": c.billing_period,
                "created_at": c.created_at,
                "feature_id": c.feature_ref,
                "price": price,
                "tiers": c.tiers,
                "tiers_mode": c.tiers_mode,
                "block_size": c.block_size,
                "min_unit_quantity": c.min_unit_quantity,
                "max_unit_quantity": c.max_unit_quantity,
                "billing_country_code": c.billing_country_code,
                "billing_id": c.billing_id,
                "credit_grant_cadence": c.credit_grant_cadence,
                "credit_rate": credit_rate,
                "top_up_custom_currency_id": c.top_up_custom_currency_ref,
            }
        )


def decimal_text(value: Decimal) -> str:
    """Exact decimal text for JSON documents (tiers, trial budget): never a float."""
    return format(value.normalize(), "f")
