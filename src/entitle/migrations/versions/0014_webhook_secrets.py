"""webhook secrets encrypted at rest (issue 5, webhooks)

Revision ID: 0014_webhook_secrets
Revises: 0013_push
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0014_webhook_secrets"
down_revision: str | Sequence[str] | None = "0013_push"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
