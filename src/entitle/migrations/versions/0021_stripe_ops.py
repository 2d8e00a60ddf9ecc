"""the Stripe account an integration's key opens, and the billing-portal configuration Entitle made there

Revision ID: 0021_stripe_ops
Revises: 0020_billing_info_forgotten
Create Date: 2026-12-05 03:00:00

- `integrations.account_id`, `.account_name`: read from Stripe when connecting (the key is checked then).
- `integrations.portal_configuration_id`: the billing-portal configuration with the recommended settings,
  created on connect and used by every portal session of the integration.
Integrations connected before have NULLs: connecting again (or `POST .../portal-configuration`) fills them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_stripe_ops"
down_revision: str | Sequence[str] | None = "0020_billing_info_forgotten"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("account_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("account_name", sa.Text(), nullable=True))
        batch.add_column(sa.Column("portal_configuration_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("portal_configuration_id")
        batch.drop_column("account_name")
        batch.drop_column("account_id")
