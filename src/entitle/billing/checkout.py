"""Stripe Checkout for a new paid subscription, and the Billing Portal.

When a subscription is provisioned with `checkoutOptions`, the environment has a Stripe integration
that syncs subscriptions, the subscription is paid (not free, custom-priced or in a trial, and not
already linked with a `billingId`) and the paying customer has no payment method on file, Entitle
answers `PAYMENT_REQUIRED` with a Stripe Checkout URL instead of charging (as Stigg does; with a payment
method on file, or without a provider, provisioning goes on as usual and `checkoutOptions` is ignored).
Without `checkoutOptions`, the same holds for a subscription Stripe would have to charge
(`paymentCollectionMethod` CHARGE) when the request can wait for Stripe (`POST /api/v1/subscriptions`, a
new subscription): the session takes the default URLs (`default_options`, settings of the process).

1. `plan_checkout` runs in the provisioning transaction: the subscription is recorded PAYMENT_PENDING
   (no entitlements), its billing link PENDING with `details.checkout` — and no
   `billing.sync_subscription` job: the Checkout Session creates the Stripe subscription itself — but
   the settlement window's `billing.payment_settlement` job, which cancels it if still unpaid then.
   The prices are checked there, so a plan whose prices are not at Stripe yet is refused before
   anything is written.
2. `open_session` runs after that commit, while the request waits: it ensures the Stripe customer
   (the customer sync's code, recorded at once) and creates the session in `subscription` mode with
   the prices the subscription sync would use, `metadata.entitleSubscriptionId` on the session and on
   the subscription it creates, and the options asked for. Every call carries an idempotency key
   derived from the integration and the subscription (`entitle-checkout-<integration>-<pk>`). The
   session expires a minute before the settlement window closes (within Stripe's 30 min to 24 h), so
   no payment can complete for a subscription the window has canceled.
3. The session's id and URL are recorded on the link in a second transaction.

Why the request waits for Stripe here, and nowhere else: the answer *is* the Checkout URL, which only
Stripe can make; an outbox job would leave the caller nothing to redirect to. The two transactions keep
the database out of the Stripe call. If Stripe fails, the subscription is canceled (cancel reason
`CANCELLED_BY_BILLING`, nothing was ever granted) and the request answers 502
`BILLING_PROVIDER_ERROR`, so no open subscription is left without a way to pay for it.

When the customer completes the session, `checkout.session.completed` (the inbound webhook handler)
finds the subscription by `metadata.entitleSubscriptionId`, links the Stripe subscription and
activates it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from entitle.billing import store
from entitle.billing.customer_links import payment_method_of, record_customer
from entitle.billing.models import CUSTOMER, ERROR, PENDING, SUBSCRIPTION, SUCCESS, Integration
from entitle.billing.provider import CheckoutRequest, CheckoutSession
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.subscription_sync import (
    SETTLE_PAYMENT_JOB,
    NotReadyToSync,
    _read,
    no_sync_reason,
    promotion_code_for,
    promotion_payload,
)
from entitle.clock import utcnow
from entitle.config import load_settings
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.errors import BillingProviderError, FailedPrecondition
from entitle.jobs.service import enqueue
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.ports import CheckoutOptions

log = logging.getLogger(__name__)

CHECKOUT_PENDING_REASON = "waiting for the customer to complete Stripe Checkout"
MIN_SESSION_SECONDS = 30 * 60  # Stripe's bounds on a Checkout Session's expires_at
MAX_SESSION_SECONDS = 24 * 3600 - 60


def checkout_integration(s: Session, sub: Subscription, *, asked: bool = True) -> Integration | None:
    """The integration to check out through when this new subscription must be paid through Checkout.

    None when it needs no checkout: no Stripe integration, nothing the sync would bill (free, custom,
    trial, already linked, sync off), or a payment method already on file (Stripe charges it).
    Not `asked` (provisioning gave no `checkoutOptions`), a Checkout is also opened for a subscription
    Stripe would have to charge (`paymentCollectionMethod` CHARGE) with no payment method to charge;
    one paid by invoice (INVOICE) or not collected (NONE) needs none.
    """
    if not asked and sub.payment_collection_method != "CHARGE":
        return None
    integration = store.integration_for_subscription(s, sub)
    if integration is None:
        return None
    customer = s.get(Customer, sub.paying_customer_pk or sub.customer_pk)
    assert customer is not None
    if no_sync_reason(s, integration, customer, sub) is not None:
        return None
    if payment_method_of(customer) is not None:
        return None
    return integration


DEFAULT_SUCCESS_PATH = "/checkout/success?session_id={CHECKOUT_SESSION_ID}"


def default_options() -> CheckoutOptions:
    """The Checkout's options when provisioning gave none: Stripe requires a success URL (its
    `{CHECKOUT_SESSION_ID}` placeholder becomes the session's id). ENTITLE_CHECKOUT_SUCCESS_URL, else
    ENTITLE_CONSOLE_URL + DEFAULT_SUCCESS_PATH; ENTITLE_CHECKOUT_CANCEL_URL, else none."""
    settings = load_settings()
    return CheckoutOptions(
        success_url=settings.checkout_success_url or f"{settings.console_base_url}{DEFAULT_SUCCESS_PATH}",
        cancel_url=settings.checkout_cancel_url,
    )


def plan_checkout(s: Session, integration: Integration, sub: Subscription, options: CheckoutOptions) -> None:
    """In the provisioning transaction: link PENDING for checkout (no sync job), after checking the prices."""
    try:
        _read(s, integration, sub, load_settings().console_base_url)
    except NotReadyToSync as exc:
        raise FailedPrecondition(f"checkout is not possible yet: {exc}") from exc
    store.put_link(
        s,
        integration,
        SUBSCRIPTION,
        sub.pk,
        PENDING,
        reason=CHECKOUT_PENDING_REASON,
        details={"checkout": {"state": "CREATING", "successUrl": options.success_url}}
        | promotion_payload(store.take_promotion(s, sub.pk)),
    )
    # The settlement window, as for any paid subscription waiting for its first payment: unpaid by
    # then, it is canceled (the session has expired at Stripe a minute before).
    enqueue(
        s,
        sub.environment_id,
        SETTLE_PAYMENT_JOB,
        {"integrationPk": integration.pk, "subscriptionPk": sub.pk},
        run_at=utcnow() + timedelta(hours=integration.payment_settlement_hours),
        dedupe_key=f"payment-settlement:{sub.pk}",
    )


def session_expiry(integration: Integration) -> datetime:
    """When the session stops taking payment: a minute before the settlement window cancels the
    subscription (so no payment can arrive for a canceled one), within Stripe's 30 minutes to 24 hours."""
    seconds = integration.payment_settlement_hours * 3600 - 60
    return utcnow() + timedelta(seconds=min(MAX_SESSION_SECONDS, max(MIN_SESSION_SECONDS, seconds)))


