"""The steps every subscription use case shares: ending a subscription, scheduling an end or an update
for later (a durable job each), replacing its add-ons, charges and overrides, moving it to the latest
plan version."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import ADDON, ARCHIVED, PLAN, Package
from entitle.errors import FailedPrecondition, InvalidArgument
from entitle.jobs import service as jobs
from entitle.subscriptions import store
from entitle.subscriptions.events import (
    EndOutcome,
    announce_end,
)
from entitle.subscriptions.models import (
    FutureUpdate,
    Subscription,
    SubscriptionAddon,
    SubscriptionCharge,
    SubscriptionEntitlement,
)
from entitle.subscriptions.preview import checked_overrides
from entitle.subscriptions.rules import Event, IllegalTransition, Status, transition
from entitle.subscriptions.schemas import (
    ChargeQuantity,
    EntitlementOverride,
    PriceOverride,
)
from entitle.subscriptions.validation import latest_package

JOB_START = "subscription.start"
JOB_TRIAL_END = "subscription.trial_end"
JOB_END = "subscription.end"
JOB_FUTURE_UPDATE = "subscription.future_update"


def schedule_update(
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


def schedule_trial_end(s: Session, sub: Subscription) -> None:
    """A job at `sub.trial_end_date` (one per end date: moving the trial leaves the old job to find
    nothing to do); a trial that cancels at its end sets the subscription's end date with it."""
    assert sub.trial_end_date is not None
    if sub.trial_end_behavior == "CANCEL_SUBSCRIPTION":
        sub.end_date = sub.trial_end_date
    jobs.enqueue(
        s,
        sub.environment_id,
        JOB_TRIAL_END,
        {"subscription": sub.pk},
        run_at=sub.trial_end_date,
        dedupe_key=f"trial-end:{sub.pk}:{sub.trial_end_date.isoformat()}",
    )


def schedule_end(
    s: Session, sub: Subscription, at: datetime, reason: str, now: datetime, *, downgrade: bool = True
) -> None:
    """End `sub` at `at`; then move its customer to the product's free plan unless `downgrade` is False
    (a cancellation with cancellationAction REVOKE_ENTITLEMENTS)."""
    if at <= now:
        raise InvalidArgument("the cancellation date must be in the future")
    sub.end_date = at
    sub.cancellation_date = at
    sub.cancel_reason = reason
    payload: dict[str, Any] = {"subscription": sub.pk} if downgrade else {"subscription": sub.pk, "downgrade": False}
    job = jobs.enqueue(s, sub.environment_id, JOB_END, payload, run_at=at, dedupe_key=f"end:{sub.pk}:{at.isoformat()}")
    job.payload = payload  # a cancellation repeated for the same instant: the latest says what follows it


def end_subscription(
    s: Session, sub: Subscription, now: datetime, status: Status, reason: str, outcome: EndOutcome = "CANCELED"
) -> None:
    """End the subscription; `outcome` is what `SubscriptionEnded` says (canceled, expired or trial expired)."""
    event = Event.TRIAL_ENDED if status is Status.EXPIRED else Event.CANCEL
    try:
        sub.status = transition(sub.status, event).value
    except IllegalTransition as exc:
        raise FailedPrecondition(str(exc)) from exc
    sub.end_date = now
    sub.cancellation_date = sub.cancellation_date if sub.cancellation_date and sub.cancellation_date <= now else now
    sub.cancel_reason = reason
    sub.updated_at = now
    announce_end(s, sub, outcome)  # the billing adapter cancels the provider subscription, if there is one
    for update in store.future_updates_of(s, [sub.pk]).get(sub.pk, []):
        update.schedule_status = "CANCELED"


def replace_addons(s: Session, sub: Subscription, addons: list[tuple[Package, int]]) -> None:
    for row in store.addons_of(s, [sub.pk]).get(sub.pk, []):
        s.delete(row)
    s.flush()
    add_addons(s, sub, addons)


def add_addons(s: Session, sub: Subscription, addons: list[tuple[Package, int]]) -> None:
    """To a new subscription (nothing to replace)."""
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


def replace_charges(s: Session, sub: Subscription, items: list[ChargeQuantity]) -> None:
    for row in store.charges_of(s, [sub.pk]).get(sub.pk, []):
        s.delete(row)
    s.flush()
    add_charges(s, sub, items)


def add_charges(s: Session, sub: Subscription, items: list[ChargeQuantity]) -> None:
    """To a new subscription (nothing to replace)."""
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


def replace_overrides(s: Session, sub: Subscription, items: list[EntitlementOverride]) -> None:
    for row in store.overrides_of(s, [sub.pk]).get(sub.pk, []):
        s.delete(row)
    s.flush()
    add_overrides(s, sub, items)


def add_overrides(s: Session, sub: Subscription, items: list[EntitlementOverride]) -> None:
    """To a new subscription (nothing to replace)."""
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


def stale_price_override(s: Session, sub: Subscription) -> str | None:
    """Why the subscription's price overrides do not fit the latest versions of its plan and add-ons (an
    override of a price the new version no longer has, or has in another currency or as tiers), or None.
    A migration never drops one: the deal's price would silently become the list price."""
    if not sub.price_overrides:
        return None
    plan = latest_package(s, sub.environment_id, PLAN, sub.plan_ref)
    held: list[tuple[Package, int]] = []
    for row in store.addons_of(s, [sub.pk]).get(sub.pk, []):
        latest = packages.latest_published(s, sub.environment_id, ADDON, row.addon_ref)
        addon = latest if latest is not None and latest.status != ARCHIVED else s.get(Package, row.addon_pk)
        if addon is not None:
            held.append((addon, row.quantity))
    kept = [PriceOverride.model_validate(entry) for entry in sub.price_overrides]
    try:
        checked_overrides(s, plan, held, sub.billing_period, sub.billing_country_code, kept)
    except InvalidArgument as exc:
        return (
            f"subscription '{sub.ref_id}' cannot move to version {plan.version_number} of plan '{plan.ref_id}': "
            f"{exc.message}; change its priceOverrides first"
        )
    return None


def migrate_now(s: Session, sub: Subscription) -> None:
    """Move to the latest versions of the plan and add-ons; 409 when a price override would not fit them."""
    stale = stale_price_override(s, sub)
    if stale is not None:
        raise FailedPrecondition(stale)
    plan = latest_package(s, sub.environment_id, PLAN, sub.plan_ref)
    sub.plan_pk = plan.pk
    sub.pricing_type = plan.pricing_type or sub.pricing_type
    for row in store.addons_of(s, [sub.pk]).get(sub.pk, []):
        latest = packages.latest_published(s, sub.environment_id, ADDON, row.addon_ref)
        if latest is not None and latest.status != ARCHIVED:
            row.addon_pk = latest.pk
