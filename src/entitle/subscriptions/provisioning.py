"""Provisioning a subscription, in one transaction: the customer row is locked first so that two
provisions for one customer cannot both pass the "one open subscription per product" rule. A
provision in a product where the customer already has a subscription is a plan change: an upgrade now,
a downgrade at the end of the billing period (unless IMMEDIATE).

Without a billing provider a paid subscription is ACTIVE at once; the billing adapter answers through
`ports.billing` (payment required, Stripe Checkout) and hears `SubscriptionCreated`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from entitle.catalog.coupons import store as coupons
from entitle.catalog.packages import published_charges
from entitle.catalog.packages.models import PLAN, Package
from entitle.catalog.products.models import Product
from entitle.clock import as_utc, utcnow
from entitle.customers import store as customers
from entitle.customers.events import entitlements_changed
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.rows import insert_row, new_row
from entitle.domain_events import publish
from entitle.errors import AlreadyExists, BillingProviderError, FailedPrecondition, InvalidArgument
from entitle.jobs import service as jobs
from entitle.periods import PastCalendarEnd, trial_end
from entitle.subscriptions import ports, rules, store
from entitle.subscriptions.events import (
    SubscriptionCreated,
    announce_update,
)
from entitle.subscriptions.hooks import payment_gate
from entitle.subscriptions.models import (
    Subscription,
)
from entitle.subscriptions.preview import check_one_currency, checked_overrides
from entitle.subscriptions.rules import LIVE, OPEN, Event, Status, transition
from entitle.subscriptions.schemas import (
    SubscriptionProvision,
)
from entitle.subscriptions.service import SubscriptionView, view_of
from entitle.subscriptions.transitions import (
    JOB_START,
    add_addons,
    add_charges,
    add_overrides,
    end_subscription,
    schedule_end,
    schedule_trial_end,
    schedule_update,
)
from entitle.subscriptions.validation import (
    check_addons,
    check_charges,
    check_overrides,
    is_downgrade,
    latest_package,
    periods_priced,
    trial_used,
)


@dataclass
class ProvisionResult:
    view: SubscriptionView
    # The customer's entitlements after it (`ports.current_entitlements`: the entitlements' wire models).
    entitlements: list[Any] = field(default_factory=list)
    is_scheduled: bool = False
    # Set when the subscription waits for a Stripe Checkout (the answer is PAYMENT_REQUIRED).
    checkout: ports.CheckoutOptions | None = None
    checkout_url: str | None = None
    checkout_billing_id: str | None = None


def _trial_end(
    s: Session, plan: Package, req: SubscriptionProvision, customer: Customer, start: datetime, newcomer: bool
) -> tuple[datetime | None, str | None]:
    override = req.trial_override_configuration
    config = plan.default_trial_config or {}
    behavior = (override.trial_end_behavior if override else None) or config.get("trialEndBehavior")
    behavior = behavior or "CONVERT_TO_PAID"
    if override is not None:
        if not override.is_trial:
            return None, None
        if override.trial_end_date is not None:
            end = as_utc(override.trial_end_date)
            if end <= start:
                raise InvalidArgument("trialEndDate must be after the subscription starts")
            return end, behavior
        if not config:
            raise InvalidArgument(f"plan '{plan.ref_id}' has no default trial; pass trialEndDate")
    elif not config or (not newcomer and trial_used(s, customer, plan.product_pk)):
        return None, None
    duration = Decimal(str(config["duration"]))
    if duration != duration.to_integral_value() or duration <= 0:
        raise InvalidArgument("the plan's trial duration must be a whole number of days or months")
    try:
        return trial_end(start, int(duration), config["units"]), behavior
    except PastCalendarEnd as exc:
        raise InvalidArgument(f"the plan's trial cannot start then: {exc}") from exc


def _activation_status(pricing_type: str, in_trial: bool) -> Status:
    """Status of a subscription that starts now. Without a billing provider nothing waits for a payment."""
    return Status.IN_TRIAL if in_trial else Status.ACTIVE


def provision(db: Database, env_id: int, req: SubscriptionProvision) -> ProvisionResult:
    """Provision in one transaction; with a Stripe Checkout, open it after that commit and record it in a
    second one (through `ports.billing`: the one place a request waits for the provider)."""
    code = req.applied_coupon.promotion_code if req.applied_coupon else None
    prefetched: dict[str, Any] = {}
    if code:
        information = req.billing_information.wire() if req.billing_information else None
        prefetched = ports.billing.impl.prefetch_promotion_code(db, env_id, req.customer_id, information, code)
    with db.transaction() as s:
        s.info.update(prefetched)
        result = provision_in(s, env_id, req, allow_checkout=True)
    if result.checkout is None:
        return result
    sub_pk, ref = result.view.sub.pk, result.view.sub.ref_id
    try:
        session = ports.billing.impl.open_checkout(db, sub_pk, result.checkout)
    except BillingProviderError as exc:
        with db.transaction() as s:
            sub = store.by_pk(s, sub_pk, for_update=True)
            if sub is not None and sub.status == Status.PAYMENT_PENDING.value:
                ports.billing.impl.checkout_failed(s, sub, exc.message)
                end_subscription(s, sub, utcnow(), Status.CANCELED, "CANCELLED_BY_BILLING")
        raise BillingProviderError(
            f"{exc.message} (subscription '{ref}' was canceled: provision again to retry)"
        ) from exc
    with db.read() as s:
        sub = store.by_pk(s, sub_pk)
        assert sub is not None
        view = view_of(s, sub)
    return ProvisionResult(
        view, result.entitlements, checkout=result.checkout, checkout_url=session.url, checkout_billing_id=session.id
    )


def provision_in(
    s: Session, env_id: int, req: SubscriptionProvision, *, allow_checkout: bool = False
) -> ProvisionResult:
    """Provision inside an open transaction, answered with the subscription and the customer's entitlements.

    `allow_checkout`: the caller opens a Stripe Checkout after the commit when the result asks for one
    (`provision` does; a subscription that would need one elsewhere is refused).
    """
    done = _provision(s, env_id, req, allow_checkout)
    granted = ports.current_entitlements.impl(s, env_id, done.customer, req.resource_id)
    return ProvisionResult(
        view_of(s, done.sub, done.now), granted, is_scheduled=done.is_scheduled, checkout=done.checkout
    )


def provision_unanswered(
    s: Session,
    env_id: int,
    req: SubscriptionProvision,
    *,
    created: Customer | None = None,
    newcomer: bool = False,
    plan: Package | None = None,
    product: Product | None = None,
) -> Subscription:
    """`provision_in` for a caller that answers with something else (customer provisioning with
    subscriptionParams): neither the subscription's view nor the customer's entitlements are read.
    `created`: the customer, inserted or locked by this transaction (nothing to read or lock again).
    `newcomer`: that customer was inserted by this transaction and holds no subscription to the plan's
    product yet (its first subscription there: no plan to replace, no trial used; nothing to read).
    `plan`: the latest published version of `req.plan_id`, when this transaction already read it, and
    `product` its product, read with it (both may be detached: they are only read).
    The subscription that now holds the plan (or the one a downgrade is scheduled on)."""
    return _provision(
        s, env_id, req, allow_checkout=False, created=created, newcomer=newcomer, plan=plan, product=product
    ).sub


@dataclass
class _Provisioned:
    sub: Subscription
    customer: Customer
    now: datetime
    is_scheduled: bool = False
    checkout: ports.CheckoutOptions | None = None


def _provision(
    s: Session,
    env_id: int,
    req: SubscriptionProvision,
    allow_checkout: bool,
    created: Customer | None = None,
    newcomer: bool = False,
    plan: Package | None = None,
    product: Product | None = None,
) -> _Provisioned:
    now = utcnow()
    if created is not None and created.ref_id == req.customer_id and created.environment_id == env_id:
        customer = created
    else:
        customer = customers.get_live(s, env_id, req.customer_id, for_update=True, write=True)
        newcomer = False
    if plan is None or plan.kind != PLAN or plan.ref_id != req.plan_id or plan.environment_id != env_id:
        plan = latest_package(s, env_id, PLAN, req.plan_id)
    if product is None or product.pk != plan.product_pk or product.environment_id != env_id:
        product = s.get(Product, plan.product_pk)
    if product is None or product.status == "ARCHIVED":
        raise FailedPrecondition(f"the product of plan '{plan.ref_id}' is archived")
    if req.id is not None and store.find(s, env_id, req.id) is not None:
        raise AlreadyExists("subscription", req.id)
    paying = customers.get_live(s, env_id, req.paying_customer_id, write=True) if req.paying_customer_id else None
    pricing_type = plan.pricing_type or "FREE"
    # A free plan's charges are only asked about when quantities are sent for them (every new customer
    # on a free plan would read them for nothing).
    plan_charges = published_charges.charges_of(s, plan) if pricing_type == "PAID" or req.charges else []
    billing_period: str | None = req.billing_period
    if pricing_type == "PAID":
        priced = periods_priced(plan_charges)
        if billing_period is None:
            billing_period = "MONTHLY" if "MONTHLY" in priced or not priced else sorted(priced)[0]
        if priced and billing_period not in priced:
            raise InvalidArgument(f"plan '{plan.ref_id}' has no {billing_period} price")
    addons = check_addons(s, env_id, plan, req.addons or [])
    check_charges(plan_charges, req.charges or [])
    check_overrides(s, env_id, req.entitlements or [])
    if pricing_type == "PAID" or addons:
        check_one_currency(s, plan, addons, billing_period, req.billing_country_code)
    prices = checked_overrides(s, plan, addons, billing_period, req.billing_country_code, req.price_overrides)
    coupon_ref = req.applied_coupon.coupon_id if req.applied_coupon else None
    promotion_code = req.applied_coupon.promotion_code if req.applied_coupon else None
    if coupon_ref and promotion_code:
        raise InvalidArgument("appliedCoupon: give couponId or promotionCode, not both")
    if coupon_ref:
        coupon = coupons.find(s, env_id, coupon_ref)
        if coupon is None or coupon.status != "ACTIVE":
            raise InvalidArgument(f"coupon '{coupon_ref}' does not exist or is archived")
    start = as_utc(req.start_date) if req.start_date else now
    trial_ends, trial_behavior = _trial_end(s, plan, req, customer, start, newcomer)
    billing_information = req.billing_information.wire() if req.billing_information else None
    rules.check_days_until_due(billing_information, req.payment_collection_method or "CHARGE")
    proration = rules.proration_behavior(billing_information)  # a 400 before anything is written

    open_in_product = [
        x
        for x in (() if newcomer else store.of_customer(s, customer.pk, [st.value for st in OPEN], for_update=True))
        if x.product_pk == plan.product_pk and (x.resource_ref or None) == (req.resource_id or None)
    ]
    replaced: Subscription | None = None
    if open_in_product and not product.multiple_subscriptions:
        current = next((x for x in open_in_product if x.status in LIVE), open_in_product[0])
        for waiting in open_in_product:
            if waiting is not current:  # a replacement still waiting for its payment, itself replaced now
                end_subscription(s, waiting, now, Status.CANCELED, "UPGRADE_OR_DOWNGRADE")
        open_in_product = [current]
        strategy = req.schedule_strategy or "END_OF_BILLING_PERIOD"
        window = view_of(s, current, now).billing_window()
        if (
            current.status in LIVE
            and strategy != "IMMEDIATE"
            and window is not None
            and is_downgrade(s, current, plan, billing_period, req.billing_country_code)
        ):
            if rules.forwarded_billing_information(billing_information) or promotion_code:
                raise InvalidArgument(
                    "billingInformation (address, tax ids, tax rates, metadata, invoice days until due) and promotion "
                    "codes are sent to the "
                    "billing provider and not kept, so they cannot wait for a downgrade at the end of the period: "
                    "provision with scheduleStrategy IMMEDIATE, or update the subscription once the downgrade is done"
                )
            schedule_update(s, current, "DOWNGRADE", window.end, _change_doc(req, billing_period), plan.ref_id)
            announce_update(s, current, "UPDATE_SCHEDULED", entitlements=False)
            return _Provisioned(current, customer, now, is_scheduled=True)
        replaced = current

    if start > now + timedelta(seconds=1):
        status = Status.NOT_STARTED
    else:
        status = _activation_status(pricing_type, trial_ends is not None)
    anchor = trial_ends if trial_ends and pricing_type == "PAID" else start
    if (
        replaced is not None
        and req.start_date is None
        and status is Status.ACTIVE
        and pricing_type == "PAID"
        and replaced.status in LIVE
        and rules.keeps_billing_cycle(
            replaced.pricing_type, replaced.billing_period, as_utc(replaced.billing_cycle_anchor), billing_period, now
        )
    ):
        # Charged for the rest of the current period (the preview's proration): its period ends there too.
        anchor = as_utc(replaced.billing_cycle_anchor)
    sub = new_row(
        Subscription,
        environment_id=env_id,
        ref_id=req.id or f"subscription-{uuid.uuid4().hex[:20]}",
        customer_pk=customer.pk,
        paying_customer_pk=paying.pk if paying else None,
        resource_ref=req.resource_id,
        product_pk=plan.product_pk,
        plan_pk=plan.pk,
        plan_ref=plan.ref_id,
        status=status.value,
        pricing_type=pricing_type,
        billing_period=billing_period,
        billing_country_code=req.billing_country_code,
        payment_collection="NOT_REQUIRED",
        payment_collection_method=req.payment_collection_method or "CHARGE",
        start_date=start,
        billing_cycle_anchor=anchor,
        trial_end_date=trial_ends,
        trial_end_behavior=trial_behavior,
        unit_quantity=req.unit_quantity,
        budget=req.budget.model_dump(mode="json", by_alias=True) if req.budget else None,
        minimum_spend=req.minimum_spend.model_dump(mode="json", by_alias=True) if req.minimum_spend else None,
        metadata_=dict(req.metadata or {}),
        coupon_ref=coupon_ref,
        billing_id=req.billing_id,
        salesforce_id=req.salesforce_id,
        price_overrides=prices,
    )
    insert_row(s, sub)  # one INSERT, no unit of work (its add-ons, charges and overrides need its key)
    add_addons(s, sub, addons)
    add_charges(s, sub, req.charges or [])
    add_overrides(s, sub, req.entitlements or [])
    # billingInformation.integrationId: a connected integration agreeing with the customer's, or a 400.
    billing = ports.billing.impl
    billing.choose_integration(s, sub, billing_information)
    if promotion_code:
        sub.coupon_ref = billing.resolve_promotion_code(s, sub, promotion_code)
    # awaitPaymentConfirmation false: active at once; Stripe collects afterwards (a failure is reported then).
    waits = req.await_payment_confirmation is not False
    checkout_via: object | None = None
    if status is Status.ACTIVE:
        # With checkoutOptions, or a paid plan Stripe must charge and no payment method: PAYMENT_REQUIRED.
        checkout_via = billing.checkout_integration(s, sub, asked=req.checkout_options is not None)
    implicit = checkout_via is not None and req.checkout_options is None
    if implicit and (not waits or not allow_checkout or any(x.pricing_type == "PAID" for x in open_in_product)):
        checkout_via = None  # no Checkout asked for and none possible (or wanted) here: Stripe bills it
    if checkout_via is not None:
        if not allow_checkout:
            raise InvalidArgument(
                "checkoutOptions: a Stripe Checkout is opened by POST /api/v1/subscriptions only; provision the "
                "paid subscription there"
            )
        if any(x.pricing_type == "PAID" for x in open_in_product):
            raise FailedPrecondition(
                f"customer '{customer.ref_id}' already has a paid subscription to this product: a Stripe Checkout "
                "starts new subscriptions only; change plans without checkoutOptions"
            )
        sub.status = transition(Status.NOT_STARTED, Event.PAYMENT_REQUIRED).value
        sub.payment_collection = "ACTION_REQUIRED"
    elif waits and status is Status.ACTIVE and pricing_type == "PAID" and payment_gate().requires_payment(s, sub):
        sub.status = transition(Status.NOT_STARTED, Event.PAYMENT_REQUIRED).value
        sub.payment_collection = "PROCESSING"
    if status is Status.NOT_STARTED:
        jobs.enqueue(s, env_id, JOB_START, {"subscription": sub.pk}, run_at=start, dedupe_key=f"start:{sub.pk}")
    if trial_ends is not None:
        schedule_trial_end(s, sub)
    if req.cancellation_date is not None:
        schedule_end(s, sub, as_utc(req.cancellation_date), "ScheduledCancellation", now)
    if rules.forwarded_billing_information(billing_information):
        assert billing_information is not None
        billing.forward_billing_information(
            s, sub, billing_information, via_checkout=checkout_via is not None, new=True
        )
    # As Stigg does, a customer keeps what it has until the new plan is paid for: a live subscription
    # replaced by one waiting for its first payment ends when that one activates (`end_replaced`), and
    # stays if the payment never comes.
    if replaced is not None and not (sub.status == Status.PAYMENT_PENDING and replaced.status in LIVE):
        end_subscription(s, replaced, now, Status.CANCELED, "UPGRADE_OR_DOWNGRADE")
    # The billing adapter syncs it to the provider (unless a Checkout will make the provider subscription).
    publish(
        s,
        SubscriptionCreated(
            env_id=env_id, sub=sub, via_checkout=checkout_via is not None, replaced=replaced, proration=proration
        ),
    )
    if sub.status in (Status.ACTIVE, Status.IN_TRIAL):  # a delayed or payment-held start changes nothing yet
        entitlements_changed(s, env_id, customer.ref_id, sub.resource_ref)
    s.flush()
    checkout: ports.CheckoutOptions | None = None
    if checkout_via is not None:
        options = req.checkout_options
        checkout = (
            ports.CheckoutOptions(
                success_url=options.success_url,
                cancel_url=options.cancel_url,
                allow_promo_codes=bool(options.allow_promo_codes),
                allow_tax_id_collection=bool(options.allow_tax_id_collection),
                collect_billing_address=bool(options.collect_billing_address),
                collect_phone_number=bool(options.collect_phone_number),
                reference_id=options.reference_id,
            )
            if options is not None
            else billing.default_checkout_options()
        )
        billing.plan_checkout(s, checkout_via, sub, checkout)  # the session creates the Stripe subscription
    return _Provisioned(sub, customer, now, checkout=checkout)


def _change_doc(req: SubscriptionProvision, billing_period: str | None) -> dict[str, Any]:
    return req.model_dump(mode="json", by_alias=True, exclude_none=True) | {"billingPeriod": billing_period}


def _same_slot(s: Session, sub: Subscription, statuses: frozenset[Status]) -> list[Subscription]:
    """The customer's other subscriptions in `statuses` to the same product and resource, locked."""
    return [
        x
        for x in store.of_customer(s, sub.customer_pk, [st.value for st in statuses], for_update=True)
        if x.pk != sub.pk and x.product_pk == sub.product_pk and (x.resource_ref or None) == (sub.resource_ref or None)
    ]