def idempotency_key(integration: Integration, sub_pk: int) -> str:
    return f"entitle-checkout-{integration.ref_id}-{sub_pk}"


def open_session(db: Database, sub_pk: int, options: CheckoutOptions) -> CheckoutSession:
    """After the provisioning commit: create the Stripe customer (if needed) and the Checkout Session.

    Raises `BillingProviderError` when Stripe fails; the caller cancels the subscription.
    """
    settings = load_settings()
    with db.read() as s:
        sub = subscriptions.by_pk(s, sub_pk)
        assert sub is not None
        integration = store.integration_for_subscription(s, sub)
        if integration is None:
            raise BillingProviderError("the Stripe integration was removed while the subscription was provisioned")
        try:
            plan = _read(s, integration, sub, settings.console_base_url)
        except NotReadyToSync as exc:
            raise BillingProviderError(f"checkout is not possible: {exc}") from exc
        planned = store.link(s, integration.pk, SUBSCRIPTION, sub_pk)
        promotion = promotion_code_for(dict(planned.details) if planned is not None else {}, plan.coupon_billing_id)
    key = idempotency_key(integration, sub_pk)
    provider = provider_for(integration, secret_box(settings.data_dir))
    try:
        customer_id = provider.sync_customer(plan.customer, existing_id=plan.customer_billing_id, idempotency_key=key)
        if customer_id is None:
            raise RuntimeError("the provider did not create a customer")
        if customer_id != plan.customer_billing_id:
            record_customer(db, integration, plan.customer_pk, customer_id)
        session = provider.create_checkout_session(
            CheckoutRequest(
                customer_billing_id=customer_id,
                items=plan.items,
                success_url=options.success_url,
                cancel_url=options.cancel_url,
                metadata=plan.metadata,
                allow_promo_codes=options.allow_promo_codes,
                collect_tax_id=options.allow_tax_id_collection,
                collect_billing_address=options.collect_billing_address,
                collect_phone_number=options.collect_phone_number,
                client_reference_id=options.reference_id,
                coupon_billing_id=plan.coupon_billing_id,
                promotion_code_billing_id=promotion,
                expires_at=session_expiry(integration),
            ),
            idempotency_key=key,
        )
    except Exception as exc:
        log.warning("Stripe checkout for subscription %s failed: %s", sub_pk, exc)
        raise BillingProviderError(f"Stripe could not create the checkout session: {exc}"[:1000]) from exc
    with db.transaction() as s:
        link = store.link(s, integration.pk, SUBSCRIPTION, sub_pk)
        details = dict(link.details) if link is not None else {}
        checkout = {**(details.get("checkout") or {}), "state": "OPEN", "sessionId": session.id, "url": session.url}
        store.put_link(
            s,
            integration,
            SUBSCRIPTION,
            sub_pk,
            PENDING,
            reason=f"{CHECKOUT_PENDING_REASON} (session {session.id})",
            details={**details, "checkout": checkout},
        )
    return session


