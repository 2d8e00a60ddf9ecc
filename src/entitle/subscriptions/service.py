"""Subscription use cases: provision, read, list, update, cancel, migrate, delegate, transfer, and the
timed lifecycle events (start, trial end, scheduled cancellation, scheduled updates) that the job
scheduler runs. One transaction each; the customer row is locked first so that two provisions for
one customer cannot both pass the "one open subscription per product" rule.

Without a billing provider a paid subscription is ACTIVE at once; `entitle.billing` hooks in at
`_activation_status` (payment required) and through `payment_succeeded` / `payment_failed`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from entitle.billing import checkout as billing_checkout
from entitle.billing import rules as billing_rules
from entitle.billing import service as billing_integrations
from entitle.billing import store as billing_store
from entitle.billing import subscription_sync as billing_sync
from entitle.billing.models import SUBSCRIPTION as SUBSCRIPTION_LINK
from entitle.catalog.coupons import store as coupons
from entitle.catalog.features import store as features
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import ADDON, ARCHIVED, PLAN, Package, PackageCharge
from entitle.catalog.products.models import Product
from entitle.clock import as_utc, utcnow
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.entitlements.schemas import EntitlementResult
from entitle.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from entitle.jobs import service as jobs
from entitle.periods import BillingWindow, billing_period_at, trial_end
from entitle.subscriptions import store
from entitle.subscriptions.hooks import payment_gate
from entitle.subscriptions.models import (
    FutureUpdate,
    Subscription,
    SubscriptionAddon,
    SubscriptionCharge,
    SubscriptionEntitlement,
)
from entitle.subscriptions.rules import LIVE, OPEN, Event, IllegalTransition, Status, transition
from entitle.subscriptions.schemas import (
    AddonQuantity,
    ChargeQuantity,
    EntitlementOverride,
    SubscriptionCancel,
    SubscriptionProvision,
    SubscriptionUpdate,
)
from entitle.webhooks import emit as webhooks

JOB_START = "subscription.start"
JOB_TRIAL_END = "subscription.trial_end"
JOB_END = "subscription.end"
JOB_FUTURE_UPDATE = "subscription.future_update"


@dataclass
class SubscriptionView:
    sub: Subscription
    customer_ref: str
    paying_customer_ref: str | None
    addons: list[SubscriptionAddon]
    overrides: list[SubscriptionEntitlement]
    future_updates: list[FutureUpdate]
    coupon: dict[str, Any] | None
    now: datetime
    # Its sync with each billing integration (`syncStates`, our extension).
    sync_states: list[billing_store.SyncState] = field(default_factory=list)

    def billing_window(self) -> BillingWindow | None:
        sub = self.sub
        if sub.billing_period is None or sub.status not in OPEN or self.now < sub.billing_cycle_anchor:
            return None
        return billing_period_at(sub.billing_cycle_anchor, sub.billing_period, self.now)


@dataclass
class ProvisionResult:
    view: SubscriptionView
    entitlements: list[EntitlementResult] = field(default_factory=list)
    is_scheduled: bool = False
    # Set when the subscription waits for a Stripe Checkout (the answer is PAYMENT_REQUIRED).
    checkout: billing_checkout.CheckoutOptions | None = None
    checkout_url: str | None = None
    checkout_billing_id: str | None = None


def view_of(
    s: Session,
    sub: Subscription,
    now: datetime | None = None,
    sync_states: list[billing_store.SyncState] | None = None,
) -> SubscriptionView:
    customer = s.get(Customer, sub.customer_pk)
    paying = s.get(Customer, sub.paying_customer_pk) if sub.paying_customer_pk else None
    coupon = coupons.find(s, sub.environment_id, sub.coupon_ref) if sub.coupon_ref else None
    return SubscriptionView(
        sub=sub,
        customer_ref=customer.ref_id if customer else "",
        paying_customer_ref=paying.ref_id if paying else None,
        addons=store.addons_of(s, [sub.pk]).get(sub.pk, []),
        overrides=store.overrides_of(s, [sub.pk]).get(sub.pk, []),
        future_updates=store.future_updates_of(s, [sub.pk]).get(sub.pk, []),
        coupon=None
        if coupon is None
        else {
            "id": coupon.ref_id,
            "name": coupon.name,
            "status": "ACTIVE" if coupon.status == "ACTIVE" else "EXPIRED",
            "percent_off": coupon.percent_off,
            "amounts_off": coupon.amounts_off,
        },
        now=now or utcnow(),
        sync_states=sync_states
        if sync_states is not None
        else billing_store.sync_states_of(s, SUBSCRIPTION_LINK, [sub.pk]).get(sub.pk, []),
    )


# -- pricing helpers ---------------------------------------------------------------------------------


def _base_charges(charges: list[PackageCharge]) -> list[PackageCharge]:
    return [c for c in charges if not c.is_overage]


def _periods_priced(charges: list[PackageCharge]) -> set[str]:
    return {c.billing_period for c in _base_charges(charges)}


def recurring_price(charges: list[PackageCharge], billing_period: str | None, country: str | None) -> Decimal:
    """The plan's flat recurring price for a billing period (country override first), per month, so
    plans on different periods compare; used to tell an upgrade from a downgrade."""
    if billing_period is None:
        return Decimal(0)
    flat = [c for c in _base_charges(charges) if c.billing_model == "FLAT_FEE" and c.billing_period == billing_period]
    local = [c for c in flat if country and (c.billing_country_code or "").lower() == country.lower()]
    chosen = local or [c for c in flat if not c.billing_country_code]
    total = sum((c.price_amount or Decimal(0) for c in chosen), Decimal(0))
    return total / 12 if billing_period == "ANNUALLY" else total


# -- provisioning --------------------------------------------------------------------------------------


def _latest(s: Session, env_id: int, kind: str, ref: str) -> Package:
    pkg = packages.latest_published(s, env_id, kind, ref)
    if pkg is None:
        raise NotFound("plan" if kind == PLAN else "add-on", ref)
    if pkg.status == ARCHIVED:
        raise FailedPrecondition(f"{'plan' if kind == PLAN else 'add-on'} '{ref}' is archived")
    return pkg


def product_of_plan(s: Session, env_id: int, plan_ref: str) -> int | None:
    """The product of a plan's latest published, non-archived version (None if there is none)."""
    plan = packages.latest_published(s, env_id, PLAN, plan_ref)
    return plan.product_pk if plan is not None and plan.status != ARCHIVED else None


