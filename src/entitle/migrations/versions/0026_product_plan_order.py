"""products: the display order of their plans on pricing pages (issue 14)

Revision ID: 0026_product_plan_order
Revises: 0025_credits
Create Date: 2026-12-05 08:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0026_product_plan_order"
down_revision: str | Sequence[str] | None = "0025_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: existing products have no chosen order, and their pricing pages keep today's order.
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("plan_order", entitle.db.types.JSONDoc(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_column("plan_order")
