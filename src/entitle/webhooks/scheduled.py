"""Timed events: each job re-reads the state when it runs and emits only if its cause still holds."""

from __future__ import annotations

from datetime import datetime

from entitle.clock import utcnow
from entitle.db import Database
from entitle.jobs.service import JobContext, register
from entitle.subscriptions.models import Subscription
from entitle.webhooks import emit
from entitle.webhooks.models import JOB_TRIAL_ENDS_SOON


@register(JOB_TRIAL_ENDS_SOON)
def _trial_ends_soon(db: Database, ctx: JobContext) -> None:
    trial_end = datetime.fromisoformat(ctx.payload["trialEnd"])
    with db.transaction() as s:
        sub = s.get(Subscription, int(ctx.payload["subscription"]))
        # Converted, canceled or moved since: the trial this job was for no longer ends then.
        if sub is None or sub.status != "IN_TRIAL" or sub.trial_end_date != trial_end or trial_end <= utcnow():
            return
        emit.trial_ends_soon(s, sub)
