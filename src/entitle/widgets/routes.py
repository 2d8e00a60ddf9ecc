"""Our extension for the embeddable widgets: what a customer's own page may read and do, with a client
key and that customer's token (docs/customer-tokens.md). Every route is about the customer in the path
and refuses any other (401 for another customer's token, 404 for another customer's subscription).

The widgets also read two routes that already take a client key: `GET /api/v1/paywall?customerId=` (the
pricing table) and `GET /api/v1/customers/{id}/entitlements` (the portal's usage bars).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from entitle.billing.provider import ProviderInvoice
from entitle.billing.schemas import invoice_out
from entitle.catalog.packages.schemas import PriceOut
from entitle.customers.schemas import CustomerOut
from entitle.http.deps import DB, CustomerKey
from entitle.http.wire import Envelope, IdOnly, PageEnvelope, envelope, page_envelope
from entitle.subscriptions.routes import ProvisionOut, subscription_out
from entitle.subscriptions.schemas import SubscriptionOut
from entitle.widgets import service
from entitle.widgets.schemas import (
    SetupIntentOut,
    WidgetInvoiceOut,
    WidgetPaymentMethodIn,
    WidgetPlanOut,
    WidgetPlanPriceOut,
    WidgetPortalSessionIn,
    WidgetPortalSessionOut,
    WidgetPreviewIn,
    WidgetPreviewOut,
    WidgetSubscriptionIn,
    WidgetSubscriptionOut,
)

router = APIRouter(prefix="/api/v1/widgets/customers/{customer_id}", tags=["widgets"])


@router.get("", response_model=Envelope[CustomerOut])
def get_customer(customer_id: str, key: CustomerKey, db: DB) -> dict[str, Any]:
    """The customer as its portal shows it (the default payment method: brand, last four digits, expiry)."""
    view = service.customer(db, key.environment_id, customer_id)
    return envelope(CustomerOut.of(view.customer, view.links, view.sync_states))


def _portal_subscription(priced: service.PricedSubscription) -> WidgetSubscriptionOut:
    period = priced.view.sub.billing_period or ""
    plan = WidgetPlanOut(
        id=priced.view.sub.plan_ref,
        display_name=priced.plan_display_name,
        prices=[
            WidgetPlanPriceOut.of(price, period, priced.feature_units, priced.feature_units_plural, priced.quantities)
            for price in priced.prices
        ],
    )
    return WidgetSubscriptionOut(
        **dict(subscription_out(priced.view)),
        plan=plan,
        plan_names=priced.plan_names,
        addon_names=priced.addon_names,
        recurring_price=PriceOut(amount=priced.recurring.total, currency=priced.recurring.currency)
        if priced.recurring is not None
        else None,
    )


@router.get("/subscriptions", response_model=Envelope[list[WidgetSubscriptionOut]])
def list_subscriptions(customer_id: str, key: CustomerKey, db: DB) -> dict[str, Any]:
    """The customer's live subscriptions (active, in trial or waiting for a first payment), with their
    scheduled changes, each with its plan's name and the prices it pays (`plan`, our extension)."""
    priced = service.live_subscriptions(db, key.environment_id, customer_id)
    return envelope([_portal_subscription(p) for p in priced])


@router.post("/preview", response_model=Envelope[WidgetPreviewOut])
def preview(customer_id: str, body: WidgetPreviewIn, key: CustomerKey, db: DB) -> dict[str, Any]:
    """The checkout's price summary: `POST /api/v1/subscriptions/preview` for this customer, and when a
    change that waits for the period's end takes effect (`scheduledFor`, our extension)."""
    return envelope(service.preview(db, key.environment_id, customer_id, body))


@router.post("/setup-intent", response_model=Envelope[SetupIntentOut])
def create_setup_intent(customer_id: str, key: CustomerKey, db: DB) -> dict[str, Any]:
    """A Stripe SetupIntent for this customer, for Stripe.js `confirmCardSetup` (it waits for Stripe)."""
    view = service.setup_intent(db, key.environment_id, customer_id)
    return envelope(
        SetupIntentOut(
            id=view.id,
            client_secret=view.client_secret,
            integration_id=view.integration_id,
            stripe_js_url=view.stripe_js_url,
            publishable_key=view.publishable_key,
        )
    )


@router.post("/payment-method", response_model=Envelope[CustomerOut])
def attach_payment_method(customer_id: str, body: WidgetPaymentMethodIn, key: CustomerKey, db: DB) -> dict[str, Any]:
    """The card saved by `confirmCardSetup` becomes the customer's default payment method."""
    view = service.attach_card(db, key.environment_id, customer_id, body.payment_method_id)
    return envelope(CustomerOut.of(view.customer, view.links, view.sync_states))


@router.post("/subscriptions", response_model=Envelope[ProvisionOut])
def subscribe(customer_id: str, body: WidgetSubscriptionIn, key: CustomerKey, db: DB) -> dict[str, Any]:
    """Provision the chosen plan (an upgrade or downgrade of the product's current one, as the API does).
    Custom-priced plans are refused (400 `CUSTOM_PRICED_PLAN`)."""
    result = service.subscribe(db, key.environment_id, customer_id, body)
    return envelope(
        ProvisionOut(
            id=result.view.sub.ref_id,
            status="SUCCESS" if result.checkout_url is None else "PAYMENT_REQUIRED",
            subscription=subscription_out(result.view),
            checkout_url=result.checkout_url,
            checkout_billing_id=result.checkout_billing_id,
            is_scheduled=result.is_scheduled,
        )
    )


@router.post("/subscriptions/{subscription_id}/cancel", response_model=Envelope[SubscriptionOut])
def cancel_subscription(customer_id: str, subscription_id: str, key: CustomerKey, db: DB) -> dict[str, Any]:
    """Cancel at the end of the billing period."""
    return envelope(subscription_out(service.cancel(db, key.environment_id, customer_id, subscription_id)))


@router.delete("/subscriptions/{subscription_id}/future-update/schedule", response_model=Envelope[IdOnly])
def cancel_scheduled_change(customer_id: str, subscription_id: str, key: CustomerKey, db: DB) -> dict[str, Any]:
    """Withdraw a scheduled change (a downgrade at the period's end)."""
    return envelope(IdOnly(id=service.cancel_scheduled_change(db, key.environment_id, customer_id, subscription_id)))


def _widget_invoice(customer_id: str, invoice: ProviderInvoice) -> WidgetInvoiceOut:
    out = invoice_out(customer_id, invoice)
    return WidgetInvoiceOut(**dict(out), pdf_url=invoice.pdf_url, hosted_invoice_url=invoice.hosted_url)


@router.get("/invoices", response_model=PageEnvelope[WidgetInvoiceOut])
def list_invoices(customer_id: str, key: CustomerKey, db: DB) -> dict[str, Any]:
    """The customer's latest invoices at the provider, newest first (amounts in major units, PDF links)."""
    page = service.invoices(db, key.environment_id, customer_id)
    return page_envelope(page, lambda invoice: _widget_invoice(customer_id, invoice))


@router.post("/portal-session", response_model=Envelope[WidgetPortalSessionOut])
def create_portal_session(customer_id: str, body: WidgetPortalSessionIn, key: CustomerKey, db: DB) -> dict[str, Any]:
    """A Stripe billing-portal URL, where the customer updates its payment method."""
    return envelope(
        WidgetPortalSessionOut(url=service.portal_session(db, key.environment_id, customer_id, body.return_url))
    )