def end_replaced(s: Session, sub: Subscription, now: datetime) -> None:
    """A subscription that waited for its first payment has just activated: the one it replaces, kept
    while the payment was pending, ends now (a product with multiple subscriptions replaces none)."""
    product = s.get(Product, sub.product_pk)
    if product is None or product.multiple_subscriptions:
        return
    for replaced in _same_slot(s, sub, OPEN):
        end_subscription(s, replaced, now, Status.CANCELED, "UPGRADE_OR_DOWNGRADE")


def downgrade_to_free(s: Session, sub: Subscription, now: datetime) -> None:
    """The product's cancellation setup: move the customer to its free plan, if it has one (not when it
    still has the subscription an unpaid replacement was to replace)."""
    product = s.get(Product, sub.product_pk)
    settings = (product.product_settings if product else None) or {}
    if settings.get("subscriptionEndSetup") != "DOWNGRADE_TO_FREE" or not settings.get("downgradePlanId"):
        return
    if settings["downgradePlanId"] == sub.plan_ref:
        return
    customer = s.get(Customer, sub.customer_pk)
    if customer is None or customer.archived_at is not None:
        return
    if product is not None and not product.multiple_subscriptions and _same_slot(s, sub, LIVE):
        return
    provision_in(
        s,
        sub.environment_id,
        SubscriptionProvision(
            customer_id=customer.ref_id, plan_id=settings["downgradePlanId"], resource_id=sub.resource_ref
        ),
    )
