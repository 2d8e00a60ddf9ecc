"""Whether a subscription is billed through the provider (`no_sync_reason`), and how many a paying customer
has there (`active_provider_subscriptions`, for the provider's per-customer limit)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entitle.billing import rules
from entitle.billing.models import ERROR, PENDING, SUBSCRIPTION, SUCCESS, BillingLink, Integration
from entitle.catalog.packages import store as packages
from entitle.customers.models import Customer
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription

_OPEN = ("NOT_STARTED", "PAYMENT_PENDING", "IN_TRIAL", "ACTIVE")


def active_provider_subscriptions(session: Session, integration: Integration, customer_pk: int) -> int:
    """How many open subscriptions paid by the customer are (or are about to be) provider subscriptions."""
    paying = func.coalesce(Subscription.paying_customer_pk, Subscription.customer_pk)
    return int(
        session.scalar(
            select(func.count())
            .select_from(Subscription)
            .join(BillingLink, BillingLink.entity_pk == Subscription.pk)
            .where(
                BillingLink.integration_pk == integration.pk,
                BillingLink.entity_kind == SUBSCRIPTION,
                BillingLink.sync_state.in_((PENDING, SUCCESS, ERROR)),
                paying == customer_pk,
                Subscription.status.in_(_OPEN),
            )
        )
        or 0
    )


def no_sync_reason(
    session: Session, integration: Integration, customer: Customer, sub: Subscription, *, converted: bool = False
) -> str | None:
    """Why a subscription is not synced to the provider, or None when it is (`converted`: its trial
    has just converted to paid)."""
    if not integration.sync_subscriptions:
        return "subscription sync is turned off for the integration"
    if sub.pricing_type == "FREE":
        return "free subscription: nothing to bill"
    if sub.pricing_type == "CUSTOM":
        return "custom-priced subscription: billed outside the provider"
    if sub.trial_end_date is not None and not converted:
        return "trial subscription: not billed while in trial"
    if sub.billing_id:
        return f"already linked to provider subscription {sub.billing_id} (billingId)"
    if not integration.sync_customers and not customer.billing_id:
        return "customer sync is turned off and the customer has no billingId"
    versions = [sub.plan_pk, *(a.addon_pk for a in subscriptions.addons_of(session, [sub.pk]).get(sub.pk, []))]
    charges = [c for pk in versions for c in packages.charges_of(session, pk)]
    if not rules.billed_by_provider(charges, sub.billing_period):
        return (
            f"nothing the provider bills for {sub.billing_period}: the subscription's charges (a minimum spend, "
            "credits) are not billed through the provider"
        )
    return None


__all__ = ["active_provider_subscriptions", "no_sync_reason"]
