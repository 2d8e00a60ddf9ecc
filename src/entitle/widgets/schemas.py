"""What a widget may send: the choices a customer makes on a page, nothing more.

A customer's browser holds a public client key, so the bodies carry only what a customer chooses (plan,
period, add-ons, quantities, a promotion code) and never who pays, entitlement overrides, trial or start
dates: the route fills in the customer of the token. Unknown fields are refused (400), not dropped.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import ConfigDict, Field

from entitle.catalog.packages.schemas import PriceOut, TierOut
from entitle.customers.schemas import InvoiceOut
from entitle.http.wire import Amount, NonNegInt, RefId, ShortText, WireModel
from entitle.subscriptions import pricing
from entitle.subscriptions.schemas import (
    AddonQuantity,
    AppliedCoupon,
    BillableFeature,
    BillingPeriod,
    ChargeQuantity,
    CheckoutOptions,
    PreviewAppliedCoupon,
    PreviewOut,
    SubscriptionOut,
    SubscriptionPreview,
    SubscriptionProvision,
)


class _Strict(WireModel):
    model_config = ConfigDict(extra="forbid")


class WidgetChoice(_Strict):
    plan_id: RefId
    billing_period: BillingPeriod | None = None
    unit_quantity: NonNegInt | None = None
    addons: list[AddonQuantity] | None = Field(default=None, max_length=100)
    billable_features: list[BillableFeature] | None = Field(default=None, max_length=100)
    billing_country_code: ShortText | None = Field(default=None, max_length=16)
    # A promotion code of the billing provider: previewed and applied as the Entitle coupon it stands for
    # (400 PROMOTION_CODE_INVALID when the provider does not know it or it cannot apply).
    promotion_code: ShortText | None = None

    def charges(self) -> list[ChargeQuantity] | None:
        if self.billable_features is None:
            return None
        return [ChargeQuantity(id=f.feature_id, quantity=f.quantity) for f in self.billable_features]


class WidgetPreviewIn(WidgetChoice):
    def for_customer(self, customer_id: str) -> SubscriptionPreview:
        return SubscriptionPreview(
            customer_id=customer_id,
            plan_id=self.plan_id,
            billing_period=self.billing_period,
            unit_quantity=self.unit_quantity,
            addons=self.addons,
            billable_features=self.billable_features,
            billing_country_code=self.billing_country_code,
            applied_coupon=PreviewAppliedCoupon(promotion_code=self.promotion_code) if self.promotion_code else None,
        )


class WidgetPreviewOut(PreviewOut):
    # Our extension: when a change that waits (`hasScheduledUpdates`: a downgrade, monthly to annual)
    # takes effect, so the checkout can say why nothing is due today.
    scheduled_for: datetime | None = None


class WidgetCheckoutOptions(_Strict):
    success_url: ShortText
    cancel_url: ShortText


class WidgetSubscriptionIn(WidgetChoice):
    # Given: Stripe's hosted checkout instead of the card field (answered PAYMENT_REQUIRED with its URL).
    checkout_options: WidgetCheckoutOptions | None = None

    def for_customer(self, customer_id: str) -> SubscriptionProvision:
        return SubscriptionProvision(
            customer_id=customer_id,
            plan_id=self.plan_id,
            billing_period=self.billing_period,
            unit_quantity=self.unit_quantity,
            addons=self.addons,
            charges=self.charges(),
            billing_country_code=self.billing_country_code,
            applied_coupon=AppliedCoupon(promotion_code=self.promotion_code) if self.promotion_code else None,
            checkout_options=CheckoutOptions(
                success_url=self.checkout_options.success_url,
                cancel_url=self.checkout_options.cancel_url,
                allow_promo_codes=True,
            )
            if self.checkout_options
            else None,
        )


class WidgetPaymentMethodIn(_Strict):
    payment_method_id: ShortText


class WidgetPortalSessionIn(_Strict):
    return_url: ShortText


class SetupIntentOut(WireModel):
    id: str
    client_secret: str
    integration_id: str
    stripe_js_url: str
    publishable_key: str | None = None


class WidgetInvoiceOut(InvoiceOut):
    pdf_url: str | None = None
    hosted_invoice_url: str | None = None


class WidgetPortalSessionOut(WireModel):
    url: str


class WidgetPlanPriceOut(WireModel):
    """One recurring price as the subscription pays it, in the paywall's form (so a page words it alike)."""

    billing_period: str
    billing_model: str
    amount: Amount | None = None
    currency: str
    feature_id: str | None = None
    feature_units: str | None = None
    feature_units_plural: str | None = None
    # The units the subscription pays this per-unit price for (its seats); None for other prices.
    quantity: Amount | None = None
    tiers: list[TierOut] | None = None
    tiers_mode: str | None = None
    block_size: Amount | None = None

    @classmethod
    def of(
        cls,
        price: pricing.Price,
        billing_period: str,
        units: dict[str, str],
        plurals: dict[str, str] | None = None,
        quantities: dict[str, Decimal] | None = None,
    ) -> WidgetPlanPriceOut:
        def money(amount: Decimal) -> PriceOut | None:
            # A tier priced by its flat fee alone carries no unit price, as the catalog keeps it.
            return PriceOut(amount=amount, currency=price.currency) if amount else None

        tiers = [
            TierOut(up_to=t.up_to, unit_price=money(t.unit_price), flat_price=money(t.flat_price)) for t in price.tiers
        ]
        return cls(
            billing_period=billing_period,
            billing_model=price.billing_model,
            amount=price.amount,
            currency=price.currency,
            feature_id=price.feature_ref,
            feature_units=units.get(price.feature_ref or ""),
            feature_units_plural=(plurals or {}).get(price.feature_ref or ""),
            quantity=(quantities or {}).get(price.feature_ref or ""),
            tiers=tiers or None,
            tiers_mode=price.tiers_mode,
            block_size=price.block_size,
        )


class WidgetPlanOut(WireModel):
    id: str
    display_name: str
    prices: list[WidgetPlanPriceOut]


class WidgetSubscriptionOut(SubscriptionOut):
    # Our extension for the portal: the plan's name and the prices this subscription pays, whatever the
    # product (the page's paywall knows one product only).
    plan: WidgetPlanOut
    # The names of the plans its scheduled changes move to and of the add-ons it (and they) hold, by id.
    plan_names: dict[str, str] = Field(default_factory=dict)
    addon_names: dict[str, str] = Field(default_factory=dict)
    # What one billing period of it costs before a coupon: its plan and add-ons at their quantities, as a
    # preview's recurring invoice adds them up (None: not billed per period, or nothing to add up).
    recurring_price: PriceOut | None = None


__all__ = [
    "SetupIntentOut",
    "WidgetPaymentMethodIn",
    "WidgetPlanOut",
    "WidgetPlanPriceOut",
    "WidgetPortalSessionIn",
    "WidgetPortalSessionOut",
    "WidgetPreviewIn",
    "WidgetPreviewOut",
    "WidgetSubscriptionIn",
    "WidgetSubscriptionOut",
]
