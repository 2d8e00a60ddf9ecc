"""subscriptions: price overrides of sales-led deals (issue 17)

Revision ID: 0030_subscription_sales_fields
Revises: 0029_contracts
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0030_subscription_sales_fields"
down_revision: str | Sequence[str] | None = "0029_contracts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("price_overrides", entitle.db.types.JSONDoc(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("price_overrides")
