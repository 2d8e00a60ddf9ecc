"""stripe inbound events and payment settlement (issue 4, inbound webhooks)

Revision ID: 0011_stripe_events
Revises: 0010_webhooks
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0011_stripe_events"
down_revision: str | Sequence[str] | None = "0010_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "billing_events",
        sa.Column("integration_pk", _PK, nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("payload", entitle.db.types.JSONDoc(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("processed_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("environment_id", _PK, nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_billing_events_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["integration_pk"],
            ["integrations.pk"],
            name=op.f("fk_billing_events_integration_pk_integrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_billing_events")),
        sa.UniqueConstraint("integration_pk", "event_id", name=op.f("uq_billing_events_integration_pk_event_id")),
    )
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_events_environment_id"), ["environment_id"], unique=False)
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payment_settlement_hours", sa.Integer(), server_default="24", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("payment_settlement_hours")
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_events_environment_id"))
    op.drop_table("billing_events")
