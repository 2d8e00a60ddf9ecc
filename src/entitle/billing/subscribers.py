"""The billing adapter: domain events become provider sync jobs in the transaction that published them,
and the subscriptions domain's questions (`subscriptions.ports.billing`) and the customers' and
subscriptions' sync states (`sync_states.reader`) are answered here. Installed at start-up by
`entitle.wiring.install`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from entitle.billing import (
    catalog_sync,
    checkout,
    coupon_sync,
    credit_invoices,
    customer_sync,
    forwarding,
    payment_methods,
    rules,
    store,
    subscription_sync,
    subscription_updates,
)
from entitle.billing import service as integrations
from entitle.billing.models import Integration
from entitle.billing.providers import is_permanent_provider_error
from entitle.catalog.coupons.events import CouponArchived, CouponCreated
from entitle.catalog.packages.events import PackagePublished
from entitle.customers import ports as customer_ports
from entitle.customers.events import CustomerUpdated
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.domain_events import subscribe
from entitle.jobs.service import add_permanent_error_classifier
from entitle.subscriptions import ports as subscription_ports
from entitle.subscriptions.events import BillingTermsChanged, SubscriptionCreated, SubscriptionEnded, TrialConverted
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.ports import CheckoutOptions, OpenedCheckout
from entitle.sync_states import matcher as sync_state_matcher
from entitle.sync_states import reader as sync_state_reader


class SubscriptionBilling:
    """`subscriptions.ports.Billing`, answered by the connected integrations."""

    def choose_integration(self, s: Session, sub: Subscription, billing_information: Mapping[str, Any] | None) -> None:
        integrations.choose_subscription_integration(s, sub, billing_information)

    def check_integration(self, s: Session, sub: Subscription, billing_information: Mapping[str, Any] | None) -> None:
        integrations.check_subscription_integration(s, sub, billing_information)

    def requires_payment(self, s: Session, sub: Subscription) -> bool:
        return subscription_sync.requires_payment(s, sub)

    def checkout_integration(self, s: Session, sub: Subscription, *, asked: bool) -> object | None:
        return checkout.checkout_integration(s, sub, asked=asked)

    def default_checkout_options(self) -> CheckoutOptions:
        return checkout.default_options()

    def plan_checkout(self, s: Session, integration: object, sub: Subscription, options: CheckoutOptions) -> None:
        assert isinstance(integration, Integration)
        checkout.plan_checkout(s, integration, sub, options)

    def open_checkout(self, db: Database, sub_pk: int, options: CheckoutOptions) -> OpenedCheckout:
        return checkout.open_session(db, sub_pk, options)

    def checkout_failed(self, s: Session, sub: Subscription, message: str) -> None:
        checkout.checkout_failed(s, sub, message)

    def forward_billing_information(
        self, s: Session, sub: Subscription, billing_information: Mapping[str, Any], *, via_checkout: bool, new: bool
    ) -> None:
        forwarding.forward(s, sub, billing_information, via_checkout=via_checkout, new=new)

    def prefetch_promotion_code(
        self,
        db: Database,
        env_id: int,
        customer_ref: str,
        billing_information: Mapping[str, Any] | None,
        code: str,
        *,
        customer_integration: str | None = None,
    ) -> dict[str, Any]:
        return forwarding.prefetch_promotion_code(
            db, env_id, customer_ref, billing_information, code, customer_integration=customer_integration
        )

    def resolve_promotion_code(self, s: Session, sub: Subscription, code: str) -> str:
        return forwarding.resolve_promotion_code(s, sub, code)

    def preview_promotion_code(
        self, s: Session, env_id: int, payer: Customer, billing_information: Mapping[str, Any] | None, code: str
    ) -> str:
        return forwarding.preview_promotion_code(s, env_id, payer, billing_information, code)


def coupon_created(s: Session, event: CouponCreated) -> None:
    coupon_sync.coupon_created(s, event.coupon)  # a provider coupon at each connected integration


def coupon_archived(s: Session, event: CouponArchived) -> None:
    coupon_sync.coupon_archived(s, event.coupon)  # deletes the provider coupons; applied discounts stay


def package_published(s: Session, event: PackagePublished) -> None:
    catalog_sync.package_published(s, event.env_id, event.package)


def subscription_created(s: Session, event: SubscriptionCreated) -> None:
    if not event.via_checkout:  # a Checkout makes the provider subscription itself
        proration = rules.provider_proration(event.proration)
        subscription_sync.subscription_provisioned(s, event.sub, replaced=event.replaced, proration=proration)


def subscription_ended(s: Session, event: SubscriptionEnded) -> None:
    subscription_sync.subscription_ended(s, event.sub)  # cancels the provider subscription, if there is one


def billing_terms_changed(s: Session, event: BillingTermsChanged) -> None:
    proration = rules.provider_proration(event.proration)
    subscription_updates.subscription_changed(s, event.sub, scheduled=event.scheduled, proration=proration)


def customer_updated(s: Session, event: CustomerUpdated) -> None:
    customer_sync.contact_changed(s, event.customer, event.contact_changed)


def trial_converted(s: Session, event: TrialConverted) -> None:
    subscription_sync.subscription_converted(s, event.sub)  # now paid: synced to the provider


def install() -> None:
    add_permanent_error_classifier(is_permanent_provider_error)
    subscribe(CouponCreated, coupon_created)
    subscribe(CouponArchived, coupon_archived)
    subscribe(PackagePublished, package_published)
    subscribe(SubscriptionCreated, subscription_created)
    subscribe(SubscriptionEnded, subscription_ended)
    subscribe(BillingTermsChanged, billing_terms_changed)
    subscribe(TrialConverted, trial_converted)
    subscribe(CustomerUpdated, customer_updated)
    subscription_ports.billing.install(SubscriptionBilling())
    customer_ports.billing_information.install(customer_sync.forward_billing_information)
    customer_ports.payment_method.install(payment_methods.check_given_payment_method)
    credit_invoices.install()  # credits.ports.paid_grants: invoiced credit grants
    sync_state_reader.install(store.sync_states_of)
    sync_state_matcher.install(store.entities_in_sync_states)
