"""usage reporting to the billing provider, coupon and subscription-update sync (issue 4, sync)

Revision ID: 0015_billing_usage
Revises: 0014_webhook_secrets
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0015_billing_usage"
down_revision: str | Sequence[str] | None = "0014_webhook_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
