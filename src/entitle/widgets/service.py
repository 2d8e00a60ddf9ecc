"""The widgets' use cases: each is one existing service function, after the checks that keep a customer's
browser to that one customer (its subscriptions only; no custom-priced plan bought from a page).

The customer token is checked by the route's dependency (`CustomerKey`); what is checked here is what the
token alone cannot say: that the subscription named in the path is the customer's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

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
from entitle.catalog.packages import store as package_store
from entitle.catalog.packages.models import Package
from entitle.customers import service as customers
from entitle.customers import store as customer_store
from entitle.customers.schemas import PaymentMethodAttach
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest
from entitle.errors import InvalidArgument, NotFound
from entitle.subscriptions import cancellation, changes, price_rules, pricing, provisioning, validation
from entitle.subscriptions import service as subscriptions
from entitle.subscriptions import store as subscription_store
from entitle.subscriptions.preview import customer_country, held_lines, plan_prices, preview_subscription
from entitle.subscriptions.rules import LIVE, Status
from entitle.subscriptions.schemas import SubscriptionCancel
from entitle.widgets.schemas import WidgetPreviewIn, WidgetPreviewOut, WidgetSubscriptionIn

# What a portal shows: the live subscriptions and one waiting for its first payment (just checked out).
SHOWN = sorted(str(status) for status in (*LIVE, Status.PAYMENT_PENDING))
# A plan whose price is agreed with sales is never bought from a page (the pricing table says "contact sales").
CUSTOM = "CUSTOM"
Choice = TypeVar("Choice", WidgetPreviewIn, WidgetSubscriptionIn)


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
    # What a priced feature's unit is called ("seat", "seats"), by feature id: the page's paywall may not know it.
    feature_units: dict[str, str]
    feature_units_plural: dict[str, str] = field(default_factory=dict)
    # The units each per-unit price is paid for (the seats), by feature id, as the billing sync counts them.
    quantities: dict[str, Decimal] = field(default_factory=dict)
    # The names of the plans its scheduled changes move to and of the add-ons it and they hold, by id:
    # from the catalog, whatever the product (the page's paywall knows one product's published ones).
    plan_names: dict[str, str] = field(default_factory=dict)
    addon_names: dict[str, str] = field(default_factory=dict)
    # One period of it, plan and add-ons, before a coupon (`preview.price_lines`); None: no lines.
    recurring: pricing.Invoice | None = None


def live_subscriptions(db: Database, env_id: int, customer_ref: str) -> list[PricedSubscription]:
    customers.get_customer(db, env_id, customer_ref)  # 404 for an unknown customer, not an empty list
    _, views = subscriptions.list_subscriptions(
        db, env_id, PageRequest(limit=100), customer_ref=customer_ref, statuses=SHOWN
    )
    with db.read() as s:
        named = [_named(view) for view in views]
        plans = _shown(s, env_id, "PLAN", {ref for plan_refs, _ in named for ref in plan_refs})
        addons = _shown(s, env_id, "ADDON", {ref for _, addon_refs in named for ref in addon_refs})
        return [_priced(s, view, plans, addons) for view in views]


def _shown(s: Session, env_id: int, kind: str, refs: set[str]) -> dict[str, Package]:
    """The version whose name a customer may see: the published one (a draft's new name is not public
    yet), else the newest (a package archived since)."""
    newest = package_store.current_many(s, env_id, kind, refs)
    return {ref: package_store.latest_published(s, env_id, kind, ref) or package for ref, package in newest.items()}


def _named(view: subscriptions.SubscriptionView) -> tuple[set[str], set[str]]:
    """The plans its scheduled changes move to, and the add-ons it and they hold."""
    plan_refs = {u.target_package_ref for u in view.future_updates if u.target_package_ref}
    addon_refs = {a.addon_ref for a in view.addons} | {
        str(a["id"]) for u in view.future_updates for a in u.change.get("addons") or [] if "id" in a
    }
    return plan_refs, addon_refs


def _priced(
    s: Session, view: subscriptions.SubscriptionView, plans: dict[str, Package], addons: dict[str, Package]
) -> PricedSubscription:
    """Priced as a preview and the billing sync price it: the plan version subscribed to, for the
    subscription's period and country, with the subscription's own price overrides applied."""
    sub = view.sub
    plan = s.get(Package, sub.plan_pk)
    assert plan is not None  # a subscription's plan version is never deleted
    prices: list[pricing.Price] = []
    overrides = price_rules.amounts(sub.price_overrides)
    if sub.billing_period is not None:
        prices = plan_prices(s, plan, sub.billing_period, sub.billing_country_code, overrides)
    refs = [p.feature_ref for p in prices if p.feature_ref]
    features = feature_store.get_many(s, sub.environment_id, refs)
    units = {ref: f.feature_units or f.display_name for ref, f in features.items()}
    plurals = {ref: f.feature_units_plural for ref, f in features.items() if f.feature_units_plural}
    charged = {
        pricing.quantity_key(c.charge_type, c.ref_id): c.quantity
        for c in subscription_store.charges_of(s, [sub.pk]).get(sub.pk, [])
    }
    per_unit = [p.feature_ref for p in prices if p.feature_ref and p.billing_model == "PER_UNIT"]
    quantities = {ref: Decimal(charged.get(ref, sub.unit_quantity or 1)) for ref in per_unit}
    recurring = None
    if sub.billing_period is not None:
        lines = held_lines(s, sub, sub.billing_period, sub.billing_country_code, charged)
        recurring = pricing.invoice(lines[0].currency, lines) if lines else None
    targets, held = _named(view)
    return PricedSubscription(
        view=view,
        plan_display_name=plan.display_name,
        prices=prices,
        feature_units=units,
        feature_units_plural=plurals,
        quantities=quantities,
        plan_names={ref: plans[ref].display_name for ref in sorted(targets) if ref in plans},
        addon_names={ref: addons[ref].display_name for ref in sorted(held) if ref in addons},
        recurring=recurring,
    )


def customer(db: Database, env_id: int, customer_ref: str) -> customers.CustomerView:
    return customers.get_customer(db, env_id, customer_ref)


def _for_customer(customer_ref: str, body: WidgetPreviewIn | WidgetSubscriptionIn) -> Any:
    """The API's request for the customer in the path; a path id no customer can have (a control
    character, over 255 characters) names no customer: 404, as the API's customer routes answer."""
    try:
        return body.for_customer(customer_ref)
    except ValidationError as exc:
        raise NotFound("customer", customer_ref[:255]) from exc


