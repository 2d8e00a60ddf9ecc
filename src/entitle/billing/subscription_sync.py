"""Customer and subscription sync through the outbox: a paid subscription becomes a provider subscription.

1. `subscription_provisioned` runs inside the provisioning transaction. When the integration billing the
   subscription (`store.integration_for_subscription`: its `billingInformation.integrationId`, else its
   paying customer's) has subscription sync on, a paid, non-trial subscription gets a PENDING link and one
   `billing.sync_subscription` job (due at the subscription's start). A free, trial or custom-priced
   subscription gets a NO_SYNC_REQUIRED link with the reason, and nothing is sent to the provider.
   Jobs of one customer run in order (ordering key per customer). A trial that converts to paid
   is synced then (`subscription_converted`).
2. The job ensures the provider customer (metadata `entitleCustomerId`, `entitleEntityUrl`; the
   customer's payment method, when it has one, becomes its default), then creates the provider
   subscription with one item per charge of the plan and of each add-on (the prices the catalog sync
   recorded in `billing_links`), and records both links, the subscription's `billing_id` and, when
   empty, the customer's. Every write carries the job's idempotency key plus a per-call suffix, so a
   re-run after a crash replays the provider's first answers.
3. `subscription_ended` runs in the transaction that ends a subscription: a synced (or pending)
   subscription gets a `billing.cancel_subscription` job, ordered after its sync job — unless the other
   side of a plan change made in place holds the provider subscription, which then passes to it.
4. A plan change from a paid subscription already at the provider (`plan_changes`): the new subscription's
   sync job changes that provider subscription's items in place, prorated at the change and invoiced now,
   instead of creating one; the payment gate watches the change's invoice.

Payment gate: a new paid subscription that will be synced starts PAYMENT_PENDING (`requires_payment`,
installed through `entitle.subscriptions.hooks`) and gets a `billing.payment_settlement` job due after
the integration's settlement window. Right after creating the provider subscription the sync job reads
its status: `active`/`trialing` (paid at once) makes the Entitle subscription ACTIVE; `incomplete` leaves
it pending until `invoice.paid` arrives (`entitle.billing.inbound`), or the window cancels it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy.orm import Session

from entitle.billing import coupon_sync, plan_changes, rules, store, usage_sync
from entitle.billing.customer_links import customer_spec, link_customer, record_customer
from entitle.billing.models import (
    CUSTOMER,
    ERROR,
    NO_SYNC_REQUIRED,
    PACKAGE_CHARGE,
    PENDING,
    SUBSCRIPTION,
    SUCCESS,
    Integration,
)
from entitle.billing.provider import (
    BillingProvider,
    CollectionMethod,
    CustomerSpec,
    PlanChange,
    ProrationBehavior,
    SubscriptionExtras,
    SubscriptionItem,
    SubscriptionSpec,
    subscription_extras,
)
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.sync_eligibility import active_provider_subscriptions, no_sync_reason
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import Package
from entitle.clock import as_utc, utcnow
from entitle.config import console_page_url, load_settings
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.environments.models import Environment
from entitle.errors import FailedPrecondition
from entitle.jobs.service import JobContext, enqueue, register
from entitle.subscriptions import lifecycle as subscription_lifecycle
from entitle.subscriptions import price_rules
from entitle.subscriptions import pricing as price_pricing
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.preview import charges_for_country

log = logging.getLogger("entitle.billing")

SYNC_SUBSCRIPTION_JOB = "billing.sync_subscription"
CANCEL_SUBSCRIPTION_JOB = "billing.cancel_subscription"
SETTLE_PAYMENT_JOB = "billing.payment_settlement"  # handled in entitle.billing.inbound
PAID_STATUSES = ("active", "trialing")  # a provider subscription in these is paid (or needs nothing yet)
_OPEN = ("NOT_STARTED", "PAYMENT_PENDING", "IN_TRIAL", "ACTIVE")
UPDATE_SUBSCRIPTION_JOB = "billing.update_subscription"
LIMIT = rules.STRIPE_SUBSCRIPTIONS_PER_CUSTOMER  # tests lower it
_ = usage_sync  # imported so its jobs are registered wherever subscription sync is


def _ordering_key(integration: Integration, customer_pk: int) -> str:
    return f"billing:{integration.pk}:customer:{customer_pk}"


def requires_payment(session: Session, sub: Subscription) -> bool:
    """The payment gate: a paid subscription that the connected provider will bill waits for its first
    payment (PAYMENT_PENDING, no entitlements)."""
    integration = store.integration_for_subscription(session, sub)
    if integration is None:
        return False
    customer = session.get(Customer, sub.paying_customer_pk or sub.customer_pk)
    return customer is not None and no_sync_reason(session, integration, customer, sub) is None


def subscription_provisioned(
    session: Session,
    sub: Subscription,
    *,
    converted: bool = False,
    replaced: Subscription | None = None,
    proration: str | None = None,
) -> None:
    """On `SubscriptionCreated`, in the provisioning transaction: enqueue the sync when a provider is connected.
    `replaced`: the subscription a plan change replaces; its provider subscription takes the new plan in
    place when it has one (`plan_changes`), prorated by `proration` (the provider's; invoiced now when None)."""
    sealed = store.take_sealed(session, sub.pk)  # checked by `forwarding.forward`: this sub is synced
    promotion = store.take_promotion(session, sub.pk)
    integration = store.integration_for_subscription(session, sub)
    if integration is None:
        return
    customer_pk = sub.paying_customer_pk or sub.customer_pk
    customer = session.get(Customer, customer_pk)
    assert customer is not None
    if not converted and integration.sync_subscriptions:
        # Refused in the provisioning transaction (a trial too: it is invoiced once converted).
        rules.check_invoice_recipient(sub.payment_collection_method, sub.pricing_type, customer.email)
    reason = no_sync_reason(session, integration, customer, sub, converted=converted)
    if reason is not None:
        store.put_link(session, integration, SUBSCRIPTION, sub.pk, NO_SYNC_REQUIRED, reason=reason)
        if store.link(session, integration.pk, CUSTOMER, customer.pk) is None:
            store.put_link(
                session, integration, CUSTOMER, customer.pk, NO_SYNC_REQUIRED, reason="no synced subscription"
            )
        return
    if not converted:
        # Refused here, in the provisioning transaction: nothing of the subscription is written.
        rules.check_subscription_limit(active_provider_subscriptions(session, integration, customer_pk), LIMIT)
    elif active_provider_subscriptions(session, integration, customer_pk) >= LIMIT:
        # A trial converting in a background job cannot be refused: it shows why it is not billed.
        reason = f"the paying customer already has {LIMIT} active provider subscriptions (the provider's limit)"
        store.put_link(session, integration, SUBSCRIPTION, sub.pk, ERROR, reason=reason)
        return
    kept = plan_changes.in_place_of(session, integration, replaced)
    in_place: dict[str, object] = {}
    if kept is not None and replaced is not None:
        # The sync job moves that provider subscription's items to this plan: it has its id from now on, so
        # ending the replaced subscription hands it over rather than cancelling it.
        details = {"inPlaceOf": replaced.ref_id}
        store.put_link(session, integration, SUBSCRIPTION, sub.pk, PENDING, billing_id=kept.billing_id, details=details)
        in_place = {"inPlaceOf": replaced.pk} | ({"proration": proration} if proration else {})
        if replaced.status not in _OPEN:  # ended already (nothing waits for a payment): handed over now
            plan_changes.hand_over(kept, sub)
    else:
        store.put_link(session, integration, SUBSCRIPTION, sub.pk, PENDING)
    if sub.status == "PAYMENT_PENDING":
        # The settlement window: unpaid by then, the subscription is cancelled on both sides (the job
        # re-reads the status and does nothing once paid).
        enqueue(
            session,
            sub.environment_id,
            SETTLE_PAYMENT_JOB,
            {"integrationPk": integration.pk, "subscriptionPk": sub.pk},
            run_at=utcnow() + timedelta(hours=integration.payment_settlement_hours),
            dedupe_key=f"payment-settlement:{sub.pk}",
        )
    enqueue(
        session,
        sub.environment_id,
        SYNC_SUBSCRIPTION_JOB,
        {"integrationPk": integration.pk, "subscriptionPk": sub.pk} | promotion_payload(promotion) | in_place,
        run_at=sub.start_date,
        ordering_key=_ordering_key(integration, customer_pk),
        dedupe_key=f"billing-sync:{integration.pk}:{SUBSCRIPTION}:{sub.pk}",
        sealed={"subscription": sealed} if sealed else None,
    )
    if kept is not None and replaced is not None and replaced.status not in _OPEN:
        _enqueue_follow_up(session, integration, sub)


def _enqueue_follow_up(session: Session, integration: Integration, sub: Subscription) -> None:
    """A provider subscription handed over to `sub` gets its metadata, discount and collection by an update
    (ordered after its sync; the items already match, so nothing is prorated)."""
    enqueue(
        session,
        sub.environment_id,
        UPDATE_SUBSCRIPTION_JOB,
        {"integrationPk": integration.pk, "subscriptionPk": sub.pk, "proration": "none"},
        ordering_key=_ordering_key(integration, sub.paying_customer_pk or sub.customer_pk),
    )


def promotion_payload(promotion: dict[str, str] | None) -> dict[str, str]:
    """A promotion code the request applied travels with the job (a provider id, not billing details)."""
    if promotion is None:
        return {}
    return {"promotionCode": promotion["id"], "promotionCoupon": promotion["coupon"]}


def promotion_code_for(payload: dict[str, object], coupon_billing_id: str | None) -> str | None:
    """The promotion code to apply instead of the coupon: the job's, while its coupon is still the one the
    subscription has (a later change of coupon wins)."""
    code, coupon = payload.get("promotionCode"), payload.get("promotionCoupon")
    return str(code) if code and coupon_billing_id and coupon == coupon_billing_id else None


def subscription_converted(session: Session, sub: Subscription) -> None:
    """On `TrialConverted`: the subscription is synced from now on."""
    subscription_provisioned(session, sub, converted=True)


def subscription_ended(session: Session, sub: Subscription) -> None:
    """On `SubscriptionEnded`: cancel its provider subscription, if it has one."""
    integration = store.integration_for_subscription(session, sub)
    if integration is None:
        return
    link = store.link(session, integration.pk, SUBSCRIPTION, sub.pk)
    if link is None or link.sync_state == NO_SYNC_REQUIRED:
        return
    heir = plan_changes.successor(session, integration.pk, link.billing_id, sub) if link.billing_id else None
    if heir is not None:  # the other side of a plan change in place: the provider subscription bills it now
        plan_changes.hand_over(link, heir)
        _enqueue_follow_up(session, integration, heir)
        if not link.details.get("changeInvoice"):
            return
        # Its own change ends unpaid: the cancellation job cancels nothing then, but voids that invoice.
    enqueue(
        session,
        sub.environment_id,
        CANCEL_SUBSCRIPTION_JOB,
        {"integrationPk": integration.pk, "subscriptionPk": sub.pk},
        ordering_key=_ordering_key(integration, sub.paying_customer_pk or sub.customer_pk),
        dedupe_key=f"billing-cancel:{integration.pk}:{SUBSCRIPTION}:{sub.pk}",
    )


@dataclass(frozen=True)
class _Plan:
    customer_pk: int
    customer: CustomerSpec
    customer_billing_id: str | None  # already at the provider (link or billingId)
    items: tuple[SubscriptionItem, ...]
    metadata: dict[str, str]
    trial_end: datetime | None
    coupon_billing_id: str | None = None
    collection_method: CollectionMethod = "charge_automatically"
    default_payment_method: str | None = None

    def spec(
        self,
        sub: Subscription,
        customer_id: str,
        proration: ProrationBehavior = "create_prorations",
        extras: SubscriptionExtras = SubscriptionExtras(),
        promotion_code: str | None = None,
    ) -> SubscriptionSpec:
        return SubscriptionSpec(
            promotion_code_billing_id=promotion_code,
            tax_rate_ids=extras.tax_rate_ids,
            extra_metadata=extras.metadata,
            ref=sub.ref_id,
            customer_billing_id=customer_id,
            items=self.items,
            trial_end=self.trial_end,
            metadata=self.metadata,
            coupon_billing_id=self.coupon_billing_id,
            collection_method=self.collection_method,
            days_until_due=extras.days_until_due if self.collection_method == "send_invoice" else None,
            default_payment_method=self.default_payment_method,
            proration_behavior=proration,
        )


class NotReadyToSync(RuntimeError):
    """Something the sync needs is missing (a charge's provider price, a customer id): the job retries."""


@register(SYNC_SUBSCRIPTION_JOB)
def sync_subscription(db: Database, ctx: JobContext) -> None:
    settings = load_settings()
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        sub = subscriptions.by_pk(s, int(ctx.payload["subscriptionPk"]))
        if integration is None or sub is None or integration.environment_id != ctx.environment_id:
            return  # disconnected, or the subscription is gone
        done = store.link(s, integration.pk, SUBSCRIPTION, sub.pk)
        if done is not None and done.sync_state in (SUCCESS, NO_SYNC_REQUIRED):
            return  # recorded by an earlier run
        ended = sub.status not in _OPEN
        # A plan change in place: the replaced subscription's provider subscription, whose items it changes.
        kept_id = done.billing_id if done is not None and ctx.payload.get("inPlaceOf") is not None else None
        kept_details = dict(done.details) if kept_id is not None and done is not None else {}
        try:
            plan = None if ended else _read(s, integration, sub, settings.console_base_url)
        except NotReadyToSync as exc:
            missing: NotReadyToSync | None = exc
        else:
            missing = None
    if missing is not None:
        _failed(db, integration, sub.pk, missing, ctx.attempt)
        raise missing
    if plan is None:
        with db.transaction() as s:
            reason = "the subscription ended before it was synced"
            store.put_link(s, integration, SUBSCRIPTION, sub.pk, NO_SYNC_REQUIRED, reason=reason)
        return
    provider = provider_for(integration, secret_box(settings.data_dir))
    try:
        customer_id = provider.sync_customer(
            plan.customer, existing_id=plan.customer_billing_id, idempotency_key=ctx.idempotency_key
        )
        if customer_id is None:
            raise RuntimeError("the provider did not create a customer")
        if customer_id != plan.customer_billing_id:
            # Recorded at once: a retry (after a failed subscription call, or with the customer edited
            # meanwhile) finds the customer linked and sends no second, differing create with this key.
            record_customer(db, integration, plan.customer_pk, customer_id)
        extras = subscription_extras(provider, ctx.unseal(), idempotency_key=ctx.idempotency_key)
        promotion = promotion_code_for(ctx.payload, plan.coupon_billing_id)
        spec = plan.spec(sub, customer_id, extras=extras, promotion_code=promotion)
        change: PlanChange | None = None
        if kept_id is not None:
            # Prorated at the change's instant (Entitle's clock), charged now: the preview's amount due.
            at = as_utc(sub.start_date)
            proration = cast(ProrationBehavior, ctx.payload.get("proration") or "always_invoice")
            change = provider.change_subscription(
                kept_id, replace(spec, proration_behavior=proration), at=at, idempotency_key=ctx.idempotency_key
            )
        subscription_id = (
            kept_id if change is not None else provider.create_subscription(spec, idempotency_key=ctx.idempotency_key)
        )
        if subscription_id is None:
            raise RuntimeError("the provider did not create a subscription")
    except Exception as exc:
        _failed(db, integration, sub.pk, exc, ctx.attempt)
        raise
    details = None
    if kept_id is not None:  # changed in place (the gate watches the change's invoice), or made anew after all
        details = kept_details | {"changeInvoice": change.invoice_id} if change else {}
    _record(db, integration, sub.pk, plan.customer_pk, customer_id, subscription_id, details)
    if change is None:
        settle_from_provider(db, provider, sub.environment_id, sub.ref_id, subscription_id)
    elif change.paid:  # otherwise it waits for the invoice's `invoice.paid` (or the settlement window)
        _paid(db, sub.environment_id, sub.ref_id)


def settle_from_provider(db: Database, provider: BillingProvider, env_id: int, ref: str, billing_id: str) -> None:
    """Read the provider subscription's status so a subscription paid at creation does not wait for a
    webhook: paid -> ACTIVE; otherwise it stays PAYMENT_PENDING until `invoice.paid` (or the window)."""
    with db.read() as s:
        current = subscriptions.find(s, env_id, ref)
        if current is None or current.status != "PAYMENT_PENDING":
            return
    try:
        status = provider.subscription_status(billing_id)
    except Exception:  # the webhook reports the outcome anyway; the sync itself succeeded
        log.warning("could not read the status of provider subscription %s", billing_id, exc_info=True)
        return
    if status in PAID_STATUSES:
        _paid(db, env_id, ref)


def _paid(db: Database, env_id: int, ref: str) -> None:
    with db.read() as s:
        current = subscriptions.find(s, env_id, ref)
        if current is None or current.status != "PAYMENT_PENDING":
            return
    with contextlib.suppress(FailedPrecondition):  # ended meanwhile
        subscription_lifecycle.payment_succeeded(db, env_id, ref)


def _failed(db: Database, integration: Integration, sub_pk: int, exc: Exception, attempt: int) -> None:
    """The link shows the error while the job retries (and after it is dead)."""
    with db.transaction() as s:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        store.put_link(s, integration, SUBSCRIPTION, sub_pk, ERROR, reason=f"{reason} (attempt {attempt})")


def _read(s: Session, integration: Integration, sub: Subscription, console: str) -> _Plan:
    env = s.get(Environment, sub.environment_id)
    customer = s.get(Customer, sub.paying_customer_pk or sub.customer_pk)
    assert env is not None and customer is not None
    customer_link = store.link(s, integration.pk, CUSTOMER, customer.pk)
    existing = customer_link.billing_id if customer_link is not None and customer_link.billing_id else None
    existing = existing or customer.billing_id
    if existing is None and not integration.sync_customers:
        raise NotReadyToSync("customer sync is turned off and the customer has no billingId")
    common = {"entitleEnvironment": env.name}
    paying = customer_spec(s, customer, console)
    items: list[SubscriptionItem] = []
    quantities = {
        price_pricing.quantity_key(c.charge_type, c.ref_id): c.quantity
        for c in subscriptions.charges_of(s, [sub.pk]).get(sub.pk, [])
    }
    plan = s.get(Package, sub.plan_pk)
    assert plan is not None
    overrides = price_rules.amounts(sub.price_overrides)
    items += _items(s, integration, sub, plan, 1, quantities, overrides)
    for addon_row in subscriptions.addons_of(s, [sub.pk]).get(sub.pk, []):
        addon = s.get(Package, addon_row.addon_pk)
        assert addon is not None
        items += _items(s, integration, sub, addon, addon_row.quantity, {}, overrides, addon.ref_id)
    if not items:
        raise NotReadyToSync(f"plan '{plan.ref_id}' has no {sub.billing_period} charge to bill")
    metadata = {
        **common,
        "entitleSubscriptionId": sub.ref_id,
        "entitleCustomerId": customer.ref_id,
        "entitlePlanId": plan.ref_id,
        "entitleEntityUrl": console_page_url(console, "SUBSCRIPTION", sub.ref_id),
    }
    if sub.resource_ref:
        metadata["entitleResourceId"] = sub.resource_ref
    coupon_id = coupon_sync.applied_coupon(s, integration, sub.environment_id, sub.coupon_ref)
    if coupon_id is False:
        raise NotReadyToSync(
            f"coupon '{sub.coupon_ref}' has no provider coupon yet; the subscription syncs once it is recorded"
        )
    invoice = sub.payment_collection_method == "INVOICE"
    return _Plan(
        customer_pk=customer.pk,
        customer=paying,
        customer_billing_id=existing,
        items=tuple(items),
        metadata=rules.clip_metadata(metadata),
        trial_end=None,
        coupon_billing_id=coupon_id if isinstance(coupon_id, str) else None,
        collection_method="send_invoice" if invoice else "charge_automatically",
        default_payment_method=None if invoice else paying.payment_method,
    )


def _items(
    s: Session,
    integration: Integration,
    sub: Subscription,
    package: Package,
    quantity: int,
    per_unit: dict[str, Decimal],
    overrides: dict[price_rules.Key, Decimal],
    addon_ref: str | None = None,
) -> list[SubscriptionItem]:
    """One item per recurring charge of the version for the subscription's period (in its country),
    overage charges included (metered); charges the provider does not bill (their price link is
    NO_SYNC_REQUIRED: a minimum spend, credits) are left out. A charge the subscription overrides
    (`price_rules`) is billed at its own price, made from the catalog's by the provider."""
    charges = [
        c
        for c in packages.charges_of(s, package.pk)
        if c.billing_cadence != "ONE_OFF" and c.billing_period == sub.billing_period
    ]
    # The preview's rule: a country's own price replaces the default price it stands for, no other.
    chosen = charges_for_country(charges, sub.billing_country_code)
    links = store.links(s, integration.pk, PACKAGE_CHARGE, [c.pk for c in chosen])
    items: list[SubscriptionItem] = []
    for charge in chosen:
        link = links.get(charge.pk)
        if link is not None and link.sync_state == NO_SYNC_REQUIRED:
            continue  # not billed through the provider (the link says why)
        if link is None or link.sync_state != SUCCESS or not link.billing_id:
            state = link.sync_state if link is not None else "not synced"
            raise NotReadyToSync(
                f"charge {charge.charge_id} of '{package.ref_id}' v{package.version_number} has no provider price "
                f"yet ({state}); the subscription syncs once the catalog sync has recorded it"
            )
        units: int | None = quantity
        if charge.billing_model == "USAGE_BASED":
            units = None  # metered: the provider bills the usage reported for the period
        elif charge.billing_model == "PER_UNIT":
            wanted = per_unit.get(charge.feature_ref or "")
            units = int(wanted) if wanted is not None else (sub.unit_quantity or 1)
            units *= quantity
            shape = rules.charge_shape(charge)
            if not isinstance(shape, str):  # tiers with a block size: the units rounded up to whole blocks
                units = int(rules.provider_quantity(shape, Decimal(units)))
        elif charge.grants_credits:  # the units of credits bought (the plan's: the CREDIT charge quantity)
            credit_key = price_pricing.quantity_key("CREDIT", charge.credit_rate_currency_ref or "")
            bought = per_unit.get(credit_key) if addon_ref is None else None
            units = (int(bought) if bought is not None else 1) * quantity
            shape = rules.charge_shape(charge)
            if not isinstance(shape, str):  # tiers with a block size: the units rounded up to whole blocks
                units = int(rules.provider_quantity(shape, Decimal(units)))
        key = (
            None
            if charge.is_overage or charge.tiers
            else price_rules.key_of(charge.billing_model, charge.feature_ref, addon_ref)
        )
        override = overrides.get(key) if key is not None else None
        minor = price_rules.minor_units(override, charge.price_currency or "usd") if override is not None else None
        items.append(
            SubscriptionItem(price_billing_id=link.billing_id, quantity=units, override_unit_amount_minor=minor)
        )
    return items


def _record(
    db: Database,
    integration: Integration,
    sub_pk: int,
    customer_pk: int,
    customer_id: str,
    subscription_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    with db.transaction() as s:
        sub = subscriptions.by_pk(s, sub_pk, for_update=True)
        assert sub is not None
        link_customer(s, integration, customer_pk, customer_id)
        store.put_link(s, integration, SUBSCRIPTION, sub_pk, SUCCESS, billing_id=subscription_id, details=details)
        sub.billing_id = subscription_id
        if sub.status not in _OPEN:
            # Ended while the sync was running: the cancellation job found nothing to cancel yet.
            _enqueue_cancel(s, integration, sub)


def _enqueue_cancel(s: Session, integration: Integration, sub: Subscription) -> None:
    enqueue(
        s,
        sub.environment_id,
        CANCEL_SUBSCRIPTION_JOB,
        {"integrationPk": integration.pk, "subscriptionPk": sub.pk},
        ordering_key=_ordering_key(integration, sub.paying_customer_pk or sub.customer_pk),
        dedupe_key=f"billing-cancel-late:{integration.pk}:{SUBSCRIPTION}:{sub.pk}",
    )


@register(CANCEL_SUBSCRIPTION_JOB)
def cancel_subscription(db: Database, ctx: JobContext) -> None:
    settings = load_settings()
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        sub = subscriptions.by_pk(s, int(ctx.payload["subscriptionPk"]))
        if integration is None or sub is None or integration.environment_id != ctx.environment_id:
            return
        link = store.link(s, integration.pk, SUBSCRIPTION, sub.pk)
        if link is None or link.sync_state != SUCCESS or not link.billing_id or link.details.get("canceled"):
            return  # never reached the provider (a sync still to come records it as ended), or done
        # Handed over to the subscription a plan change made in place (or is making): nothing to cancel. A
        # change of its own that ends unpaid leaves an open invoice whose payment would still apply it at
        # the provider (a pending update): that invoice is voided, so it never can.
        handed = link.details.get("movedTo") or plan_changes.successor(s, integration.pk, link.billing_id, sub)
        unpaid_change = None if link.details.get("changeInvoiceVoided") else link.details.get("changeInvoice")
        if handed and not unpaid_change:
            return
        billing_id = link.billing_id
    provider = provider_for(integration, secret_box(settings.data_dir))
    if handed:
        # (The provider returns an invoice already paid as it is: then the change took effect, and the
        # webhook of its payment says so.)
        provider.void_invoice(str(unpaid_change), idempotency_key=f"{ctx.idempotency_key}:void-change")
        _mark_link(db, integration, sub.pk, "changeInvoiceVoided")
        return
    provider.cancel_subscription(billing_id, at=None, idempotency_key=ctx.idempotency_key)
    _mark_link(db, integration, sub.pk, "canceled")


def _mark_link(db: Database, integration: Integration, sub_pk: int, done: str) -> None:
    """Record on the subscription's link what its cancellation job did at the provider (`done`: True)."""
    with db.transaction() as s:
        row = store.link(s, integration.pk, SUBSCRIPTION, sub_pk)
        if row is not None:
            row.details = {**row.details, done: True}


__all__ = [
    "CANCEL_SUBSCRIPTION_JOB",
    "PAID_STATUSES",
    "SETTLE_PAYMENT_JOB",
    "SYNC_SUBSCRIPTION_JOB",
    "UPDATE_SUBSCRIPTION_JOB",
    "cancel_subscription",
    "no_sync_reason",
    "requires_payment",
    "settle_from_provider",
    "subscription_converted",
    "subscription_ended",
    "subscription_provisioned",
    "sync_subscription",
]
