"""Changing a subscription in place: update (add-ons, charges, overrides, coupon, trial end, billing
period), migrate to the latest plan version, delegate to another customer, transfer to another resource,
and cancel a scheduled update."""

from __future__ import annotations

from typing import Any, NoReturn

from entitle.catalog.coupons import store as coupons
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import Package
from entitle.catalog.products.models import Product
from entitle.clock import as_utc, utcnow
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.domain_events import publish
from entitle.errors import FailedPrecondition, InvalidArgument, UnsupportedField
from entitle.subscriptions import ports, rules, store
from entitle.subscriptions.events import (
    BillingTermsChanged,
    announce_update,
)
from entitle.subscriptions.preview import check_one_currency, checked_overrides
from entitle.subscriptions.rules import LIVE, OPEN, Status
from entitle.subscriptions.schemas import (
    PriceOverride,
    SubscriptionUpdate,
)
from entitle.subscriptions.service import SubscriptionView, view_of
from entitle.subscriptions.transitions import (
    migrate_now,
    replace_addons,
    replace_charges,
    replace_overrides,
    schedule_end,
    schedule_trial_end,
    schedule_update,
    stale_price_override,
)
from entitle.subscriptions.validation import (
    check_addons,
    check_charges,
    check_overrides,
    periods_priced,
)


def update_subscription(db: Database, env_id: int, ref: str, req: SubscriptionUpdate) -> SubscriptionView:
    """Partial update. Add-ons, charges and overrides apply at once (and replace the stored lists);
    a billing-period change waits for the end of the current period unless scheduleStrategy is
    IMMEDIATE."""
    fields = req.model_fields_set
    billing_information = req.billing_information.wire() if req.billing_information else None
    codes = {c for c in (req.promotion_code, req.applied_coupon.promotion_code if req.applied_coupon else None) if c}
    if len(codes) > 1 or (codes and req.applied_coupon is not None and req.applied_coupon.coupon_id):
        raise InvalidArgument("give one of appliedCoupon.couponId, appliedCoupon.promotionCode and promotionCode")
    prefetched = _prefetch_promotion_code(db, env_id, ref, billing_information, next(iter(codes), None))
    now = utcnow()
    with db.transaction() as s:
        s.info.update(prefetched)
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is {sub.status}; it can no longer change")
        ports.billing.impl.check_integration(s, sub, billing_information)
        if req.await_payment_confirmation:
            raise UnsupportedField(
                "awaitPaymentConfirmation",
                "an update never waits for the provider's payment; send false or leave it out",
            )
        plan = s.get(Package, sub.plan_pk)
        assert plan is not None
        period_before = sub.billing_period
        if "addons" in fields:
            replace_addons(s, sub, check_addons(s, env_id, plan, req.addons or []))
        if "charges" in fields:
            check_charges(packages.charges_of(s, plan.pk), req.charges or [])
            replace_charges(s, sub, req.charges or [])
        if "entitlements" in fields:
            check_overrides(s, env_id, req.entitlements or [])
            replace_overrides(s, sub, req.entitlements or [])
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
        if codes:
            sub.coupon_ref = ports.billing.impl.resolve_promotion_code(s, sub, codes.pop())
        if req.trial_end_date is not None:
            if sub.status != Status.IN_TRIAL:
                raise FailedPrecondition("only a subscription in trial has a trial end date to change")
            new_end = as_utc(req.trial_end_date)
            if new_end <= now:
                raise InvalidArgument("trialEndDate must be in the future")
            sub.trial_end_date = new_end
            schedule_trial_end(s, sub)
        if req.cancellation_date is not None:
            schedule_end(s, sub, as_utc(req.cancellation_date), "ScheduledCancellation", now)
        if req.billing_period is not None and req.billing_period != sub.billing_period:
            priced = periods_priced(packages.charges_of(s, plan.pk))
            if priced and req.billing_period not in priced:
                raise InvalidArgument(f"plan '{plan.ref_id}' has no {req.billing_period} price")
            window = view_of(s, sub, now).billing_window()
            if req.schedule_strategy == "IMMEDIATE" or window is None:
                sub.billing_period = req.billing_period
                sub.billing_cycle_anchor = now
            elif sub.price_overrides or req.price_overrides:
                raise InvalidArgument(
                    "a subscription with price overrides changes its billing period with scheduleStrategy "
                    "IMMEDIATE (and the priceOverrides of the new period): an override is a price for one period"
                )
            else:
                schedule_update(s, sub, "BILLING_PERIOD", window.end, {"billingPeriod": req.billing_period}, None)
        held: list[tuple[Package, int]] = []  # the add-ons it holds now, read when a check below needs them
        if fields & {"addons", "billing_period", "price_overrides"}:
            held = [
                (addon, row.quantity)
                for row in store.addons_of(s, [sub.pk]).get(sub.pk, [])
                if (addon := s.get(Package, row.addon_pk)) is not None
            ]
        if fields & {"addons", "billing_period"}:  # what it is billed for now: still in one currency
            period = req.billing_period or sub.billing_period  # a change scheduled for later is checked now
            check_one_currency(s, plan, held, period, sub.billing_country_code)
        if "price_overrides" in fields or (sub.price_overrides and fields & {"addons", "billing_period"}):
            # Checked against the add-ons and the billing period the subscription now has: an override of a
            # price it no longer has is refused, never kept unapplied.
            wanted = (
                req.price_overrides
                if "price_overrides" in fields
                else [PriceOverride.model_validate(entry) for entry in sub.price_overrides or []]
            )
            country = sub.billing_country_code
            sub.price_overrides = checked_overrides(s, plan, held, sub.billing_period, country, wanted)
        rules.check_days_until_due(billing_information, sub.payment_collection_method)
        if rules.forwarded_billing_information(billing_information):
            assert billing_information is not None
            ports.billing.impl.forward_billing_information(s, sub, billing_information, via_checkout=False, new=False)
        billed = {"addons", "charges", "applied_coupon", "promotion_code", "billing_period", "billing_information"}
        if fields & (billed | {"price_overrides"}):
            # The provider subscription follows (a billing-period change scheduled for later finds
            # nothing to change now; its scheduled update sends it then).
            proration = rules.proration_behavior(billing_information)
            publish(s, BillingTermsChanged(env_id=env_id, sub=sub, proration=proration))
        sub.updated_at = now
        grants_changed = bool(fields & {"addons", "charges", "entitlements"}) or sub.billing_period != period_before
        announce_update(s, sub, "UPDATED", entitlements=grants_changed and sub.status in LIVE)
        s.flush()
        return view_of(s, sub, now)


