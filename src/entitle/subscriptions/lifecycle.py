"""What happens to a subscription without a request: payment outcomes the billing provider reports, and
the timed events (start, trial end, scheduled end, scheduled updates, an ALL_CUSTOMERS publish) that the
job worker runs. Each job re-reads the state and does nothing if it moved on."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.catalog.packages import store as packages
from entitle.clock import utcnow
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.domain_events import publish
from entitle.errors import FailedPrecondition
from entitle.http.wire import STORED
from entitle.jobs import service as jobs
from entitle.subscriptions import store
from entitle.subscriptions.events import (
    BillingTermsChanged,
    PaymentFailed,
    TrialConverted,
    announce_update,
)
from entitle.subscriptions.models import (
    FutureUpdate,
    Subscription,
)
from entitle.subscriptions.provisioning import downgrade_to_free, end_replaced, provision_in
from entitle.subscriptions.rules import LIVE, OPEN, Event, IllegalTransition, Status, transition
from entitle.subscriptions.schemas import (
    SubscriptionProvision,
)
from entitle.subscriptions.service import SubscriptionView, view_of
from entitle.subscriptions.transitions import (
    JOB_END,
    JOB_FUTURE_UPDATE,
    JOB_START,
    JOB_TRIAL_END,
    end_subscription,
    migrate_now,
    stale_price_override,
)

log = logging.getLogger(__name__)


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
        if event is Event.PAYMENT_SUCCEEDED:
            # It may end the subscription it replaces: the customer is locked first, as provisioning does.
            _lock_customer_of(s, env_id, ref)
        sub = store.get(s, env_id, ref, for_update=True)
        before = sub.status
        try:
            sub.status = transition(sub.status, event).value
        except IllegalTransition as exc:
            raise FailedPrecondition(str(exc)) from exc
        sub.payment_collection = collection
        sub.updated_at = now
        if before == Status.PAYMENT_PENDING and sub.status == Status.ACTIVE:
            end_replaced(s, sub, now)
        announce_update(s, sub, event.value, entitlements=sub.status != before)
        if event is Event.PAYMENT_FAILED:
            publish(s, PaymentFailed(env_id=env_id, sub=sub, details=details))
        return view_of(s, sub, now)


def _lock_customer_of(s: Session, env_id: int, ref: str) -> None:
    owner = (
        select(Subscription.customer_pk)
        .where(Subscription.environment_id == env_id, Subscription.ref_id == ref)
        .scalar_subquery()
    )
    s.execute(select(Customer.pk).where(Customer.pk == owner).with_for_update())


def payment_succeeded(db: Database, env_id: int, ref: str) -> SubscriptionView:
    """The first payment arrived: a PAYMENT_PENDING subscription becomes ACTIVE and grants its entitlements,
    and the subscription it replaces (kept while the payment was pending) ends."""
    return _payment_outcome(db, env_id, ref, Event.PAYMENT_SUCCEEDED, "NOT_REQUIRED")


def payment_failed(db: Database, env_id: int, ref: str, details: Mapping[str, Any] | None = None) -> SubscriptionView:
    """A payment failed: the subscription keeps its status (PAYMENT_PENDING grants nothing) and shows FAILED.

    Receivers get `customer.payment_failed` (with `details`, e.g. the provider's invoice id and reason).
    """
    return _payment_outcome(db, env_id, ref, Event.PAYMENT_FAILED, "FAILED", details)


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
        announce_update(s, sub, "STARTED")


@jobs.register(JOB_TRIAL_END)
def _on_trial_end(db: Database, ctx: jobs.JobContext) -> None:
    now = utcnow()
    with db.transaction() as s:
        sub = store.by_pk(s, int(ctx.payload["subscription"]), for_update=True)
        if sub is None or sub.status != Status.IN_TRIAL or sub.trial_end_date is None or sub.trial_end_date > now:
            return  # already ended, converted, or the trial was extended (a later job handles it)
        if sub.trial_end_behavior == "CANCEL_SUBSCRIPTION" or sub.pricing_type != "PAID":
            end_subscription(s, sub, now, Status.EXPIRED, "TRIAL_ENDED", "TRIAL_EXPIRED")
            downgrade_to_free(s, sub, now)
        else:
            sub.status = transition(sub.status, Event.TRIAL_CONVERTED).value
            sub.cancel_reason = None
            sub.updated_at = now
            announce_update(s, sub, "TRIAL_CONVERTED")
            publish(s, TrialConverted(env_id=sub.environment_id, sub=sub))  # now paid: the provider bills it


@jobs.register(JOB_END)
def _on_end(db: Database, ctx: jobs.JobContext) -> None:
    now = utcnow()
    with db.transaction() as s:
        sub = store.by_pk(s, int(ctx.payload["subscription"]), for_update=True)
        if sub is None or sub.status not in OPEN or sub.end_date is None or sub.end_date > now:
            return  # already ended, or the cancellation was moved or withdrawn
        reason = sub.cancel_reason or "ScheduledCancellation"
        if sub.status == Status.IN_TRIAL and sub.trial_end_behavior == "CANCEL_SUBSCRIPTION":
            end_subscription(s, sub, now, Status.EXPIRED, "TRIAL_ENDED", "TRIAL_EXPIRED")
        else:
            end_subscription(s, sub, now, Status.CANCELED, reason, "EXPIRED")
        if ctx.payload.get("downgrade", True):
            downgrade_to_free(s, sub, now)


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
            stale = stale_price_override(s, sub)
            if stale is not None:
                # A version published after the migration was scheduled lacks a price the deal overrides: the
                # subscription stays on its version, at its price, and the update shows FAILED.
                log.warning("scheduled migration not applied: %s", stale)
                update.schedule_status = "FAILED"
                return
            migrate_now(s, sub)
        if update.schedule_type in ("BILLING_PERIOD", "MIGRATE_TO_LATEST"):
            # At a period's end: nothing to prorate.
            publish(s, BillingTermsChanged(env_id=sub.environment_id, sub=sub, scheduled=True))
        elif update.schedule_type in ("DOWNGRADE", "PLAN"):
            change = SubscriptionProvision.model_validate(update.change, context=STORED)
            end_subscription(s, sub, update.scheduled_at, Status.CANCELED, "UPGRADE_OR_DOWNGRADE")
            update.schedule_status = "DONE"
            provision_in(s, sub.environment_id, change.model_copy(update={"id": None, "start_date": None}))
            return
        update.schedule_status = "DONE"
        sub.updated_at = now
        announce_update(s, sub, "FUTURE_UPDATE_APPLIED")


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
                misfit = stale_price_override(s, sub)
                if misfit is not None:
                    # A deal whose overridden price the new version lacks stays on its version, at its price,
                    # until its priceOverrides change and it is migrated on its own.
                    log.warning("publish migration skipped: %s", misfit)
                    continue
                migrate_now(s, sub)
                sub.updated_at = utcnow()
                announce_update(s, sub, "MIGRATED")
