"""The webhooks adapter: each domain event becomes the webhook events endpoints receive, as delivery jobs
in the transaction that published it (installed at start-up by `entitle.wiring.install`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from entitle.credits.events import (
    CreditBalanceDepleted,
    CreditBalanceLow,
    CreditGrantCreated,
    CreditGrantEnded,
)
from entitle.customers.events import (
    CustomerArchived,
    CustomerCreated,
    CustomerUnarchived,
    CustomerUpdated,
    EntitlementsChanged,
)
from entitle.domain_events import subscribe
from entitle.promotions.events import PromotionExpired, PromotionsGranted, PromotionsRevoked
from entitle.subscriptions.events import PaymentFailed, SubscriptionCreated, SubscriptionEnded, SubscriptionUpdated
from entitle.usage.events import UsageLimitHit
from entitle.webhooks import emit

ENDED_EVENTS = {
    "CANCELED": "subscription.canceled",
    "EXPIRED": "subscription.expired",
    "TRIAL_EXPIRED": "subscription.trial_expired",
}


def customer_created(s: Session, event: CustomerCreated) -> None:
    # Built only when an endpoint wants it (most environments have none).
    emit.emit(s, event.env_id, "customer.created", lambda: emit.customer_data(event.customer))


def customer_updated(s: Session, event: CustomerUpdated | CustomerUnarchived) -> None:
    emit.emit(s, event.env_id, "customer.updated", emit.customer_data(event.customer))


def customer_archived(s: Session, event: CustomerArchived) -> None:
    emit.emit(s, event.env_id, "customer.archived", emit.customer_data(event.customer))


def entitlements_changed(s: Session, event: EntitlementsChanged) -> None:
    data = {"customerId": event.customer_ref, "resourceId": event.resource_ref}
    emit.emit(s, event.env_id, "entitlements.updated", data)


def subscription_created(s: Session, event: SubscriptionCreated) -> None:
    emit.emit(s, event.env_id, "subscription.created", lambda: emit.subscription_data(s, event.sub)[1])
    emit.schedule_trial_ends_soon(s, event.sub)


def subscription_updated(s: Session, event: SubscriptionUpdated) -> None:
    emit.emit(
        s,
        event.env_id,
        "subscription.updated",
        lambda: {**emit.subscription_data(s, event.sub)[1], "change": event.change},
    )
    emit.schedule_trial_ends_soon(s, event.sub)


def subscription_ended(s: Session, event: SubscriptionEnded) -> None:
    emit.emit(s, event.env_id, ENDED_EVENTS[event.outcome], lambda: emit.subscription_data(s, event.sub)[1])


def payment_failed(s: Session, event: PaymentFailed) -> None:
    emit.emit(s, event.env_id, "customer.payment_failed", emit.payment_failed_data(s, event.sub, event.details))


def promotions_granted(s: Session, event: PromotionsGranted) -> None:
    for row in event.rows:
        emit.emit(s, event.env_id, "promotional_entitlement.granted", emit.promotion_data(event.customer_ref, row))


def promotions_revoked(s: Session, event: PromotionsRevoked) -> None:
    for row in event.rows:
        emit.emit(s, event.env_id, "promotional_entitlement.revoked", emit.promotion_data(event.customer_ref, row))


def promotion_expired(s: Session, event: PromotionExpired) -> None:
    for row in event.rows:
        emit.emit(s, event.env_id, "promotional_entitlement.expired", emit.promotion_data(event.customer_ref, row))


def usage_limit_reached(s: Session, event: UsageLimitHit) -> None:
    emit.usage_limit(
        s,
        "usage.soft_limit_exceeded" if event.soft else "usage.limit_reached",
        event.env_id,
        customer_pk=event.customer_pk,
        customer_ref=event.customer_ref,
        feature_ref=event.feature_ref,
        resource_ref=event.resource_ref,
        window_start=event.window_start,
        window_end=event.window_end,
        limit=event.limit,
        current=event.current,
        refused=event.refused,
    )


def credit_grant_created(s: Session, event: CreditGrantCreated) -> None:
    # Dumped only when an endpoint wants it: a parent plan's publish makes and ends hundreds of grants.
    emit.emit(s, event.env_id, "credit_grant.created", lambda: emit.credit_grant_data(event.grant))


def credit_grant_ended(s: Session, event: CreditGrantEnded) -> None:
    kind = "credit_grant.voided" if event.grant.status == "VOIDED" else "credit_grant.expired"
    emit.emit(s, event.env_id, kind, lambda: emit.credit_grant_data(event.grant))


def credit_balance_low(s: Session, event: CreditBalanceLow) -> None:
    emit.emit(s, event.env_id, "credit_balance.low", emit.credit_balance_data(event.wallet, event.previous))


def credit_balance_depleted(s: Session, event: CreditBalanceDepleted) -> None:
    emit.emit(s, event.env_id, "credit_balance.depleted", emit.credit_balance_data(event.wallet, event.previous))


def install() -> None:
    subscribe(CustomerCreated, customer_created)
    subscribe(CustomerUpdated, customer_updated)
    subscribe(CustomerUnarchived, customer_updated)
    subscribe(CustomerArchived, customer_archived)
    subscribe(EntitlementsChanged, entitlements_changed)
    subscribe(SubscriptionCreated, subscription_created)
    subscribe(SubscriptionUpdated, subscription_updated)
    subscribe(SubscriptionEnded, subscription_ended)
    subscribe(PaymentFailed, payment_failed)
    subscribe(PromotionsGranted, promotions_granted)
    subscribe(PromotionsRevoked, promotions_revoked)
    subscribe(PromotionExpired, promotion_expired)
    subscribe(UsageLimitHit, usage_limit_reached)
    subscribe(CreditGrantCreated, credit_grant_created)
    subscribe(CreditGrantEnded, credit_grant_ended)
    subscribe(CreditBalanceLow, credit_balance_low)
    subscribe(CreditBalanceDepleted, credit_balance_depleted)
