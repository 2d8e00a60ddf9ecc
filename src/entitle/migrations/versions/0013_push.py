"""entitlement change log for real-time push (issue 5, stream)

Revision ID: 0013_push
Revises: 0012_billing_checkout
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0013_push"
down_revision: str | Sequence[str] | None = "0012_billing_checkout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
