"""Credit wire shapes, exactly the official client's (stigg/types/v1/credits/*, credit_*.py and the
CREDIT variant of customer_check_entitlement_response.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field

from entitle.customers.schemas import Address
from entitle.events.schemas import DimensionKey, DimensionValue
from entitle.http.wire import (
    Amount,
    LongText,
    Metadata,
    Pagination,
    RefId,
    ShortText,
    Unsupported,
    WireModel,
)
from entitle.money import Currency
from entitle.usage.schemas import UsageValue

CURRENCY_STATUSES: tuple[str, ...] = ("ACTIVE", "ARCHIVED")
LEDGER_EVENT_TYPES: tuple[str, ...] = (
    "CREDITS_GRANTED",
    "CREDITS_EXPIRED",
    "CREDITS_CONSUMED",
    "CREDITS_VOIDED",
    "CREDITS_UPDATED",
    "CREDITS_CONSUMPTION_TRANSFER_SOURCE",
    "CREDITS_CONSUMPTION_TRANSFER_TARGET",
    "CREDITS_RESERVED",
    "CREDITS_RESERVATION_RELEASED",
    "CREDITS_RESERVATION_EXPIRED",
)
MAX_CONSUMPTIONS = 1000


# -- custom currencies -----------------------------------------------------------------------------------


class UnitsIn(WireModel):
    singular: ShortText = Field(min_length=1)
    plural: ShortText = Field(min_length=1)


class CurrencyCreate(WireModel):
    id: RefId
    display_name: ShortText = Field(min_length=1)
    description: LongText | None = None
    metadata: Metadata | None = None
    symbol: ShortText | None = None
    units: UnitsIn | None = None


class CurrencyUpdate(WireModel):
    """Absent fields stay; `description` and `symbol` are cleared by null or an empty string."""

    display_name: ShortText | None = Field(default=None, min_length=1)
    description: LongText | None = None
    metadata: Metadata | None = None
    symbol: ShortText | None = None
    units: UnitsIn | None = None


class UnitsOut(WireModel):
    singular: str | None = None
    plural: str | None = None


class CurrencyOut(WireModel):
    id: str
    display_name: str
    description: str | None = None
    symbol: str | None = None
    units: UnitsOut | None = None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None


class AssociatedEntityOut(WireModel):
    id: str
    display_name: str
    type: str


# -- grants ----------------------------------------------------------------------------------------------


class CostIn(WireModel):
    amount: Amount
    currency: Currency


class GrantBillingInformation(WireModel):
    """`billingInformation` of an invoiced grant. The days are checked where they are used (the same rule
    and messages as a subscription's, `subscriptions.rules.days_until_due`, on the wire form)."""

    billing_address: Address | None = None
    invoice_days_until_due: Any = None
    is_invoice_paid: bool | None = None


class GrantCreate(WireModel):
    customer_id: RefId
    currency_id: RefId
    amount: Amount
    display_name: ShortText = Field(min_length=1)
    grant_type: Literal["PAID", "PROMOTIONAL"]
    priority: int = Field(default=50, ge=0, le=100, strict=True)
    effective_at: datetime | None = None
    expire_at: datetime | None = None
    comment: LongText | None = None
    metadata: Metadata | None = None
    resource_id: RefId | None = None
    cost: CostIn | None = None
    # INVOICE / CHARGE: the grant waits, PAYMENT_PENDING, for its payment (docs/credits.md, "Paid grants").
    payment_collection_method: Literal["CHARGE", "INVOICE", "NONE"] | None = None
    # With INVOICE: whether the request makes the invoice before it answers (true, the default) or leaves it
    # to the worker. With nothing to collect there is nothing to wait for.
    await_payment_confirmation: bool | None = None
    billing_information: GrantBillingInformation | None = None


class LatestInvoiceOut(WireModel):
    """The grant's invoice at the provider, as last heard (the invoicing job, its webhooks)."""

    billing_id: str
    billing_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    currency: str | None = None
    due_date: datetime | None = None
    error_message: str | None = None
    payment_url: str | None = None
    pdf_url: str | None = None
    requires_action: bool
    status: str
    sub_total: Amount | None = None
    tax: Amount | None = None
    total: Amount | None = None


class CostOut(WireModel):
    amount: Amount
    currency: str


class GrantOut(WireModel):
    id: str
    customer_id: str
    currency_id: str
    display_name: str
    amount: Amount
    consumed_amount: Amount
    grant_type: str
    status: str
    priority: int
    effective_at: datetime
    expire_at: datetime | None = None
    voided_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    comment: str | None = None
    metadata: dict[str, str]
    cost: CostOut
    payment_collection: str = "NOT_REQUIRED"
    resource_id: str | None = None
    source_type: str | None = None
    invoice_id: str | None = None
    latest_invoice: LatestInvoiceOut | None = None


class LedgerEntryOut(WireModel):
    customer_id: str
    credit_grant_id: str
    credit_currency_id: str
    amount: Amount
    event_type: str
    timestamp: datetime
    event_id: str | None = None
    feature_id: str | None = None
    resource_id: str | None = None
    reservation_id: str | None = None
    hold_returned_amount: Amount | None = None
    metadata: dict[str, str] | None = None


# -- balances, consumption, reservations -------------------------------------------------------------------


class CreditBalanceOut(WireModel):
    currency_id: str
    current_usage: Amount
    usage_limit: Amount
    timestamp: datetime
    usage_period_end: datetime | None = None


Dimensions = dict[Annotated[str, Field(max_length=255)], str | float | bool]


class ConsumptionIn(WireModel):
    customer_id: RefId
    currency_id: RefId
    amount: Amount
    idempotency_key: RefId
    created_at: datetime | None = None
    dimensions: Dimensions | None = None
    resource_id: RefId | None = None


class ConsumptionBatch(WireModel):
    consumptions: list[ConsumptionIn] = Field(min_length=1, max_length=MAX_CONSUMPTIONS)


class ConsumptionOut(WireModel):
    customer_id: str
    currency_id: str
    amount: Amount
    timestamp: datetime
    resource_id: str | None = None
    credit: CreditBalanceOut | None = None


class ReleaseIn(WireModel):
    customer_id: RefId
    currency_id: RefId
    consumed_amount: Amount
    resource_id: RefId | None = None


class ReservationOut(WireModel):
    id: str
    amount: Amount
    expires_at: datetime
    status: str
    consumed_amount: Amount | None = None


class ReleaseOut(WireModel):
    reservation: ReservationOut
    credit: CreditBalanceOut | None = None


class CheckCurrency(WireModel):
    currency_id: str
    display_name: str
    description: str | None = None
    metadata: dict[str, str] | None = None
    unit_singular: str | None = None
    unit_plural: str | None = None


class CheckReservation(WireModel):
    id: str
    amount: Amount
    expires_at: datetime
    status: str


class CreditCheckResult(WireModel):
    """The CREDIT result of `GET .../entitlements/check?currencyId=`: the balance is usageLimit - currentUsage
    (currentUsage includes what active reservations hold)."""

    type: Literal["CREDIT"] = "CREDIT"
    is_granted: bool
    access_denied_reason: str | None = None
    currency: CheckCurrency
    current_usage: Amount
    usage_limit: Amount
    usage_updated_at: datetime
    entitlement_updated_at: datetime | None = None
    usage_period_end: datetime | None = None
    valid_until: datetime | None = None
    reserved: Amount | None = None
    reserved_on_expired_grants: Amount | None = None
    reservation: CheckReservation | None = None


class CreditCheckRequest(WireModel):
    """The credit parameters of the check, parsed by the entitlements route and answered here."""

    requested_usage: Decimal | None = None
    reserve_amount: Decimal | None = None
    reservation_id: str | None = None
    reservation_ttl_seconds: int | None = None
    reservation_expires_at: datetime | None = None
    reservation_metadata: str | None = None
    resource_id: str | None = None


class AutoRechargeOut(WireModel):
    customer_id: str
    currency_id: str
    is_enabled: bool = False
    threshold_type: str = "CREDIT_AMOUNT"
    threshold_value: Amount = Decimal(0)
    target_balance: Amount = Decimal(0)
    grant_expiration_period: str = "1_MONTH"
    max_spend_limit: Amount | None = None
    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CreditUsagePoint(WireModel):
    timestamp: datetime
    value: Amount
    event_count: int


class CreditUsageSeries(WireModel):
    feature_id: str | None = None
    feature_name: str | None = None
    total_credits: Amount
    event_count: int
    points: list[CreditUsagePoint]
    tags: list[dict[str, str]] | None = None


class CreditUsageCurrency(WireModel):
    currency_id: str
    display_name: str
    symbol: str | None = None
    singular: str | None = None
    plural: str | None = None


class CreditUsage(WireModel):
    series: list[CreditUsageSeries]
    pagination: Pagination
    currency: CreditUsageCurrency | None = None


# -- estimates -------------------------------------------------------------------------------------------


class UsageEstimateIn(WireModel):
    customer_id: RefId
    feature_id: RefId
    value: UsageValue
    # Reported usage is counted, not metered: dimensions change nothing (the usage report refuses them too).
    dimensions: Unsupported[dict[DimensionKey, DimensionValue]] = None
    resource_id: RefId | None = None
    update_behavior: Literal["DELTA", "SET"] = "DELTA"


class EventEstimateIn(WireModel):
    customer_id: RefId
    event_name: RefId
    dimensions: dict[DimensionKey, DimensionValue] | None = Field(default=None, max_length=100)
    resource_id: RefId | None = None


class EstimateBreakdown(WireModel):
    feature_id: str
    cost: Amount
    warning_code: Literal["UNSUPPORTED_AGGREGATION"] | None = None


class Estimate(WireModel):
    currency_id: str
    current_balance: Amount
    estimated_cost: Amount
    balance_after_estimate: Amount
    would_overdraft: bool
    breakdown: list[EstimateBreakdown]


class EstimateResult(WireModel):
    estimates: list[Estimate]
    warnings: list[Literal["RESOURCE_SCOPED_SUBSCRIPTION_EXISTS", "FEATURE_NOT_FOUND", "FEATURE_NOT_CREDIT_BASED"]]
