"""Subscription wire shapes (stigg/types/v1/subscription*.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, model_validator

from entitle.catalog.packages.schemas import ResetFields
from entitle.customers.schemas import Address, CustomerProvision, TaxId
from entitle.http.wire import (
    Amount,
    Metadata,
    NonNegAmount,
    NonNegInt,
    RefId,
    ShortText,
    Unsupported,
    WireModel,
    unsupported_values,
)
from entitle.money import Currency
from entitle.sync_states import SyncStateOut

BillingPeriod = Literal["MONTHLY", "ANNUALLY"]
SUBSCRIPTION_STATUSES: tuple[str, ...] = (
    "PAYMENT_PENDING",
    "ACTIVE",
    "EXPIRED",
    "IN_TRIAL",
    "CANCELED",
    "NOT_STARTED",
)
PRICING_TYPES: tuple[str, ...] = ("FREE", "PAID", "CUSTOM")
BILLING_PERIODS: tuple[str, ...] = get_args(BillingPeriod)
# A deferred change waits for the end of the billing period; the end of the billing month is not computed.
ScheduleStrategy = Annotated[
    Literal["END_OF_BILLING_PERIOD", "END_OF_BILLING_MONTH", "IMMEDIATE"], unsupported_values("END_OF_BILLING_MONTH")
]


class AddonQuantity(WireModel):
    id: RefId
    quantity: int = Field(ge=0, le=100_000)


class ChargeQuantity(WireModel):
    """FEATURE: a per-unit charge's units (`id` = the feature). CREDIT: how many units of the plan's credit
    charge in that currency (`id` = the custom currency) the subscription buys; each grants the charge's
    `creditRate.amount` credits per grant period and costs its price (docs/credits.md, "Credit charges")."""

    id: RefId
    quantity: Amount = Field(ge=0)
    type: Literal["FEATURE", "CREDIT"] = "FEATURE"


CREDIT_PLACES = 6  # the credits domain's precision (entitle.credits.rules.PLACES), checked here on the way in


class EntitlementOverride(ResetFields):
    type: Literal["FEATURE", "CREDIT"]
    id: RefId
    usage_limit: NonNegInt | None = None
    has_unlimited_usage: bool | None = None
    has_soft_limit: bool | None = None
    # CREDIT (id = the custom currency): the subscription's own grant per cadence, granted as the plan's.
    amount: NonNegAmount | None = None
    cadence: Literal["MONTH", "YEAR"] | None = None

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> EntitlementOverride:
        if self.type == "CREDIT":
            feature_only = (
                "usage_limit",
                "has_unlimited_usage",
                "reset_period",
                "monthly_reset_period_configuration",
                "weekly_reset_period_configuration",
                "yearly_reset_period_configuration",
            )
            sent = [name for name in feature_only if getattr(self, name, None) is not None]
            if sent:
                raise ValueError(f"a CREDIT entitlement takes amount and cadence, not {', '.join(sent)}")
            if self.amount is None or self.cadence is None:
                raise ValueError("a CREDIT entitlement needs amount and cadence (MONTH or YEAR)")
            if self.amount != self.amount.quantize(Decimal(1).scaleb(-CREDIT_PLACES)):
                raise ValueError(f"amount: at most {CREDIT_PLACES} decimal places")
        elif self.amount is not None or self.cadence is not None:
            raise ValueError("amount and cadence are for CREDIT entitlements")
        return self

    def anchor(self) -> str | None:
        """The configured anchor of the chosen reset period (None: the period's default)."""
        monthly, weekly, yearly = self.anchors()
        return {"MONTH": monthly, "WEEK": weekly, "YEAR": yearly}.get(self.reset_period or "")


class TrialOverride(WireModel):
    is_trial: bool
    trial_end_behavior: Literal["CONVERT_TO_PAID", "CANCEL_SUBSCRIPTION"] | None = None
    trial_end_date: datetime | None = None


class CreditRateOverride(WireModel):
    """How many credits of the custom currency one unit of a credit-priced feature costs this subscription."""

    amount: Amount = Field(gt=0)
    currency_id: RefId
    # The catalog keeps a rate's cost formula without evaluating it: an override of one would change nothing.
    cost_formula: Unsupported[ShortText] = None


class PriceOverride(WireModel):
    """One price of the subscription replaced for this subscription only: the plan's base charge
    (`baseCharge`), the plan's per-unit or usage price of a feature (`featureId`), or an add-on's price
    (`addonId`); `amount` is the new flat amount or unit price, in the charge's currency. With `creditRate`
    instead of `amount`, a `featureId` priced in credits costs that many credits per unit."""

    addon_id: RefId | None = None
    feature_id: RefId | None = None
    base_charge: bool | None = None
    amount: NonNegAmount | None = None
    currency: Currency | None = None
    credit_rate: CreditRateOverride | None = None
    # A price override for one billing country, new tiers or a new block size would each need a second
    # price model next to the catalog's; a price granting credits (`currencyId`, `creditGrantCadence`) is
    # the plan's credit entitlement to override instead.
    billing_country_code: Unsupported[ShortText] = None
    block_size: Unsupported[Amount] = None
    tiers: Unsupported[list[dict[str, Any]]] = None
    credit_grant_cadence: Unsupported[Literal["BEGINNING_OF_BILLING_PERIOD", "MONTHLY"]] = None
    currency_id: Unsupported[RefId] = None

    @model_validator(mode="after")
    def _one_target(self) -> PriceOverride:
        targets = [bool(self.base_charge), self.feature_id is not None, self.addon_id is not None]
        if sum(targets) != 1:
            raise ValueError("a price override names exactly one of baseCharge: true, featureId or addonId")
        if self.credit_rate is not None:
            if self.feature_id is None:
                raise ValueError("a creditRate override names the credit-priced feature (featureId)")
            if self.amount is not None or self.currency is not None:
                raise ValueError("a creditRate override sets the credits per unit, not an amount or currency")
        elif self.amount is None:
            raise ValueError("a price override gives its amount (or, for a credit-priced feature, its creditRate)")
        return self

    def key(self) -> tuple[str, str]:
        """What it overrides: ("BASE", ""), ("FEATURE", featureId), ("ADDON", addonId) or, for a credit
        rate, ("CREDIT_RATE", featureId)."""
        if self.credit_rate is not None and self.feature_id is not None:
            return ("CREDIT_RATE", self.feature_id)
        if self.feature_id is not None:
            return ("FEATURE", self.feature_id)
        if self.addon_id is not None:
            return ("ADDON", self.addon_id)
        return ("BASE", "")


PriceOverrides = Annotated[list[PriceOverride], Field(max_length=100)]


class Budget(WireModel):
    has_soft_limit: bool
    limit: Amount


class MoneyAmount(WireModel):
    amount: Amount | None = None
    currency: Currency | None = None


class AppliedCoupon(WireModel):
    coupon_id: RefId | None = None
    billing_coupon_id: Unsupported[ShortText] = None
    # A Stripe promotion code: resolved at Stripe to its coupon, which must be an Entitle coupon (400 otherwise).
    promotion_code: ShortText | None = None
    configuration: Unsupported[dict[str, Any]] = None
    discount: Unsupported[dict[str, Any]] = None


class PreviewAppliedCoupon(AppliedCoupon):
    """A promotion code is looked up at the billing provider, as provisioning looks it up (before the
    preview's read transaction), and previewed as the Entitle coupon it applies."""


class CheckoutOptions(WireModel):
    success_url: ShortText
    cancel_url: ShortText
    allow_promo_codes: bool | None = None
    allow_tax_id_collection: bool | None = None
    collect_billing_address: bool | None = None
    collect_phone_number: bool | None = None
    reference_id: ShortText | None = None


class BillingInformation(WireModel):
    """`billingInformation` of a provisioning. The honoured fields stay loosely typed here: their checks
    (and messages) are where they are used, `rules.days_until_due` and the billing adapter's
    `choose_integration`, which read the wire form (`wire()`)."""

    integration_id: Any = None
    invoice_days_until_due: Any = None
    # Forwarded to the provider and not kept (docs/stripe.md, "Billing information"): the address and tax
    # ids to the provider customer, the rest to the provider subscription.
    billing_address: Address | None = None
    charge_on_behalf_of_account: Unsupported[ShortText] = None
    is_backdated: Unsupported[bool] = None
    is_invoice_paid: Unsupported[bool] = None
    metadata: Metadata | None = None
    # A plan change made now: how the provider prorates the subscription it changes in place (docs/stripe.md,
    # "Plan changes"; INVOICE_IMMEDIATELY when absent). A new subscription has nothing to prorate.
    proration_behavior: Any = None
    tax_ids: list[TaxId] | None = Field(default=None, max_length=25)
    tax_percentage: Amount | None = Field(default=None, ge=0, le=100)
    tax_rate_ids: list[ShortText] | None = Field(default=None, max_length=20)

    def wire(self) -> dict[str, Any]:
        """The fields sent, by their wire names."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class PreviewBillingInformation(BillingInformation):
    """The preview's amounts do not depend on which integration bills the subscription nor on when its
    invoices fall due, so `integrationId` and `invoiceDaysUntilDue` are accepted and change nothing there;
    taxes, addresses and proration choices would, and are refused."""

    billing_address: Unsupported[Address] = None
    metadata: Unsupported[Metadata] = None
    proration_behavior: Unsupported[Any] = None
    tax_ids: Unsupported[list[TaxId]] = None
    tax_percentage: Unsupported[Amount] = None
    tax_rate_ids: Unsupported[list[ShortText]] = None


class BillingInformationUpdate(BillingInformation):
    """`billingInformation` of an update: `prorationBehavior` chooses how the provider prorates the change."""

    proration_behavior: Any = None
    coupon_id: Unsupported[ShortText] = None


class SubscriptionParams(WireModel):
    """Everything of a provisioning request but the customer (our extension on customer provisioning)."""

    plan_id: RefId
    id: RefId | None = None
    billing_period: BillingPeriod | None = None
    unit_quantity: NonNegInt | None = None
    addons: list[AddonQuantity] | None = Field(default=None, max_length=100)
    charges: list[ChargeQuantity] | None = Field(default=None, max_length=100)
    entitlements: list[EntitlementOverride] | None = Field(default=None, max_length=500)
    start_date: datetime | None = None
    cancellation_date: datetime | None = None
    resource_id: RefId | None = None
    paying_customer_id: RefId | None = None
    billing_id: ShortText | None = None
    billing_country_code: ShortText | None = Field(default=None, max_length=16)
    billing_cycle_anchor: Unsupported[Literal["UNCHANGED", "NOW"]] = None
    schedule_strategy: ScheduleStrategy | None = None
    # A subscription the billing provider bills is charged or invoiced: collecting nothing is not supported yet.
    payment_collection_method: Annotated[Literal["CHARGE", "INVOICE", "NONE"], unsupported_values("NONE")] | None = None
    # false: active at once even when the provider has yet to collect the first payment.
    await_payment_confirmation: bool | None = None
    metadata: Metadata | None = None
    salesforce_id: Unsupported[ShortText] = None
    budget: Unsupported[Budget] = None
    minimum_spend: Unsupported[MoneyAmount] = None
    trial_override_configuration: TrialOverride | None = None
    applied_coupon: AppliedCoupon | None = None
    checkout_options: CheckoutOptions | None = None
    billing_information: BillingInformation | None = None
    price_overrides: PriceOverrides | None = None

    @model_validator(mode="after")
    def _unique_items(self) -> SubscriptionParams:
        for name, items in (("addons", self.addons), ("charges", self.charges), ("entitlements", self.entitlements)):
            ids = [(getattr(i, "type", ""), i.id) for i in items or []]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name}: each id may appear once")
        return self


class SubscriptionProvision(SubscriptionParams):
    customer_id: RefId


class CustomerProvisionWithSubscription(CustomerProvision):
    """`POST /api/v1/customers`: a customer and, in the same transaction, its first subscription (our
    extension, as the Node SDK's provisionCustomer) and its products' start plans."""

    subscription_params: SubscriptionParams | None = None


class SubscriptionUpdate(WireModel):
    addons: list[AddonQuantity] | None = Field(default=None, max_length=100)
    charges: list[ChargeQuantity] | None = Field(default=None, max_length=100)
    entitlements: list[EntitlementOverride] | None = Field(default=None, max_length=500)
    billing_period: BillingPeriod | None = None
    billing_cycle_anchor: Unsupported[Literal["UNCHANGED", "NOW"]] = None
    schedule_strategy: ScheduleStrategy | None = None
    # An update never waits for the provider's payment: false is what it does, true is refused.
    await_payment_confirmation: bool | None = None
    budget: Unsupported[Budget] = None
    minimum_spend: Unsupported[MoneyAmount] = None
    cancellation_date: datetime | None = None
    trial_end_date: datetime | None = None
    metadata: Metadata | None = None
    promotion_code: ShortText | None = None
    salesforce_id: Unsupported[ShortText] = None
    applied_coupon: AppliedCoupon | None = None
    billing_information: BillingInformationUpdate | None = None
    price_overrides: PriceOverrides | None = None


class ImportedSubscription(WireModel):
    id: RefId
    customer_id: RefId
    plan_id: RefId
    billing_period: BillingPeriod | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    addons: list[AddonQuantity] | None = Field(default=None, max_length=100)
    charges: list[ChargeQuantity] | None = Field(default=None, max_length=100)
    billing_id: ShortText | None = None
    resource_id: RefId | None = None
    metadata: Metadata | None = None


class SubscriptionImport(WireModel):
    subscriptions: list[ImportedSubscription] = Field(min_length=1, max_length=1000)
    integration_id: RefId | None = None


class SubscriptionCancel(WireModel):
    cancellation_time: Literal["END_OF_BILLING_PERIOD", "IMMEDIATE", "SPECIFIC_DATE"] | None = None
    cancellation_action: Literal["DEFAULT", "REVOKE_ENTITLEMENTS"] | None = None
    end_date: datetime | None = None
    # Whether the credits the subscription granted for the current period are revoked when it ends
    # (true) or kept until their period ends (false, the default).
    prorate: bool | None = None


class SubscriptionMigrate(WireModel):
    subscription_migration_time: Literal["END_OF_BILLING_PERIOD", "IMMEDIATE"] | None = None


class SubscriptionDelegate(WireModel):
    target_customer_id: RefId


class SubscriptionTransfer(WireModel):
    destination_resource_id: RefId


# -- responses -----------------------------------------------------------------------------------


class AddonOut(WireModel):
    id: str
    quantity: int


class TrialOut(WireModel):
    trial_end_behavior: str


class FutureUpdateTarget(WireModel):
    id: str


class FutureUpdateOut(WireModel):
    scheduled_execution_time: datetime
    schedule_status: str
    subscription_schedule_type: str
    target_package: FutureUpdateTarget | None = None


class SubscriptionEntitlementRef(WireModel):
    id: str
    type: str


class CouponOut(WireModel):
    id: str
    name: str
    status: str
    percent_off: Amount | None = None
    amounts_off: list[dict[str, Any]] | None = None


class CreditRateOut(WireModel):
    amount: Amount
    currency_id: str


class PriceOut(WireModel):
    addon_id: str | None = None
    feature_id: str | None = None
    base_charge: bool | None = None
    # A credit rate override has no amount nor currency, but its `creditRate` (as it was given).
    amount: Amount | None = None
    currency: str | None = None
    credit_rate: CreditRateOut | None = None


class SubscriptionOut(WireModel):
    id: str
    customer_id: str
    plan_id: str
    created_at: datetime
    start_date: datetime
    status: str
    pricing_type: str
    payment_collection: str
    payment_collection_method: str | None = None
    billing_id: str | None = None
    billing_period: str | None = None
    billing_country_code: str | None = None
    billing_cycle_anchor: datetime | None = None
    current_billing_period_start: datetime | None = None
    current_billing_period_end: datetime | None = None
    end_date: datetime | None = None
    effective_end_date: datetime | None = None
    cancellation_date: datetime | None = None
    cancel_reason: str | None = None
    trial_end_date: datetime | None = None
    trial: TrialOut | None = None
    addons: list[AddonOut] = Field(default_factory=list)
    budget: Budget | None = None
    minimum_spend: MoneyAmount | None = None
    paying_customer_id: str | None = None
    contract_id: str | None = None
    resource_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    coupons: list[CouponOut] | None = None
    subscription_entitlements: list[SubscriptionEntitlementRef] = Field(default_factory=list)
    future_updates: list[FutureUpdateOut] = Field(default_factory=list)
    latest_invoice: dict[str, Any] | None = None
    # The subscription's price overrides (`priceOverrides`, with the charge's currency filled in).
    prices: list[PriceOut] | None = None
    # Our extension: its sync with each billing integration (state, provider id, error or reason).
    sync_states: list[SyncStateOut] = Field(default_factory=list)


class BillableFeature(WireModel):
    feature_id: RefId
    quantity: Amount = Field(ge=0)


class PreviewTrialOverride(TrialOverride):
    # The preview's periods start with the subscription, not after a trial: a chosen trial end is not shown.
    trial_end_date: Unsupported[datetime] = None


class SubscriptionPreview(WireModel):
    customer_id: RefId
    plan_id: RefId
    billable_features: list[BillableFeature] | None = Field(default=None, max_length=100)
    addons: list[AddonQuantity] | None = Field(default=None, max_length=100)
    charges: list[ChargeQuantity] | None = Field(default=None, max_length=100)
    billing_period: BillingPeriod | None = None
    unit_quantity: NonNegInt | None = None
    start_date: datetime | None = None
    resource_id: RefId | None = None
    paying_customer_id: RefId | None = None
    billing_country_code: ShortText | None = Field(default=None, max_length=16)
    billing_cycle_anchor: Unsupported[Literal["UNCHANGED", "NOW"]] = None
    schedule_strategy: ScheduleStrategy | None = None
    applied_coupon: PreviewAppliedCoupon | None = None
    billing_information: PreviewBillingInformation | None = None
    trial_override_configuration: PreviewTrialOverride | None = None
    # Our extension: the prices a deal overrides, previewed as provisioning with them would bill.
    price_overrides: PriceOverrides | None = None


class PeriodRange(WireModel):
    start: datetime
    end: datetime


class InvoiceLineOut(WireModel):
    currency: str
    description: str
    sub_total: Amount
    unit_price: Amount
    quantity: Amount | None = None


class DiscountOut(WireModel):
    amount: Amount
    currency: str
    description: str


class DiscountDetails(WireModel):
    code: str | None = None
    fixed_amount: Amount | None = None
    percentage: Amount | None = None


class InvoicePreview(WireModel):
    sub_total: Amount
    total: Amount
    currency: str | None = None
    tax: Amount | None = None
    discount: Amount | None = None
    billing_period_range: PeriodRange | None = None
    discount_details: DiscountDetails | None = None
    discounts: list[DiscountOut] = Field(default_factory=list)
    lines: list[InvoiceLineOut] = Field(default_factory=list)


class PreviewOut(WireModel):
    immediate_invoice: InvoicePreview
    recurring_invoice: InvoicePreview | None = None
    billing_period_range: PeriodRange | None = None
    free_items: list[AddonOut] = Field(default_factory=list)
    has_scheduled_updates: bool = False
    is_plan_downgrade: bool = False