def _check_addons(s: Session, env_id: int, plan: Package, wanted: list[AddonQuantity]) -> list[tuple[Package, int]]:
    chosen: list[tuple[Package, int]] = []
    refs = {a.id for a in wanted if a.quantity > 0}
    compatible = set(plan.compatible_addon_ids or [])
    for item in wanted:
        if item.quantity == 0:
            continue
        addon = _latest(s, env_id, ADDON, item.id)
        if addon.product_pk != plan.product_pk:
            raise InvalidArgument(f"add-on '{item.id}' belongs to another product than plan '{plan.ref_id}'")
        if item.id not in compatible:
            raise InvalidArgument(f"add-on '{item.id}' is not compatible with plan '{plan.ref_id}'")
        if addon.max_quantity is not None and item.quantity > addon.max_quantity:
            raise InvalidArgument(f"add-on '{item.id}' allows at most {addon.max_quantity}")
        missing = [d for d in addon.dependencies or [] if d not in refs]
        if missing:
            raise InvalidArgument(f"add-on '{item.id}' needs add-on(s) {', '.join(missing)}")
        chosen.append((addon, item.quantity))
    return chosen


def _check_charges(plan_charges: list[PackageCharge], wanted: list[ChargeQuantity]) -> None:
    per_unit = {c.feature_ref: c for c in _base_charges(plan_charges) if c.billing_model == "PER_UNIT"}
    for item in wanted:
        if item.type != "FEATURE":
            continue
        charge = per_unit.get(item.id)
        if charge is None:
            raise InvalidArgument(f"the plan has no per-unit charge for feature '{item.id}'")
        if charge.min_unit_quantity is not None and item.quantity < charge.min_unit_quantity:
            raise InvalidArgument(f"'{item.id}' needs at least {charge.min_unit_quantity} units")
        if charge.max_unit_quantity is not None and item.quantity > charge.max_unit_quantity:
            raise InvalidArgument(f"'{item.id}' allows at most {charge.max_unit_quantity} units")


def _check_overrides(s: Session, env_id: int, items: list[EntitlementOverride]) -> None:
    known = features.get_many(s, env_id, [i.id for i in items if i.type == "FEATURE"])
    for item in items:
        if item.type != "FEATURE":
            continue
        feature = known.get(item.id)
        if feature is None or feature.archived_at is not None:
            raise NotFound("feature", item.id)
        if feature.feature_type == "NUMBER" and item.usage_limit is None and not item.has_unlimited_usage:
            raise InvalidArgument(f"entitlement '{item.id}' needs usageLimit or hasUnlimitedUsage")


