"""Ending subscriptions: canceled by the API (now, at period end or on a date), by archiving their
customer, or by the billing provider (and a provider's cancellation withdrawn)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from entitle.catalog.products.models import Product
from entitle.clock import as_utc, utcnow
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.domain_events import publish
from entitle.errors import FailedPrecondition, InvalidArgument
from entitle.subscriptions import store
from entitle.subscriptions.events import CancellationRequested, announce_update
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.provisioning import downgrade_to_free
from entitle.subscriptions.rules import LIVE, OPEN, Status
from entitle.subscriptions.schemas import (
    SubscriptionCancel,
)
from entitle.subscriptions.service import SubscriptionView, view_of
from entitle.subscriptions.transitions import (
    end_subscription,
    schedule_end,
)


def cancel_subscription(db: Database, env_id: int, ref: str, req: SubscriptionCancel) -> SubscriptionView:
    now = utcnow()
    with db.transaction() as s:
        sub = store.get(s, env_id, ref, for_update=True)
        if sub.status not in OPEN:
            raise FailedPrecondition(f"subscription '{ref}' is already {sub.status}")
        scheduled_before = _scheduled_end(sub)
        product = s.get(Product, sub.product_pk)
        default_time = ((product.product_settings if product else None) or {}).get(
            "subscriptionCancellationTime", "END_OF_BILLING_PERIOD"
        )
        when = req.cancellation_time or default_time
        if req.end_date is not None and when != "SPECIFIC_DATE":
            # Ending at another time than the date sent would surprise whoever sent it: refused, not ignored.
            raise InvalidArgument(f"endDate is used only with cancellationTime SPECIFIC_DATE, not {when}")
        downgrade = req.cancellation_action != "REVOKE_ENTITLEMENTS"
        if when == "SPECIFIC_DATE":
            if req.end_date is None:
                raise InvalidArgument("cancellationTime SPECIFIC_DATE needs endDate")
            schedule_end(s, sub, as_utc(req.end_date), "ScheduledCancellation", now, downgrade=downgrade)
        else:
            end: datetime | None = None
            if when == "END_OF_BILLING_PERIOD" and sub.status in LIVE:
                window = view_of(s, sub, now).billing_window()
                end = sub.trial_end_date if sub.status == Status.IN_TRIAL else (window.end if window else None)
            if end is not None and end > now:
                schedule_end(s, sub, end, "ScheduledCancellation", now, downgrade=downgrade)
            else:
                end_subscription(s, sub, now, Status.CANCELED, "Immediate")
                if downgrade:
                    downgrade_to_free(s, sub, now)
        if sub.status in OPEN and _scheduled_end(sub) != scheduled_before:  # not ended now: the end is scheduled
            # A repeat of the same cancellation (a retried request, a second click) changes nothing: no
            # second `subscription.updated`, which receivers act on (a second "your plan ends" email).
            announce_update(s, sub, "CANCELLATION_SCHEDULED", entitlements=False)
        ends_at = sub.end_date if sub.end_date is not None else now
        publish(s, CancellationRequested(env_id=env_id, sub=sub, ends_at=ends_at, prorate=req.prorate))
        s.flush()
        return view_of(s, sub, now)


def _scheduled_end(sub: Subscription) -> tuple[datetime | None, str | None]:
    return (as_utc(sub.end_date) if sub.end_date is not None else None), sub.cancel_reason


def end_all_for_archived_customer(s: Session, customer: Customer) -> None:
    """Archiving a customer cancels every subscription it has not ended yet (reason CustomerArchived)."""
    now = utcnow()
    for sub in store.of_customer(s, customer.pk, [st.value for st in OPEN], for_update=True):
        end_subscription(s, sub, now, Status.CANCELED, "CustomerArchived")


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
                schedule_end(s, sub, at, reason, now)
                announce_update(s, sub, "CANCELLATION_SCHEDULED", entitlements=False)
        else:
            end_subscription(s, sub, now, Status.CANCELED, reason)
            downgrade_to_free(s, sub, now)
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
        announce_update(s, sub, "CANCELLATION_WITHDRAWN", entitlements=False)
        return view_of(s, sub, now)
