"""several billing integrations per environment and vendor; sync states looked up per entity

Revision ID: 0016_integrations_multi
Revises: 0015_billing_usage
Create Date: 2026-11-28 20:45:00

- `integrations`: the unique (environment_id, vendor) is dropped (two Stripe accounts may be connected to
  one environment); `is_default` marks the environment's default integration explicitly;
  `secret_key_digest` (sha256 of the secret key) lets a connection without an id find the integration of
  the same key again (also after a removal, when the key itself is erased).
- `billing_links`: an index on (entity_kind, entity_pk) for the sync states of a customer or subscription
  across integrations.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_integrations_multi"
down_revision: str | Sequence[str] | None = "0015_billing_usage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_integrations_environment_id_vendor", type_="unique")
        batch_op.add_column(sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("secret_key_digest", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_integrations_environment_id_vendor", ["environment_id", "vendor"], unique=False)
    with op.batch_alter_table("billing_links", schema=None) as batch_op:
        batch_op.create_index("ix_billing_links_entity", ["entity_kind", "entity_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("billing_links", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_links_entity")
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_index("ix_integrations_environment_id_vendor")
        batch_op.drop_column("secret_key_digest")
        batch_op.drop_column("is_default")
        batch_op.create_unique_constraint("uq_integrations_environment_id_vendor", ["environment_id", "vendor"])