def _trial_end(
    s: Session, plan: Package, req: SubscriptionProvision, customer: Customer, start: datetime
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
    elif not config or _trial_used(s, customer, plan.product_pk):
        return None, None
    duration = Decimal(str(config["duration"]))
    if duration != duration.to_integral_value() or duration <= 0:
        raise InvalidArgument("the plan's trial duration must be a whole number of days or months")
    return trial_end(start, int(duration), config["units"]), behavior


def _trial_used(s: Session, customer: Customer, product_pk: int) -> bool:
    """A plan's automatic trial is for newcomers to the product: a customer who already had a trial
    or a paid subscription in it (a downgrade, a re-subscription) starts without one."""
    subs = store.of_customer(s, customer.pk, [st.value for st in Status])
    return any(x.product_pk == product_pk and (x.trial_end_date is not None or x.pricing_type == "PAID") for x in subs)


def _activation_status(pricing_type: str, in_trial: bool) -> Status:
    """Status of a subscription that starts now. Without a billing provider nothing waits for a payment."""
    return Status.IN_TRIAL if in_trial else Status.ACTIVE


def _is_downgrade(
    s: Session, old: Subscription, new_plan: Package, new_period: str | None, country: str | None
) -> bool:
    old_plan = s.get(Package, old.plan_pk)
    if old_plan is None:
        return False
    if new_plan.ref_id in {p.ref_id for p in packages.plan_chain(s, old.environment_id, old_plan)[1:]}:
        return True  # moving to a plan the current one inherits from
    old_price = recurring_price(packages.charges_of(s, old.plan_pk), old.billing_period, country)
    new_price = recurring_price(packages.charges_of(s, new_plan.pk), new_period, country)
    return new_price < old_price


def provision(db: Database, env_id: int, req: SubscriptionProvision) -> ProvisionResult:
    """Provision in one transaction; with a Stripe Checkout, open it after that commit and record it in a
    second one (see `entitle.billing.checkout`: the one place a request waits for Stripe)."""
    with db.transaction() as s:
        result = provision_in(s, env_id, req, allow_checkout=True)
    if result.checkout is None:
        return result
    sub_pk, ref = result.view.sub.pk, result.view.sub.ref_id
    try:
        session = billing_checkout.open_session(db, sub_pk, result.checkout)
    except billing_checkout.BillingProviderError as exc:
        with db.transaction() as s:
            sub = store.by_pk(s, sub_pk, for_update=True)
            if sub is not None and sub.status == Status.PAYMENT_PENDING.value:
                billing_checkout.checkout_failed(s, sub, exc.message)
                _end(s, sub, utcnow(), Status.CANCELED, "CANCELLED_BY_BILLING")
        raise billing_checkout.BillingProviderError(
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
    """Provision inside an open transaction (customer provisioning with subscriptionParams uses it).

    `allow_checkout`: the caller opens a Stripe Checkout after the commit when the result asks for one
    (`provision` does; a subscription that would need one elsewhere is refused).
    """
    from entitle.entitlements.service import results_in_session

    now = utcnow()
    customer = customers.get_live(s, env_id, req.customer_id, for_update=True)
    plan = _latest(s, env_id, PLAN, req.plan_id)
    product = s.get(Product, plan.product_pk)
    if product is None or product.status == "ARCHIVED":
        raise FailedPrecondition(f"the product of plan '{plan.ref_id}' is archived")
    if req.id is not None and store.find(s, env_id, req.id) is not None:
        raise AlreadyExists("subscription", req.id)
    paying = customers.get_live(s, env_id, req.paying_customer_id) if req.paying_customer_id else None
    pricing_type = plan.pricing_type or "FREE"
    plan_charges = packages.charges_of(s, plan.pk)
    billing_period: str | None = req.billing_period
    if pricing_type == "PAID":
        priced = _periods_priced(plan_charges)
        if billing_period is None:
            billing_period = "MONTHLY" if "MONTHLY" in priced or not priced else sorted(priced)[0]
        if priced and billing_period not in priced:
            raise InvalidArgument(f"plan '{plan.ref_id}' has no {billing_period} price")
    addons = _check_addons(s, env_id, plan, req.addons or [])
    _check_charges(plan_charges, req.charges or [])
    _check_overrides(s, env_id, req.entitlements or [])
    coupon_ref = req.applied_coupon.coupon_id if req.applied_coupon else None
    if coupon_ref:
        coupon = coupons.find(s, env_id, coupon_ref)
        if coupon is None or coupon.status != "ACTIVE":
            raise InvalidArgument(f"coupon '{coupon_ref}' does not exist or is archived")
    start = as_utc(req.start_date) if req.start_date else now
    trial_ends, trial_behavior = _trial_end(s, plan, req, customer, start)

    open_in_product = [
        x
        for x in store.of_customer(s, customer.pk, [st.value for st in OPEN], for_update=True)
        if x.product_pk == plan.product_pk and (x.resource_ref or None) == (req.resource_id or None)
    ]
    if open_in_product and not product.multiple_subscriptions:
        current = open_in_product[0]
        strategy = req.schedule_strategy or "END_OF_BILLING_PERIOD"
        window = view_of(s, current, now).billing_window()
        if (
            current.status in LIVE
            and strategy != "IMMEDIATE"
            and window is not None
            and _is_downgrade(s, current, plan, billing_period, req.billing_country_code)
        ):
            _schedule(s, current, "DOWNGRADE", window.end, _change_doc(req, billing_period), plan.ref_id)
            webhooks.subscription_updated(s, current, "UPDATE_SCHEDULED", entitlements=False)
            return ProvisionResult(
                view_of(s, current, now), results_in_session(s, env_id, customer, req.resource_id), is_scheduled=True
            )
        _end(s, current, now, Status.CANCELED, "UPGRADE_OR_DOWNGRADE")

    if start > now + timedelta(seconds=1):
        status = Status.NOT_STARTED
    else:
        status = _activation_status(pricing_type, trial_ends is not None)
    sub = Subscription(
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
        invoice_days_until_due=billing_rules.days_until_due(req.billing_information),
        start_date=start,
        billing_cycle_anchor=trial_ends if trial_ends and pricing_type == "PAID" else start,
        trial_end_date=trial_ends,
        trial_end_behavior=trial_behavior,
        unit_quantity=req.unit_quantity,
        budget=req.budget.model_dump(mode="json", by_alias=True) if req.budget else None,
        minimum_spend=req.minimum_spend.model_dump(mode="json", by_alias=True) if req.minimum_spend else None,
        metadata_=dict(req.metadata or {}),
        coupon_ref=coupon_ref,
        billing_id=req.billing_id,
        salesforce_id=req.salesforce_id,
    )
    s.add(sub)
    s.flush()
    _replace_addons(s, sub, addons)
    _replace_charges(s, sub, req.charges or [])
    _replace_overrides(s, sub, req.entitlements or [])
    # billingInformation.integrationId: a connected integration agreeing with the customer's, or a 400.
    billing_integrations.choose_subscription_integration(s, sub, req.billing_information)
    checkout_via = None
    if status is Status.ACTIVE:
        # With checkoutOptions, or a paid plan Stripe must charge and no payment method: PAYMENT_REQUIRED.
        checkout_via = billing_checkout.checkout_integration(s, sub, asked=req.checkout_options is not None)
    implicit = checkout_via is not None and req.checkout_options is None
    if implicit and (not allow_checkout or any(x.pricing_type == "PAID" for x in open_in_product)):
        checkout_via = None  # no Checkout asked for and none possible here: Stripe bills it, it waits
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
    elif status is Status.ACTIVE and pricing_type == "PAID" and payment_gate().requires_payment(s, sub):
        sub.status = transition(Status.NOT_STARTED, Event.PAYMENT_REQUIRED).value
        sub.payment_collection = "PROCESSING"
    if status is Status.NOT_STARTED:
        jobs.enqueue(s, env_id, JOB_START, {"subscription": sub.pk}, run_at=start, dedupe_key=f"start:{sub.pk}")
    if trial_ends is not None:
        if trial_behavior == "CANCEL_SUBSCRIPTION":
            sub.end_date = trial_ends
        jobs.enqueue(
            s,
            env_id,
            JOB_TRIAL_END,
            {"subscription": sub.pk},
            run_at=trial_ends,
            dedupe_key=f"trial-end:{sub.pk}:{trial_ends.isoformat()}",
        )
    if req.cancellation_date is not None:
        _schedule_end(s, sub, as_utc(req.cancellation_date), "ScheduledCancellation", now)
    webhooks.subscription_created(s, sub)
    s.flush()
    checkout: billing_checkout.CheckoutOptions | None = None
    if checkout_via is not None:
        options = req.checkout_options
        checkout = (
            billing_checkout.CheckoutOptions(
                success_url=options.success_url,
                cancel_url=options.cancel_url,
                allow_promo_codes=bool(options.allow_promo_codes),
                allow_tax_id_collection=bool(options.allow_tax_id_collection),
                collect_billing_address=bool(options.collect_billing_address),
                collect_phone_number=bool(options.collect_phone_number),
                reference_id=options.reference_id,
            )
            if options is not None
            else billing_checkout.default_options()
        )
        billing_checkout.plan_checkout(s, checkout_via, sub, checkout)  # the session creates the Stripe subscription
    else:
        billing_sync.subscription_provisioned(s, sub)  # a provider sync job, when one is connected
    return ProvisionResult(
        view_of(s, sub, now), results_in_session(s, env_id, customer, req.resource_id), checkout=checkout
    )


def _change_doc(req: SubscriptionProvision, billing_period: str | None) -> dict[str, Any]:
    return req.model_dump(mode="json", by_alias=True, exclude_none=True) | {"billingPeriod": billing_period}


def _replace_addons(s: Session, sub: Subscription, addons: list[tuple[Package, int]]) -> None:
    for row in store.addons_of(s, [sub.pk]).get(sub.pk, []):
        s.delete(row)
    s.flush()
    for addon, quantity in addons:
        s.add(
            SubscriptionAddon(
                environment_id=sub.environment_id,
                subscription_pk=sub.pk,
                addon_pk=addon.pk,
                addon_ref=addon.ref_id,
                quantity=quantity,
            )
        )


def _replace_charges(s: Session, sub: Subscription, items: list[ChargeQuantity]) -> None:
    for row in store.charges_of(s, [sub.pk]).get(sub.pk, []):
        s.delete(row)
    s.flush()
    for item in items:
        s.add(
            SubscriptionCharge(
                environment_id=sub.environment_id,
                subscription_pk=sub.pk,
                charge_type=item.type,
                ref_id=item.id,
                quantity=item.quantity,
            )
        )


def _replace_overrides(s: Session, sub: Subscription, items: list[EntitlementOverride]) -> None:
    for row in store.overrides_of(s, [sub.pk]).get(sub.pk, []):
        s.delete(row)
    s.flush()
    for item in items:
        anchor = item.anchor()
        s.add(
            SubscriptionEntitlement(
                environment_id=sub.environment_id,
                subscription_pk=sub.pk,
                entitlement_type=item.type,
                ref_id=item.id,
                usage_limit=Decimal(item.usage_limit) if item.usage_limit is not None else None,
                has_unlimited_usage=bool(item.has_unlimited_usage),
                has_soft_limit=bool(item.has_soft_limit),
                reset_period=item.reset_period,
                reset_period_configuration={"accordingTo": anchor} if anchor else None,
                amount=item.amount,
                cadence=item.cadence,
            )
        )


def _schedule(
    s: Session, sub: Subscription, kind: str, at: datetime, change: dict[str, Any], target: str | None
) -> FutureUpdate:
    """Record a change for later, replacing an earlier scheduled change of the same kind."""
    for old in store.future_updates_of(s, [sub.pk]).get(sub.pk, []):
        if old.schedule_type == kind or (kind == "DOWNGRADE" and old.schedule_type == "PLAN"):
            old.schedule_status = "CANCELED"
    update = FutureUpdate(
        environment_id=sub.environment_id,
        subscription_pk=sub.pk,
        schedule_type=kind,
        scheduled_at=at,
        change=change,
        target_package_ref=target,
    )
    s.add(update)
    s.flush()
    jobs.enqueue(
        s, sub.environment_id, JOB_FUTURE_UPDATE, {"update": update.pk}, run_at=at, dedupe_key=f"update:{update.pk}"
    )
    return update


def _schedule_end(s: Session, sub: Subscription, at: datetime, reason: str, now: datetime) -> None:
    if at <= now:
        raise InvalidArgument("the cancellation date must be in the future")
    sub.end_date = at
    sub.cancellation_date = at
    sub.cancel_reason = reason
    jobs.enqueue(
        s, sub.environment_id, JOB_END, {"subscription": sub.pk}, run_at=at, dedupe_key=f"end:{sub.pk}:{at.isoformat()}"
    )


def _end(
    s: Session, sub: Subscription, now: datetime, status: Status, reason: str, webhook: str = "subscription.canceled"
) -> None:
    """End the subscription; `webhook` is the event receivers get (canceled, expired or trial_expired)."""
    event = Event.TRIAL_ENDED if status is Status.EXPIRED else Event.CANCEL
    try:
        sub.status = transition(sub.status, event).value
    except IllegalTransition as exc:
        raise FailedPrecondition(str(exc)) from exc
    sub.end_date = now
    sub.cancellation_date = sub.cancellation_date if sub.cancellation_date and sub.cancellation_date <= now else now
    sub.cancel_reason = reason
    sub.updated_at = now
    webhooks.subscription_ended(s, sub, webhook)
    for update in store.future_updates_of(s, [sub.pk]).get(sub.pk, []):
        update.schedule_status = "CANCELED"
    billing_sync.subscription_ended(s, sub)  # cancels the provider subscription, when there is one


def _downgrade_to_free(s: Session, sub: Subscription, now: datetime) -> None:
    """The product's cancellation setup: move the customer to its free plan, if it has one."""
    product = s.get(Product, sub.product_pk)
    settings = (product.product_settings if product else None) or {}
    if settings.get("subscriptionEndSetup") != "DOWNGRADE_TO_FREE" or not settings.get("downgradePlanId"):
        return
    if settings["downgradePlanId"] == sub.plan_ref:
        return
    customer = s.get(Customer, sub.customer_pk)
    if customer is None or customer.archived_at is not None:
        return
    provision_in(
        s,
        sub.environment_id,
        SubscriptionProvision(
            customer_id=customer.ref_id, plan_id=settings["downgradePlanId"], resource_id=sub.resource_ref
        ),
    )


def end_all_for_archived_customer(s: Session, customer: Customer) -> None:
    """Archiving a customer cancels every subscription it has not ended yet (reason CustomerArchived)."""
    now = utcnow()
    for sub in store.of_customer(s, customer.pk, [st.value for st in OPEN], for_update=True):
        _end(s, sub, now, Status.CANCELED, "CustomerArchived")


# -- reads ---------------------------------------------------------------------------------------------


def get_subscription(db: Database, env_id: int, ref: str) -> SubscriptionView:
    with db.read() as s:
        return view_of(s, store.get(s, env_id, ref))


def list_subscriptions(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    customer_ref: str | None = None,
    plan_ref: str | None = None,
    resource_ref: str | None = None,
    statuses: list[str] | None = None,
    pricing_types: list[str] | None = None,
    created_at: CreatedAtRange = CreatedAtRange(),
) -> tuple[Page[Subscription], list[SubscriptionView]]:
    with db.read() as s:
        customer_pk: int | None = None
        if customer_ref is not None:
            customer = customers.find(s, env_id, customer_ref)
            if customer is None:
                return Page(items=[], next=None, prev=None), []
            customer_pk = customer.pk
        result = store.list_page(
            s,
            env_id,
            page,
            customer_pk=customer_pk,
            plan_ref=plan_ref,
            resource_ref=resource_ref,
            statuses=statuses,
            pricing_types=pricing_types,
            created_at=created_at,
        )
        now = utcnow()
        states = billing_store.sync_states_of(s, SUBSCRIPTION_LINK, [sub.pk for sub in result.items])
        return result, [view_of(s, sub, now, states.get(sub.pk, [])) for sub in result.items]


# -- changes -------------------------------------------------------------------------------------------


def update_subscription(db: Database, env_id: int, ref: str, req: SubscriptionUpdate) -> SubscriptionView:
    """Partial update. Add-ons, charges and overrides apply at once (and replace the stored lists);
    a billing-period change waits for the end of the current period unless scheduleStrategy is
    IMMEDIATE."""
    fields = req.model_fields_set
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is {sub.status}; it can no longer change")
        billing_integrations.check_subscription_integration(s, sub, req.billing_information)
        plan = s.get(Package, sub.plan_pk)
        assert plan is not None
        period_before = sub.billing_period
        if "addons" in fields:
            _replace_addons(s, sub, _check_addons(s, env_id, plan, req.addons or []))
        if "charges" in fields:
            _check_charges(packages.charges_of(s, plan.pk), req.charges or [])
            _replace_charges(s, sub, req.charges or [])
        if "entitlements" in fields:
            _check_overrides(s, env_id, req.entitlements or [])
            _replace_overrides(s, sub, req.entitlements or [])
        if "metadata" in fields:
            sub.metadata_ = dict(req.metadata or {})
        if "budget" in fields:
            sub.budget = req.budget.model_dump(mode="json", by_alias=True) if req.budget else None
        if "minimum_spend" in fields:
            sub.minimum_spend = req.minimum_spend.model_dump(mode="json", by_alias=True) if req.minimum_spend else None
        if "salesforce_id" in fields:
            sub.salesforce_id = req.salesforce_id
        if req.applied_coupon is not None and req.applied_coupon.coupon_id:
            coupon = coupons.find(s, env_id, req.applied_coupon.coupon_id)
            if coupon is None or coupon.status != "ACTIVE":
                raise InvalidArgument(f"coupon '{req.applied_coupon.coupon_id}' does not exist or is archived")
            sub.coupon_ref = coupon.ref_id
        if req.trial_end_date is not None:
            if sub.status != Status.IN_TRIAL:
                raise FailedPrecondition("only a subscription in trial has a trial end date to change")
            new_end = as_utc(req.trial_end_date)
            if new_end <= now:
                raise InvalidArgument("trialEndDate must be in the future")
            sub.trial_end_date = new_end
            if sub.trial_end_behavior == "CANCEL_SUBSCRIPTION":
                sub.end_date = new_end
            jobs.enqueue(
                s,
                env_id,
                JOB_TRIAL_END,
                {"subscription": sub.pk},
                run_at=new_end,
                dedupe_key=f"trial-end:{sub.pk}:{new_end.isoformat()}",
            )
        if req.cancellation_date is not None:
            _schedule_end(s, sub, as_utc(req.cancellation_date), "ScheduledCancellation", now)
        if req.billing_period is not None and req.billing_period != sub.billing_period:
            priced = _periods_priced(packages.charges_of(s, plan.pk))
            if priced and req.billing_period not in priced:
                raise InvalidArgument(f"plan '{plan.ref_id}' has no {req.billing_period} price")
            window = view_of(s, sub, now).billing_window()
            if req.schedule_strategy == "IMMEDIATE" or window is None:
                sub.billing_period = req.billing_period
                sub.billing_cycle_anchor = now
            else:
                _schedule(s, sub, "BILLING_PERIOD", window.end, {"billingPeriod": req.billing_period}, None)
        if req.billing_information and "invoiceDaysUntilDue" in req.billing_information:
            sub.invoice_days_until_due = billing_rules.days_until_due(req.billing_information)
        if fields & {"addons", "charges", "applied_coupon", "billing_period", "billing_information"}:
            # The provider subscription follows (a billing-period change scheduled for later finds
            # nothing to change now; its scheduled update sends it then).
            billing_sync.subscription_changed(s, sub, proration=billing_rules.proration_of(req.billing_information))
        sub.updated_at = now
        grants_changed = bool(fields & {"addons", "charges", "entitlements"}) or sub.billing_period != period_before
        webhooks.subscription_updated(s, sub, "UPDATED", entitlements=grants_changed and sub.status in LIVE)
        s.flush()
        return view_of(s, sub, now)


def cancel_subscription(db: Database, env_id: int, ref: str, req: SubscriptionCancel) -> SubscriptionView:
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is already {sub.status}")
        product = s.get(Product, sub.product_pk)
        default_time = ((product.product_settings if product else None) or {}).get(
            "subscriptionCancellationTime", "END_OF_BILLING_PERIOD"
        )
        when = req.cancellation_time or default_time
        if when == "SPECIFIC_DATE":
            if req.end_date is None:
                raise InvalidArgument("cancellationTime SPECIFIC_DATE needs endDate")
            _schedule_end(s, sub, as_utc(req.end_date), "ScheduledCancellation", now)
        else:
            end: datetime | None = None
            if when == "END_OF_BILLING_PERIOD" and sub.status in LIVE:
                window = view_of(s, sub, now).billing_window()
                end = sub.trial_end_date if sub.status == Status.IN_TRIAL else (window.end if window else None)
            if end is not None and end > now:
                _schedule_end(s, sub, end, "ScheduledCancellation", now)
            else:
                _end(s, sub, now, Status.CANCELED, "Immediate")
                if req.cancellation_action != "REVOKE_ENTITLEMENTS":
                    _downgrade_to_free(s, sub, now)
        if sub.status in OPEN:  # not ended now: the end is scheduled
            webhooks.subscription_updated(s, sub, "CANCELLATION_SCHEDULED", entitlements=False)
        s.flush()
        return view_of(s, sub, now)


def migrate_subscription(db: Database, env_id: int, ref: str, when: str | None) -> SubscriptionView:
    """Move to the latest published versions of the plan and add-ons (now, or at period end)."""
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is {sub.status}")
        window = view_of(s, sub, now).billing_window()
        if when == "END_OF_BILLING_PERIOD" and window is not None:
            _schedule(s, sub, "MIGRATE_TO_LATEST", window.end, {}, sub.plan_ref)
            sub.updated_at = now
            webhooks.subscription_updated(s, sub, "UPDATE_SCHEDULED", entitlements=False)
        else:
            _migrate_now(s, sub)
            billing_sync.subscription_changed(s, sub)  # the provider subscription moves to the new prices
            sub.updated_at = now
            webhooks.subscription_updated(s, sub, "MIGRATED")
        s.flush()
        return view_of(s, sub, now)


def _migrate_now(s: Session, sub: Subscription) -> None:
    plan = _latest(s, sub.environment_id, PLAN, sub.plan_ref)
    sub.plan_pk = plan.pk
    sub.pricing_type = plan.pricing_type or sub.pricing_type
    for row in store.addons_of(s, [sub.pk]).get(sub.pk, []):
        latest = packages.latest_published(s, sub.environment_id, ADDON, row.addon_ref)
        if latest is not None and latest.status != ARCHIVED:
            row.addon_pk = latest.pk


def delegate_subscription(db: Database, env_id: int, ref: str, target_customer: str) -> SubscriptionView:
    """Hand the subscription's use to another customer; the original customer keeps paying for it."""
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is {sub.status}")
        target = customers.get_live(s, env_id, target_customer, for_update=True)
        if target.pk != sub.customer_pk:
            previous = s.get(Customer, sub.customer_pk)
            sub.paying_customer_pk = sub.paying_customer_pk or sub.customer_pk
            sub.customer_pk = target.pk
            sub.updated_at = now
            was = [(previous.ref_id, sub.resource_ref)] if previous is not None else []
            webhooks.subscription_updated(s, sub, "DELEGATED", entitlements=sub.status in LIVE, also=was)
        s.flush()
        return view_of(s, sub, now)


def transfer_subscription(db: Database, env_id: int, ref: str, destination_resource: str) -> SubscriptionView:
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is {sub.status}")
        clash = [
            x
            for x in store.of_customer(s, sub.customer_pk, [st.value for st in OPEN])
            if x.pk != sub.pk and x.product_pk == sub.product_pk and x.resource_ref == destination_resource
        ]
        product = s.get(Product, sub.product_pk)
        if clash and not (product and product.multiple_subscriptions):
            raise FailedPrecondition(f"resource '{destination_resource}' already has a subscription to this product")
        previous_resource = sub.resource_ref
        sub.resource_ref = destination_resource
        sub.updated_at = now
        if previous_resource != destination_resource:
            owner = s.get(Customer, sub.customer_pk)
            was = [(owner.ref_id, previous_resource)] if owner is not None else []
            webhooks.subscription_updated(s, sub, "TRANSFERRED", entitlements=sub.status in LIVE, also=was)
        s.flush()
        return view_of(s, sub, now)


def cancel_future_update(db: Database, env_id: int, ref: str) -> str:
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        pending = store.future_updates_of(s, [sub.pk]).get(sub.pk, [])
        if not pending:
            raise FailedPrecondition(f"subscription '{ref}' has no scheduled update")
        for update in pending:
            update.schedule_status = "CANCELED"
        webhooks.subscription_updated(s, sub, "FUTURE_UPDATE_CANCELED", entitlements=False)
        return sub.ref_id


# -- payments (reported by the billing provider) --------------------------------------------------------


def _payment_outcome(
    db: Database,
    env_id: int,
    ref: str,
    event: Event,
    collection: str,
    details: Mapping[str, Any] | None = None,
) -> SubscriptionView:
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        before = sub.status
        try:
            sub.status = transition(sub.status, event).value
        except IllegalTransition as exc:
            raise FailedPrecondition(str(exc)) from exc
        sub.payment_collection = collection
        sub.updated_at = now
        webhooks.subscription_updated(s, sub, event.value, entitlements=sub.status != before)
        if event is Event.PAYMENT_FAILED:
            webhooks.payment_failed(s, sub, details)
        return view_of(s, sub, now)


def payment_succeeded(db: Database, env_id: int, ref: str) -> SubscriptionView:
    """The first payment arrived: a PAYMENT_PENDING subscription becomes ACTIVE and grants its entitlements."""
    return _payment_outcome(db, env_id, ref, Event.PAYMENT_SUCCEEDED, "NOT_REQUIRED")


def payment_failed(db: Database, env_id: int, ref: str, details: Mapping[str, Any] | None = None) -> SubscriptionView:
    """A payment failed: the subscription keeps its status (PAYMENT_PENDING grants nothing) and shows FAILED.

    Receivers get `customer.payment_failed` (with `details`, e.g. the provider's invoice id and reason).
    """
    return _payment_outcome(db, env_id, ref, Event.PAYMENT_FAILED, "FAILED", details)


def cancel_by_billing(
    db: Database,
    env_id: int,
    ref: str,
    *,
    at: datetime | None = None,
    reason: str = "CANCELLED_BY_BILLING",
    only_if: frozenset[Status] = OPEN,
) -> SubscriptionView | None:
    """The billing provider ended a subscription (cancelled at the provider, or its first payment never
    came: reason PENDING_PAYMENT_EXPIRED): end it now, or schedule its end at `at`. None when the
    subscription's status is not in `only_if` (already ended, or paid meanwhile): nothing changes."""
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if Status(sub.status) not in only_if or sub.status not in OPEN:
            return None
        if at is not None and at > now:
            if sub.end_date != at:
                _schedule_end(s, sub, at, reason, now)
                webhooks.subscription_updated(s, sub, "CANCELLATION_SCHEDULED", entitlements=False)
        else:
            _end(s, sub, now, Status.CANCELED, reason)
            _downgrade_to_free(s, sub, now)
        s.flush()
        return view_of(s, sub, now)


def billing_cancellation_withdrawn(db: Database, env_id: int, ref: str) -> SubscriptionView | None:
    """The provider no longer cancels the subscription at period end: drop the end it scheduled (an end
    scheduled in Entitle, with another reason, stays). None when there was nothing to withdraw."""
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN or sub.end_date is None or sub.cancel_reason != "CANCELLED_BY_BILLING":
            return None
        sub.end_date = None
        sub.cancellation_date = None
        sub.cancel_reason = None
        sub.updated_at = now
        webhooks.subscription_updated(s, sub, "CANCELLATION_WITHDRAWN", entitlements=False)
        return view_of(s, sub, now)


# -- timed lifecycle events (run by the job worker) -----------------------------------------------------


@jobs.register(JOB_START)
def _on_start(db: Database, ctx: jobs.JobContext) -> None:
    now = utcnow()
    with db.transaction() as s:
        sub = store.by_pk(s, int(ctx.payload["subscription"]), for_update=True)
        if sub is None or sub.status != Status.NOT_STARTED or sub.start_date > now:
            return
        in_trial = sub.trial_end_date is not None and sub.trial_end_date > now
        sub.status = transition(sub.status, Event.START_TRIAL if in_trial else Event.START).value
        sub.updated_at = now
        webhooks.subscription_updated(s, sub, "STARTED")


@jobs.register(JOB_TRIAL_END)
def _on_trial_end(db: Database, ctx: jobs.JobContext) -> None:
    now = utcnow()
    with db.transaction() as s:
        sub = store.by_pk(s, int(ctx.payload["subscription"]), for_update=True)
        if sub is None or sub.status != Status.IN_TRIAL or sub.trial_end_date is None or sub.trial_end_date > now:
            return  # already ended, converted, or the trial was extended (a later job handles it)
        if sub.trial_end_behavior == "CANCEL_SUBSCRIPTION" or sub.pricing_type != "PAID":
            _end(s, sub, now, Status.EXPIRED, "TRIAL_ENDED", "subscription.trial_expired")
            _downgrade_to_free(s, sub, now)
        else:
            sub.status = transition(sub.status, Event.TRIAL_CONVERTED).value
            sub.cancel_reason = None
            sub.updated_at = now
            webhooks.subscription_updated(s, sub, "TRIAL_CONVERTED")
            billing_sync.subscription_converted(s, sub)  # now paid: synced to the provider, when connected


@jobs.register(JOB_END)
def _on_end(db: Database, ctx: jobs.JobContext) -> None:
    now = utcnow()
    with db.transaction() as s:
        sub = store.by_pk(s, int(ctx.payload["subscription"]), for_update=True)
        if sub is None or sub.status not in OPEN or sub.end_date is None or sub.end_date > now:
            return  # already ended, or the cancellation was moved or withdrawn
        reason = sub.cancel_reason or "ScheduledCancellation"
        if sub.status == Status.IN_TRIAL and sub.trial_end_behavior == "CANCEL_SUBSCRIPTION":
            _end(s, sub, now, Status.EXPIRED, "TRIAL_ENDED", "subscription.trial_expired")
        else:
            _end(s, sub, now, Status.CANCELED, reason, "subscription.expired")
        _downgrade_to_free(s, sub, now)


@jobs.register(JOB_FUTURE_UPDATE)
def _on_future_update(db: Database, ctx: jobs.JobContext) -> None:
    now = utcnow()
    with db.transaction() as s:
        update = s.get(FutureUpdate, int(ctx.payload["update"]))
        if update is None or update.schedule_status != "SCHEDULED" or update.scheduled_at > now:
            return
        sub = store.by_pk(s, update.subscription_pk, for_update=True)
        if sub is None or sub.status not in LIVE:
            update.schedule_status = "CANCELED"
            return
        if update.schedule_type == "BILLING_PERIOD":
            sub.billing_period = update.change["billingPeriod"]
            sub.billing_cycle_anchor = update.scheduled_at
        elif update.schedule_type == "MIGRATE_TO_LATEST":
            _migrate_now(s, sub)
        if update.schedule_type in ("BILLING_PERIOD", "MIGRATE_TO_LATEST"):
            billing_sync.subscription_changed(s, sub, scheduled=True)  # at a period's end: no proration
        elif update.schedule_type in ("DOWNGRADE", "PLAN"):
            change = SubscriptionProvision.model_validate(update.change)
            _end(s, sub, update.scheduled_at, Status.CANCELED, "UPGRADE_OR_DOWNGRADE")
            update.schedule_status = "DONE"
            provision_in(s, sub.environment_id, change.model_copy(update={"id": None, "start_date": None}))
            return
        update.schedule_status = "DONE"
        sub.updated_at = now
        webhooks.subscription_updated(s, sub, "FUTURE_UPDATE_APPLIED")


@dataclass(frozen=True)
class Resource:
    """A resource (workspace, site, ...) a customer holds subscriptions for, known from those subscriptions."""

    pk: int
    id: str
    created_at: datetime
    updated_at: datetime


def list_resources(db: Database, env_id: int, customer_ref: str, page: PageRequest) -> Page[Resource]:
    from entitle.db.pagination import decode_cursor, encode_cursor

    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        subs = store.of_customer(s, customer.pk, [st.value for st in Status])
    found: dict[str, Resource] = {}
    for sub in subs:
        if not sub.resource_ref:
            continue
        known = found.get(sub.resource_ref)
        found[sub.resource_ref] = Resource(
            pk=min(sub.pk, known.pk) if known else sub.pk,
            id=sub.resource_ref,
            created_at=min(sub.created_at, known.created_at) if known else sub.created_at,
            updated_at=max(sub.updated_at, known.updated_at) if known else sub.updated_at,
        )
    ordered = sorted(found.values(), key=lambda r: r.pk)
    if page.before:
        boundary = decode_cursor(page.before)
        earlier = [r for r in ordered if r.pk < boundary]
        items = earlier[-page.limit :]
        has_more = len(earlier) > page.limit
        return Page(
            items,
            encode_cursor(items[-1].pk) if items else None,
            encode_cursor(items[0].pk) if items and has_more else None,
        )
    if page.after:
        boundary = decode_cursor(page.after)
        ordered = [r for r in ordered if r.pk > boundary]
    items = ordered[: page.limit]
    has_more = len(ordered) > page.limit
    return Page(
        items,
        encode_cursor(items[-1].pk) if items and has_more else None,
        encode_cursor(items[0].pk) if items and page.after else None,
    )


@jobs.register("package.migrate_subscriptions")
def _on_publish_to_all(db: Database, ctx: jobs.JobContext) -> None:
    """An ALL_CUSTOMERS publish: every open subscription on an older version moves to the latest.
    One transaction per subscription, so a retry after a crash only redoes what was not done."""
    kind, ref = ctx.payload["kind"], ctx.payload["ref"]
    with db.read() as s:
        latest = packages.latest_published(s, ctx.environment_id, kind, ref)
        if latest is None:
            return
        stale = store.on_older_versions(s, ctx.environment_id, kind, ref, latest.pk, [st.value for st in OPEN])
    for sub_pk in stale:
        with db.transaction() as s:
            sub = store.by_pk(s, sub_pk, for_update=True)
            if sub is not None and sub.status in OPEN:
                _migrate_now(s, sub)
                sub.updated_at = utcnow()
                webhooks.subscription_updated(s, sub, "MIGRATED")
