"""console overview: (environment, time) indexes for its per-day charts

The overview counts new subscriptions, usage reports, events and paid credit grants per day over the
last 30 days of one environment. With only the environment's own index each count read every row the
environment ever had; these indexes let it read the 30 days it shows (and, for the counts, only the
index: it holds both columns the query reads).

Revision ID: 0031_overview_time_index
Revises: 0030_subscription_sales_fields
Create Date: 2026-12-05 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0031_overview_time_index"
down_revision: str | Sequence[str] | None = "0030_subscription_sales_fields"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_subscriptions_env_created", "subscriptions", ["environment_id", "created_at"]),
    ("ix_usage_records_env_time", "usage_records", ["environment_id", "timestamp"]),
    ("ix_events_env_time", "events", ["environment_id", "timestamp"]),
    ("ix_credit_grants_env_created", "credit_grants", ["environment_id", "created_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
