"""customer tokens, allowed origins and key bookkeeping

Revision ID: 0017_access_trust
Revises: 0016_integrations_multi
Create Date: 2026-12-01 10:00:00

- `environments`: `customer_tokens_required` (on for every environment, existing ones too: a client key
  alone no longer reads a customer's data), `allowed_origins` (CORS, none), the customer-token signing
  secret (encrypted) and the previous one with the end of its grace period.
- `api_keys`: `last_used_at`; `prefix` widens to hold the kind, the environment name and 8 characters
  of the key, so a list tells keys apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0017_access_trust"
down_revision: str | Sequence[str] | None = "0016_integrations_multi"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("customer_tokens_required", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("allowed_origins", entitle.db.types.JSONDoc(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(sa.Column("signing_secret_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("signing_secret_created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("previous_signing_secret_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("previous_signing_secret_expires_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.alter_column(
            "prefix", existing_type=sa.String(length=24), type_=sa.String(length=96), existing_nullable=False
        )


def downgrade() -> None:
    op.execute("UPDATE api_keys SET prefix = substr(prefix, 1, 24)")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "prefix", existing_type=sa.String(length=96), type_=sa.String(length=24), existing_nullable=False
        )
        batch_op.drop_column("last_used_at")
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_column("previous_signing_secret_expires_at")
        batch_op.drop_column("previous_signing_secret_encrypted")
        batch_op.drop_column("signing_secret_created_at")
        batch_op.drop_column("signing_secret_encrypted")
        batch_op.drop_column("allowed_origins")
        batch_op.drop_column("customer_tokens_required")
