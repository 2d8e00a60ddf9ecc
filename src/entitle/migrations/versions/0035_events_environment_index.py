"""events: drop the index on environment_id alone

Every other index of `events` begins with `environment_id` (the idempotency keys' unique index, the
customer's time index, the environment's time index), so any lookup by the environment alone, the
cascade of an environment's deletion among them, is served by one of those. The fourth index only cost
every ingested event another index entry: about a tenth of inserting a batch of 1,000.

Revision ID: 0035_events_environment_index
Revises: 0034_paid_credit_grants
Create Date: 2026-12-06 11:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0035_events_environment_index"
down_revision: str | Sequence[str] | None = "0034_paid_credit_grants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_events_environment_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_environment_id", "events", ["environment_id"], unique=False)
