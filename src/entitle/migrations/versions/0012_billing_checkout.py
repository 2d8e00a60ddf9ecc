"""checkout sessions, portal, invoices and Stripe Tax (issue 4, checkout)

Revision ID: 0012_billing_checkout
Revises: 0011_stripe_events
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from entitle.db.types import UTCDateTime

revision: str = "0012_billing_checkout"
down_revision: str | Sequence[str] | None = "0011_stripe_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Removing an integration keeps its row (and so its billing links) with the time of removal.
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("removed_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("removed_at")
