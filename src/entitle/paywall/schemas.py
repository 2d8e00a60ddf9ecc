"""The paywall on the wire (see docs/push.md)."""

from __future__ import annotations

from datetime import datetime

from entitle.catalog.packages.schemas import TierOut
from entitle.http.wire import Amount, WireModel


class PaywallCreditRate(WireModel):
    amount: Amount
    currency_id: str


class PaywallPrice(WireModel):
    id: str
    billing_period: str
    billing_model: str
    billing_country_code: str | None = None
    amount: Amount | None = None
    currency: str | None = None
    feature_id: str | None = None
    tiers: list[TierOut] | None = None
    tiers_mode: str | None = None
    block_size: Amount | None = None
    is_overage: bool = False
    # Our extension: how many units a per-unit price may be bought for (what provisioning allows), so a
    # checkout asks for a quantity in that range.
    min_unit_quantity: int | None = None
    max_unit_quantity: int | None = None
    # Our extension, of a CREDIT_BASED price (whose amount is null): the credits a unit of the feature's
    # usage costs, or with `creditGrantCadence` the credits a unit bought grants.
    credit_rate: PaywallCreditRate | None = None
    credit_grant_cadence: str | None = None


class PaywallEntitlement(WireModel):
    feature_id: str
    display_name: str
    feature_type: str
    meter_type: str | None = None
    feature_units: str | None = None
    feature_units_plural: str | None = None
    has_unlimited_usage: bool
    has_soft_limit: bool
    usage_limit: Amount | None = None
    reset_period: str | None = None
    enum_values: list[str] | None = None
    is_inherited: bool
    display_name_override: str | None = None
    description: str | None = None


class PaywallTrial(WireModel):
    duration: int
    units: str


class PaywallPlan(WireModel):
    id: str
    display_name: str
    description: str | None = None
    product_id: str
    pricing_type: str
    order: int
    base_plan_id: str | None = None
    version_number: int
    trial: PaywallTrial | None = None
    prices: list[PaywallPrice]
    entitlements: list[PaywallEntitlement]
    compatible_addon_ids: list[str]
    metadata: dict[str, str]


class PaywallAddon(WireModel):
    id: str
    display_name: str
    description: str | None = None
    product_id: str
    pricing_type: str
    prices: list[PaywallPrice]
    entitlements: list[PaywallEntitlement]
    compatible_plan_ids: list[str]
    max_quantity: int | None = None
    dependencies: list[str]
    metadata: dict[str, str]


class PaywallCustomer(WireModel):
    id: str
    current_plan_id: str | None = None
    current_subscription_id: str | None = None
    billing_period: str | None = None
    status: str | None = None
    trial_end_date: datetime | None = None
    addon_ids: list[str]


class Paywall(WireModel):
    plans: list[PaywallPlan]
    addons: list[PaywallAddon]
    customer: PaywallCustomer | None = None
    # Our extension: the country whose prices these are (the customer's subscribed country wins over the
    # one asked for); None: the default prices.
    billing_country_code: str | None = None
