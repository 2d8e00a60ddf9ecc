"""the Stripe publishable key of an integration, for the widgets' card field (issue 15)

Revision ID: 0028_integration_publishable_key
Revises: 0027_recurring_credits
Create Date: 2026-12-05 09:40:00

- `integrations.publishable_key`: the account's publishable key (pk_test_/pk_live_, not a secret: Stripe.js
  runs with it in every customer's browser), set with the integration and handed to the widgets with the
  SetupIntent, so a page need not carry it. NULL until it is set.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028_integration_publishable_key"
down_revision: str | Sequence[str] | None = "0027_recurring_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("publishable_key", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("publishable_key")
