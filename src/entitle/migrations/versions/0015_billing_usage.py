"""usage reporting to the billing provider, coupon and subscription-update sync (issue 4, sync)

Revision ID: 0015_billing_usage
Revises: 0014_webhook_secrets
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0015_billing_usage"
down_revision: str | Sequence[str] | None = "0014_webhook_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "billing_usage_reports",
        sa.Column("integration_pk", _PK, nullable=False),
        sa.Column("subscription_pk", _PK, nullable=False),
        sa.Column("feature_ref", sa.String(length=255), nullable=False),
        sa.Column("period_start", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_end", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("value", entitle.db.types.ExactDecimal(), nullable=False),
        sa.Column("window_start", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cumulative", entitle.db.types.ExactDecimal(), nullable=False),
        sa.Column("meter_billing_id", sa.String(length=255), nullable=False),
        sa.Column("event_name", sa.String(length=255), nullable=False),
        sa.Column("customer_billing_id", sa.String(length=255), nullable=False),
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sent_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("environment_id", _PK, nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_billing_usage_reports_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["integration_pk"],
            ["integrations.pk"],
            name=op.f("fk_billing_usage_reports_integration_pk_integrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_pk"],
            ["subscriptions.pk"],
            name=op.f("fk_billing_usage_reports_subscription_pk_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_billing_usage_reports")),
        sa.UniqueConstraint(
            "integration_pk",
            "subscription_pk",
            "feature_ref",
            "period_start",
            name=op.f("uq_billing_usage_reports_integration_pk_subscription_pk_feature_ref_period_start"),
        ),
        sa.UniqueConstraint(
            "integration_pk", "identifier", name=op.f("uq_billing_usage_reports_integration_pk_identifier")
        ),
    )
    with op.batch_alter_table("billing_usage_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_usage_reports_environment_id"), ["environment_id"], unique=False)
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invoice_days_until_due", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("invoice_days_until_due")
    with op.batch_alter_table("billing_usage_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_usage_reports_environment_id"))
    op.drop_table("billing_usage_reports")
