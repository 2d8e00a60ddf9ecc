"""usage that waits for its owner, incremental meter tallies (issue 11, usage trust)

Revision ID: 0018_usage_trust
Revises: 0017_access_trust
Create Date: 2026-12-05 00:00:00

- `usage_waiting`: what raw events contributed to a feature for a customer id (and resource) no grant
  could count yet; it moves into the customer's current usage window when the customer holds the feature.
- `usage_counters.samples`, `.total`: a meter's tally is kept incrementally (MAX/MIN/AVG need them).
  Existing rows get NULL `samples`: their tally is rebuilt from the window's events when next touched.
- `usage_distinct_values`: the distinct values (sha256) a UNIQUE meter saw, per counter or waiting tally.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0018_usage_trust"
down_revision: str | Sequence[str] | None = "0017_access_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_waiting",
        sa.Column("customer_ref", sa.String(length=255), nullable=False),
        sa.Column("resource_ref", sa.String(length=255), nullable=False),
        sa.Column("feature_ref", sa.String(length=255), nullable=False),
        sa.Column("value", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("total", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=True),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_usage_waiting_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_usage_waiting")),
        sa.UniqueConstraint(
            "environment_id",
            "customer_ref",
            "resource_ref",
            "feature_ref",
            name=op.f("uq_usage_waiting_environment_id_customer_ref_resource_ref_feature_ref"),
        ),
    )
    with op.batch_alter_table("usage_waiting", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_waiting_environment_id"), ["environment_id"], unique=False)

    op.create_table(
        "usage_distinct_values",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("counter_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("waiting_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "(counter_pk IS NULL) <> (waiting_pk IS NULL)", name=op.f("ck_usage_distinct_values_one_owner")
        ),
        sa.ForeignKeyConstraint(
            ["counter_pk"],
            ["usage_counters.pk"],
            name=op.f("fk_usage_distinct_values_counter_pk_usage_counters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["waiting_pk"],
            ["usage_waiting.pk"],
            name=op.f("fk_usage_distinct_values_waiting_pk_usage_waiting"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_usage_distinct_values")),
        sa.UniqueConstraint("counter_pk", "digest", name=op.f("uq_usage_distinct_values_counter_pk_digest")),
        sa.UniqueConstraint("waiting_pk", "digest", name=op.f("uq_usage_distinct_values_waiting_pk_digest")),
    )
    with op.batch_alter_table("usage_counters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("samples", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("total", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_counters", schema=None) as batch_op:
        batch_op.drop_column("total")
        batch_op.drop_column("samples")

    op.drop_table("usage_distinct_values")
    with op.batch_alter_table("usage_waiting", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_waiting_environment_id"))

    op.drop_table("usage_waiting")
