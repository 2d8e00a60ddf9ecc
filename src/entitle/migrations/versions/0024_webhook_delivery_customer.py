"""the customer a webhook delivery is about, for the console's customer page (issue 14)

Revision ID: 0024_webhook_delivery_customer
Revises: 0023_invoice_days_forgotten
Create Date: 2026-12-05 06:20:00

- `webhook_deliveries.customer_ref`: the event's `data.customerId` (NULL for an event about no
  customer), indexed with the environment so one customer's log is read without a scan.
Attempts logged before are filled from their delivery job's event where that job is still stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0024_webhook_delivery_customer"
down_revision: str | Sequence[str] | None = "0023_invoice_days_forgotten"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("customer_ref", sa.String(length=255), nullable=True))
        batch.create_index("ix_webhook_deliveries_customer", ["environment_id", "customer_ref", "pk"])
    deliveries = sa.table(
        "webhook_deliveries", sa.column("pk", sa.Integer()), sa.column("job_pk"), sa.column("customer_ref")
    )
    jobs = sa.table("jobs", sa.column("pk", sa.Integer()), sa.column("payload", entitle.db.types.JSONDoc()))
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.select(deliveries.c.pk, jobs.c.payload)
            .join(jobs, jobs.c.pk == deliveries.c.job_pk)
            .where(deliveries.c.pk > after)
            .order_by(deliveries.c.pk)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for pk, payload in rows:
            ref = ((payload or {}).get("event") or {}).get("data", {}).get("customerId")
            if isinstance(ref, str) and ref:
                conn.execute(sa.update(deliveries).where(deliveries.c.pk == pk).values(customer_ref=ref[:255]))
        after = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_index("ix_webhook_deliveries_customer")
        batch.drop_column("customer_ref")