class BillingCountryMismatch(InvalidArgument):
    code = "BILLING_COUNTRY_MISMATCH"


def _in_customers_country(db: Database, env_id: int, customer_ref: str, body: Choice) -> Choice:
    """Priced in the country the pricing table showed: the customer's subscribed country, else the one
    the page asks for (`subscriptions.rules.billing_country`). A page asking for another country than the
    one the customer already pays in is refused, not repriced behind its back."""
    with db.read() as s:
        try:
            customer_pk = customer_store.get_live(s, env_id, customer_ref).pk
        except NotFound:
            return body  # the preview or provisioning says the customer is unknown
        plan = package_store.current(s, env_id, "PLAN", body.plan_id)
        products = [plan.product_pk] if plan is not None else []
        country = customer_country(s, customer_pk, body.billing_country_code, products)
    asked = body.billing_country_code
    if asked is not None and (country or "").upper() != asked.upper():
        raise BillingCountryMismatch(
            f"billingCountryCode: customer '{customer_ref}' pays the prices of {country}, where it is subscribed, "
            f"not those of {asked}"
        )
    return body.model_copy(update={"billing_country_code": country})


def preview(db: Database, env_id: int, customer_ref: str, body: WidgetPreviewIn) -> WidgetPreviewOut:
    body = _in_customers_country(db, env_id, customer_ref, body)
    answer = preview_subscription(db, env_id, _for_customer(customer_ref, body))
    takes_effect = _scheduled_for(db, env_id, customer_ref, body.plan_id) if answer.has_scheduled_updates else None
    return WidgetPreviewOut(**dict(answer), scheduled_for=takes_effect)


def _scheduled_for(db: Database, env_id: int, customer_ref: str, plan_ref: str) -> datetime | None:
    """When a change the preview says waits takes effect: the end of the billing period of the product's
    current subscription, where provisioning schedules it."""
    with db.read() as s:
        product_pk = validation.product_of_plan(s, env_id, plan_ref)
        customer = customer_store.get_live(s, env_id, customer_ref)
        for sub in subscription_store.of_customer(s, customer.pk, [str(status) for status in LIVE]):
            if sub.product_pk == product_pk and not sub.resource_ref:
                window = subscriptions.view_of(s, sub).billing_window()
                return window.end if window else None
    return None


def subscribe(db: Database, env_id: int, customer_ref: str, body: WidgetSubscriptionIn) -> provisioning.ProvisionResult:
    _buyable(db, env_id, body.plan_id)
    body = _in_customers_country(db, env_id, customer_ref, body)
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
