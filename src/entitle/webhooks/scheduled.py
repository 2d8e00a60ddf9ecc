"""Timed events: each job re-reads the state when it runs and emits only if its cause still holds."""

from __future__ import annotations

from datetime import datetime

from entitle.clock import utcnow
from entitle.db import Database
from entitle.jobs.service import JobContext, register
from entitle.webhooks import emit
from entitle.webhooks.models import JOB_PROMOTION_EXPIRED, JOB_TRIAL_ENDS_SOON


@register(JOB_TRIAL_ENDS_SOON)
def _trial_ends_soon(db: Database, ctx: JobContext) -> None:
    from entitle.subscriptions.models import Subscription

    trial_end = datetime.fromisoformat(ctx.payload["trialEnd"])
    with db.transaction() as s:
        sub = s.get(Subscription, int(ctx.payload["subscription"]))
        # Converted, canceled or moved since: the trial this job was for no longer ends then.
        if sub is None or sub.status != "IN_TRIAL" or sub.trial_end_date != trial_end or trial_end <= utcnow():
            return
        emit.trial_ends_soon(s, sub)


@register(JOB_PROMOTION_EXPIRED)
def _promotion_expired(db: Database, ctx: JobContext) -> None:
    from entitle.customers.models import Customer
    from entitle.promotions.models import PromotionalEntitlement

    end = datetime.fromisoformat(ctx.payload["endDate"])
    with db.transaction() as s:
        row = s.get(PromotionalEntitlement, int(ctx.payload["promotion"]))
        # Revoked, or granted again with another end, since: that grant's own job speaks for it.
        if row is None or row.end_date != end or end > utcnow():
            return
        customer = s.get(Customer, row.customer_pk)
        if customer is None:
            return
        emit.promotion_expired(s, row.environment_id, customer.ref_id, row)
