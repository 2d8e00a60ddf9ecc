"""What a widget may send: the choices a customer makes on a page, nothing more.

A customer's browser holds a public client key, so the bodies carry only what a customer chooses (plan,
period, add-ons, quantities, a promotion code) and never who pays, entitlement overrides, trial or start
dates: the route fills in the customer of the token. Unknown fields are refused (400), not dropped.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from entitle.customers.schemas import InvoiceOut
from entitle.http.wire import NonNegInt, RefId, ShortText, WireModel
from entitle.subscriptions.schemas import (
    AddonQuantity,
    AppliedCoupon,
    BillableFeature,
    BillingPeriod,
    ChargeQuantity,
    CheckoutOptions,
    PreviewAppliedCoupon,
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


__all__ = [
    "SetupIntentOut",
    "WidgetPaymentMethodIn",
    "WidgetPortalSessionIn",
    "WidgetPortalSessionOut",
    "WidgetPreviewIn",
    "WidgetSubscriptionIn",
]
