"""The widgets' use cases: each is one existing service function, after the checks that keep a customer's
browser to that one customer (its subscriptions only; no custom-priced plan bought from a page).

The customer token is checked by the route's dependency (`CustomerKey`); what is checked here is what the
token alone cannot say: that the subscription named in the path is the customer's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from entitle.billing import checkout as billing_checkout
from entitle.billing import invoices as billing_invoices
from entitle.billing import payment_methods
from entitle.billing.invoices import InvoiceQuery
from entitle.billing.provider import ProviderInvoice
from entitle.billing.setup_intents import SetupIntentView, create_setup_intent
from entitle.catalog.features import store as feature_store
from entitle.catalog.packages import service as packages
from entitle.catalog.packages.models import Package
from entitle.customers import service as customers
from entitle.customers.schemas import PaymentMethodAttach
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest
from entitle.errors import InvalidArgument, NotFound
from entitle.subscriptions import cancellation, changes, price_rules, pricing, provisioning
from entitle.subscriptions import service as subscriptions
from entitle.subscriptions.preview import plan_prices, preview_subscription
from entitle.subscriptions.rules import LIVE, Status
from entitle.subscriptions.schemas import PreviewOut, SubscriptionCancel
from entitle.widgets.schemas import WidgetPreviewIn, WidgetSubscriptionIn

# What a portal shows: the live subscriptions and one waiting for its first payment (just checked out).
SHOWN = sorted(str(status) for status in (*LIVE, Status.PAYMENT_PENDING))
# A plan whose price is agreed with sales is never bought from a page (the pricing table says "contact sales").
CUSTOM = "CUSTOM"


class CustomPricedPlan(InvalidArgument):
    code = "CUSTOM_PRICED_PLAN"


def _buyable(db: Database, env_id: int, plan_ref: str) -> None:
    plan = packages.get_package(db, env_id, "PLAN", plan_ref)
    if plan.package.pricing_type == CUSTOM:
        raise CustomPricedPlan(f"plan '{plan_ref}' is custom-priced: it is sold by your sales team, not from a widget")


def _own_subscription(db: Database, env_id: int, customer_ref: str, subscription_ref: str) -> None:
    """404 for a subscription of another customer, exactly as for one that does not exist."""
    try:
        view = subscriptions.get_subscription(db, env_id, subscription_ref)
    except NotFound:
        raise NotFound("subscription", subscription_ref) from None
    if customer_ref not in (view.customer_ref, view.paying_customer_ref):
        raise NotFound("subscription", subscription_ref)


@dataclass(frozen=True)
class PricedSubscription:
    """A subscription as its portal shows it: its plan's name and the recurring prices it pays per period
    (whatever the product: the portal is not the paywall of one product)."""

    view: subscriptions.SubscriptionView
    plan_display_name: str
    prices: list[pricing.Price]
    # What a priced feature's unit is called ("seat"), by feature id: the page's paywall may not know it.
    feature_units: dict[str, str]


def live_subscriptions(db: Database, env_id: int, customer_ref: str) -> list[PricedSubscription]:
    customers.get_customer(db, env_id, customer_ref)  # 404 for an unknown customer, not an empty list
    _, views = subscriptions.list_subscriptions(
        db, env_id, PageRequest(limit=100), customer_ref=customer_ref, statuses=SHOWN
    )
    with db.read() as s:
        return [_priced(s, view) for view in views]


def _priced(s: Session, view: subscriptions.SubscriptionView) -> PricedSubscription:
    """Priced as a preview and the billing sync price it: the plan version subscribed to, for the
    subscription's period and country, with the subscription's own price overrides applied."""
    sub = view.sub
    plan = s.get(Package, sub.plan_pk)
    assert plan is not None  # a subscription's plan version is never deleted
    prices: list[pricing.Price] = []
    if sub.billing_period is not None:
        overrides = price_rules.amounts(sub.price_overrides)
        prices = plan_prices(s, plan, sub.billing_period, sub.billing_country_code, overrides)
    refs = [p.feature_ref for p in prices if p.feature_ref]
    units = {
        ref: f.feature_units or f.display_name for ref, f in feature_store.get_many(s, sub.environment_id, refs).items()
    }
    return PricedSubscription(view=view, plan_display_name=plan.display_name, prices=prices, feature_units=units)


def customer(db: Database, env_id: int, customer_ref: str) -> customers.CustomerView:
    return customers.get_customer(db, env_id, customer_ref)


def _for_customer(customer_ref: str, body: WidgetPreviewIn | WidgetSubscriptionIn) -> Any:
    """The API's request for the customer in the path; a path id no customer can have (a control
    character, over 255 characters) names no customer: 404, as the API's customer routes answer."""
    try:
        return body.for_customer(customer_ref)
    except ValidationError as exc:
        raise NotFound("customer", customer_ref[:255]) from exc


def preview(db: Database, env_id: int, customer_ref: str, body: WidgetPreviewIn) -> PreviewOut:
    return preview_subscription(db, env_id, _for_customer(customer_ref, body))


def subscribe(db: Database, env_id: int, customer_ref: str, body: WidgetSubscriptionIn) -> provisioning.ProvisionResult:
    _buyable(db, env_id, body.plan_id)
    return provisioning.provision(db, env_id, _for_customer(customer_ref, body))


def cancel(db: Database, env_id: int, customer_ref: str, subscription_ref: str) -> subscriptions.SubscriptionView:
    """At the end of the billing period: what a customer may do to itself (an immediate end is the vendor's)."""
    _own_subscription(db, env_id, customer_ref, subscription_ref)
    request = SubscriptionCancel(cancellation_time="END_OF_BILLING_PERIOD")
    return cancellation.cancel_subscription(db, env_id, subscription_ref, request)


def cancel_scheduled_change(db: Database, env_id: int, customer_ref: str, subscription_ref: str) -> str:
    _own_subscription(db, env_id, customer_ref, subscription_ref)
    return changes.cancel_future_update(db, env_id, subscription_ref)


def setup_intent(db: Database, env_id: int, customer_ref: str) -> SetupIntentView:
    return create_setup_intent(db, env_id, customer_ref)


def attach_card(db: Database, env_id: int, customer_ref: str, payment_method_id: str) -> customers.CustomerView:
    """The card the page just saved (confirmCardSetup) becomes the customer's default at Stripe."""
    request = PaymentMethodAttach(
        integration_id="STRIPE", vendor_identifier="STRIPE", payment_method_id=payment_method_id
    )
    return payment_methods.attach_payment_method(db, env_id, customer_ref, request)


def portal_session(db: Database, env_id: int, customer_ref: str, return_url: str) -> str:
    return billing_checkout.portal_session(db, env_id, customer_ref, return_url)


def invoices(db: Database, env_id: int, customer_ref: str) -> Page[ProviderInvoice]:
    """The newest invoices first, at most a page (a portal shows the recent ones)."""
    _, page = billing_invoices.list_invoices(
        db, env_id, customer_ref, InvoiceQuery(order_dir="DESC"), PageRequest(limit=24)
    )
    return page
