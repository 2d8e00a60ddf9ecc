"""entitlement change log for real-time push (issue 5, stream)

Revision ID: 0013_push
Revises: 0012_billing_checkout
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0013_push"
down_revision: str | Sequence[str] | None = "0012_billing_checkout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("customer_ref", sa.String(length=255), nullable=False),
        sa.Column("resource_ref", sa.String(length=255), nullable=True),
        sa.Column("data", entitle.db.types.JSONDoc(), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_push_events_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("push_events", schema=None) as batch_op:
        batch_op.create_index("ix_push_events_env_id", ["environment_id", "id"], unique=False)
        batch_op.create_index("ix_push_events_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("push_events", schema=None) as batch_op:
        batch_op.drop_index("ix_push_events_created_at")
        batch_op.drop_index("ix_push_events_env_id")
    op.drop_table("push_events")
