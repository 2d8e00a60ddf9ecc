"""What happens to subscriptions, announced in the transaction that did it (see `entitle.domain_events`).

`announce_update` is the one way a use case says a subscription changed: `SubscriptionUpdated`, then,
when what the customer is entitled to changed, `EntitlementsChanged` for its customer and resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from entitle.customers.events import entitlements_changed
from entitle.customers.models import Customer
from entitle.domain_events import DomainEvent, publish
from entitle.subscriptions.models import Subscription


@dataclass(frozen=True, kw_only=True)
class SubscriptionEvent(DomainEvent):
    sub: Subscription


@dataclass(frozen=True, kw_only=True)
class SubscriptionCreated(SubscriptionEvent):
    # A Stripe Checkout was planned for it: the checkout makes the provider subscription, not a sync.
    via_checkout: bool = False
    # The subscription of the same product it replaces (a plan change made now): ended already, or ending
    # when this one's first payment arrives. The billing adapter changes its provider subscription in place.
    replaced: Subscription | None = None
    # The request's `billingInformation.prorationBehavior`: how the provider prorates that change.
    proration: str | None = None


@dataclass(frozen=True, kw_only=True)
class SubscriptionUpdated(SubscriptionEvent):
    """`change` says what: UPDATED, MIGRATED, DELEGATED, TRANSFERRED, STARTED, TRIAL_CONVERTED,
    UPDATE_SCHEDULED, CANCELLATION_SCHEDULED, CANCELLATION_WITHDRAWN, FUTURE_UPDATE_APPLIED,
    FUTURE_UPDATE_CANCELED, PAYMENT_SUCCEEDED, PAYMENT_FAILED, ..."""

    change: str


EndOutcome = Literal["CANCELED", "EXPIRED", "TRIAL_EXPIRED"]


@dataclass(frozen=True, kw_only=True)
class SubscriptionEnded(SubscriptionEvent):
    """Canceled (now, by a plan change, by archiving its customer, by the billing provider), expired (at
    its end date or scheduled cancellation), or its trial expired without converting."""

    outcome: EndOutcome


@dataclass(frozen=True, kw_only=True)
class CancellationRequested(SubscriptionEvent):
    """`POST .../cancel` was accepted: the subscription ends (or ended) at `ends_at`. `prorate` is the
    request's flag for the credits it granted (None: not sent); the credits domain acts on it."""

    ends_at: datetime
    prorate: bool | None = None


@dataclass(frozen=True, kw_only=True)
class BillingTermsChanged(SubscriptionEvent):
    """What the provider bills for changed (add-ons, charges, coupon, billing period, plan version).
    `proration`: the request's `billingInformation.prorationBehavior`; `scheduled`: applied at a period's
    end (nothing to prorate)."""

    proration: str | None = None
    scheduled: bool = False


@dataclass(frozen=True, kw_only=True)
class TrialConverted(SubscriptionEvent):
    """The trial ended and the subscription is now paid."""


@dataclass(frozen=True, kw_only=True)
class PaymentFailed(SubscriptionEvent):
    details: Mapping[str, Any] | None = None


def customer_ref_of(s: Session, sub: Subscription) -> str:
    customer = s.get(Customer, sub.customer_pk)
    return customer.ref_id if customer is not None else ""


def announce_update(
    s: Session,
    sub: Subscription,
    change: str,
    *,
    entitlements: bool = True,
    also: Sequence[tuple[str, str | None]] = (),
) -> None:
    """`SubscriptionUpdated`; with `entitlements`, also `EntitlementsChanged` for the customer and
    resource, and for each (customer, resource) in `also` (where a delegated or transferred
    subscription was before)."""
    publish(s, SubscriptionUpdated(env_id=sub.environment_id, sub=sub, change=change))
    if entitlements:
        entitlements_changed(s, sub.environment_id, customer_ref_of(s, sub), sub.resource_ref)
        for other_customer, other_resource in also:
            entitlements_changed(s, sub.environment_id, other_customer, other_resource)


def announce_end(s: Session, sub: Subscription, outcome: EndOutcome) -> None:
    publish(s, SubscriptionEnded(env_id=sub.environment_id, sub=sub, outcome=outcome))
    entitlements_changed(s, sub.environment_id, customer_ref_of(s, sub), sub.resource_ref)
