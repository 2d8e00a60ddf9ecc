"""customers: an index on (environment, lower(email)) for the email filter

`GET /api/v1/customers?email=` matches an address in any case (`lower(email) = lower(:email)`), which
no index served: every lookup read all of the environment's customers. An index on the expression
itself serves it on both databases (each folds case its own way, the same way in the index and in the
query).

Revision ID: 0036_customers_email_index
Revises: 0035_events_environment_index
Create Date: 2026-12-06 11:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0036_customers_email_index"
down_revision: str | Sequence[str] | None = "0035_events_environment_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_customers_env_email", "customers", ["environment_id", sa.text("lower(email)")], unique=False)


def downgrade() -> None:
    op.drop_index("ix_customers_env_email", table_name="customers")