def checkout_failed(s: Session, sub: Subscription, error: str) -> None:
    """Record on the link why the checkout never opened (the caller cancels the subscription)."""
    integration = store.integration_for_subscription(s, sub)
    if integration is None:
        return
    link = store.link(s, integration.pk, SUBSCRIPTION, sub.pk)
    details = dict(link.details) if link is not None else {}
    checkout = {**(details.get("checkout") or {}), "state": "FAILED", "error": error[:1000]}
    store.put_link(
        s,
        integration,
        SUBSCRIPTION,
        sub.pk,
        ERROR,
        reason=f"checkout failed: {error}"[:2000],
        details={**details, "checkout": checkout},
    )


# -- billing portal ------------------------------------------------------------------------------------


def portal_session(db: Database, env_id: int, customer_ref: str, return_url: str) -> str:
    """A Stripe Billing Portal URL for a customer that exists at Stripe (a 409 otherwise)."""
    settings = load_settings()
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        integration = store.integration_for_customer(s, customer)
        if integration is None:
            raise FailedPrecondition(
                "a billing portal needs a billing provider: connect Stripe with POST /api/v1/integrations"
            )
        billing_id = stripe_customer_id(s, integration, customer)
        if billing_id is None:
            raise FailedPrecondition(
                f"customer '{customer_ref}' has no Stripe customer yet: it is created when the customer gets a paid "
                "subscription or a payment method, or give its Stripe id as billingId"
            )
    provider = provider_for(integration, secret_box(settings.data_dir))
    try:
        # No idempotency key of our own: each call is meant to open a new, short-lived session.
        return provider.create_portal_session(
            billing_id, return_url, idempotency_key=_fresh_key(), configuration=integration.portal_configuration_id
        )
    except Exception as exc:
        log.warning("Stripe portal session for customer %s failed: %s", customer_ref, exc)
        raise BillingProviderError(f"Stripe could not create the portal session: {exc}"[:1000]) from exc


def stripe_customer_id(s: Session, integration: Integration, customer: Customer) -> str | None:
    link = store.link(s, integration.pk, CUSTOMER, customer.pk)
    if link is not None and link.sync_state == SUCCESS and link.billing_id:
        return link.billing_id
    return customer.billing_id or None


def _fresh_key() -> str:
    return f"entitle-portal-{uuid.uuid4().hex}"


__all__ = [
    "checkout_failed",
    "checkout_integration",
    "default_options",
    "open_session",
    "plan_checkout",
    "portal_session",
    "stripe_customer_id",
]
