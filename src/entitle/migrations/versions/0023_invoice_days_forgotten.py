"""a subscription's invoiceDaysUntilDue forwarded to the provider and forgotten (issue 13)

Revision ID: 0023_invoice_days_forgotten
Revises: 0022_console_users_audit
Create Date: 2026-12-05 06:00:00

`billingInformation.invoiceDaysUntilDue` is billing information (Stigg's `SubscriptionBillingInfo`, never
returned on a subscription): it goes to the provider subscription and is not kept. Until now it was kept
in `subscriptions.invoice_days_until_due` and re-sent on every update. A subscription already at the
provider has it there. One whose sync job has not reached the provider yet (a start in the future, a
job retrying or dead) gets it into that job's sealed payload (see 0020), so it is not lost; then the
column is dropped. A subscription still in trial has no sync job yet: its value is lost and it converts
with the default (30 days); send `invoiceDaysUntilDue` again on an update once it is paid. Run this
migration with the same key settings as the server and worker (ENTITLE_SECRET_KEY, or the data dir's
secret.key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0023_invoice_days_forgotten"
down_revision: str | Sequence[str] | None = "0022_console_users_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SYNC_SUBSCRIPTION_JOB = "billing.sync_subscription"  # entitle.billing.subscription_sync.SYNC_SUBSCRIPTION_JOB

_subscriptions = sa.table("subscriptions", sa.column("pk"), sa.column("invoice_days_until_due"))
_jobs = sa.table(
    "jobs",
    sa.column("pk"),
    sa.column("kind"),
    sa.column("status"),
    sa.column("payload", entitle.db.types.JSONDoc()),
    sa.column("sealed"),
)


def upgrade() -> None:
    from entitle.jobs.service import seal
    from entitle.secrets import process_box

    bind = op.get_bind()
    s = _subscriptions.c
    days_of = dict(
        bind.execute(sa.select(s.pk, s.invoice_days_until_due).where(s.invoice_days_until_due.is_not(None))).all()
    )
    if days_of:
        j = _jobs.c
        waiting = bind.execute(
            sa.select(j.pk, j.payload, j.sealed).where(
                j.kind == _SYNC_SUBSCRIPTION_JOB, j.status.in_(("PENDING", "RUNNING", "DEAD"))
            )
        ).all()
        for job in waiting:
            payload = json.loads(job.payload) if isinstance(job.payload, str) else dict(job.payload or {})
            days = days_of.get(payload.get("subscriptionPk"))
            if days is None:
                continue
            sealed = json.loads(process_box().decrypt(job.sealed)) if job.sealed else {}
            part = dict(sealed.get("subscription") or {})
            part.setdefault("invoiceDaysUntilDue", int(days))
            bind.execute(_jobs.update().where(j.pk == job.pk).values(sealed=seal({**sealed, "subscription": part})))

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("invoice_days_until_due")


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invoice_days_until_due", sa.Integer(), nullable=True))