def _prefetch_promotion_code(
    db: Database, env_id: int, ref: str, billing_information: dict[str, Any] | None, code: str | None
) -> dict[str, Any]:
    """The provider's answer about a promotion code, asked before the update's transaction holds its locks."""
    if not code:
        return {}
    with db.read() as s:
        sub = store.get(s, env_id, ref)
        payer = s.get(Customer, sub.paying_customer_pk or sub.customer_pk)
        payer_ref = payer.ref_id if payer is not None else ""
    return ports.billing.impl.prefetch_promotion_code(db, env_id, payer_ref, billing_information, code)


def migrate_subscription(db: Database, env_id: int, ref: str, when: str | None) -> SubscriptionView:
    """Move to the latest published versions of the plan and add-ons (now, or at period end)."""
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is {sub.status}")
        window = view_of(s, sub, now).billing_window()
        if when == "END_OF_BILLING_PERIOD" and window is not None:
            stale = stale_price_override(s, sub)  # refused now rather than failing at the period's end
            if stale is not None:
                raise FailedPrecondition(stale)
            schedule_update(s, sub, "MIGRATE_TO_LATEST", window.end, {}, sub.plan_ref)
            sub.updated_at = now
            announce_update(s, sub, "UPDATE_SCHEDULED", entitlements=False)
        else:
            migrate_now(s, sub)
            publish(s, BillingTermsChanged(env_id=env_id, sub=sub))  # the provider moves it to the new prices
            sub.updated_at = now
            announce_update(s, sub, "MIGRATED")
        s.flush()
        return view_of(s, sub, now)


def delegate_subscription(db: Database, env_id: int, ref: str, target_customer: str) -> SubscriptionView:
    """Hand the subscription's use to another customer; the original customer keeps paying for it."""
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is {sub.status}")
        target = customers.get_live(s, env_id, target_customer, for_update=True, write=True)
        if target.pk != sub.customer_pk:
            previous = s.get(Customer, sub.customer_pk)
            sub.paying_customer_pk = sub.paying_customer_pk or sub.customer_pk
            sub.customer_pk = target.pk
            sub.updated_at = now
            was = [(previous.ref_id, sub.resource_ref)] if previous is not None else []
            announce_update(s, sub, "DELEGATED", entitlements=sub.status in LIVE, also=was)
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
            announce_update(s, sub, "TRANSFERRED", entitlements=sub.status in LIVE, also=was)
        s.flush()
        return view_of(s, sub, now)


def cancel_pending_payment_update(db: Database, env_id: int, ref: str) -> str:
    """`DELETE .../future-update/pending-payment`: drop the updates waiting for their payment
    (`PENDING_PAYMENT`); 409 when none waits."""
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        waiting = store.future_updates_of(s, [sub.pk], statuses=("PENDING_PAYMENT",)).get(sub.pk, [])
        if not waiting:
            raise FailedPrecondition(f"subscription '{ref}' has no update waiting for a payment")
        for update in waiting:
            update.schedule_status = "CANCELED"
        announce_update(s, sub, "FUTURE_UPDATE_CANCELED", entitlements=False)
        return sub.ref_id


def refuse_usage_billing(db: Database, env_id: int, ref: str, what: str) -> NoReturn:
    """`usage/charge` and `usage/sync` of a subscription: refused (409). Entitle reports a period's metered
    usage to the provider once, when the provider invoices that period (docs/stripe.md, "Usage reporting");
    charging or sending part of it earlier would bill that part twice or leave the rest unbilled."""
    with db.read() as s:
        store.get(s, env_id, ref)  # 404 for an unknown subscription
    raise FailedPrecondition(
        f"{what} is not supported: the billing provider is sent each period's metered usage once, when it "
        "invoices that period (docs/stripe.md, 'Usage reporting')"
    )


def cancel_future_update(db: Database, env_id: int, ref: str) -> str:
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        pending = store.future_updates_of(s, [sub.pk]).get(sub.pk, [])
        if not pending:
            raise FailedPrecondition(f"subscription '{ref}' has no scheduled update")
        for update in pending:
            update.schedule_status = "CANCELED"
        announce_update(s, sub, "FUTURE_UPDATE_CANCELED", entitlements=False)
        return sub.ref_id
