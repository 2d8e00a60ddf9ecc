"""recurring credits: the subscription and grant period of a RECURRING credit grant (issue 16)

Revision ID: 0027_recurring_credits
Revises: 0026_product_plan_order
Create Date: 2026-12-05 09:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0027_recurring_credits"
down_revision: str | Sequence[str] | None = "0026_product_plan_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credit_grants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("subscription_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.add_column(sa.Column("period_start", entitle.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("recurrence_key", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_credit_grants_subscription_pk"), ["subscription_pk"], unique=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_credit_grants_environment_id_recurrence_key"), ["environment_id", "recurrence_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_grants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_credit_grants_environment_id_recurrence_key"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_credit_grants_subscription_pk"))
        batch_op.drop_column("recurrence_key")
        batch_op.drop_column("period_start")
        batch_op.drop_column("subscription_pk")
