"""stripe inbound events and payment settlement (issue 4, inbound webhooks)

Revision ID: 0011_stripe_events
Revises: 0010_webhooks
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0011_stripe_events"
down_revision: str | Sequence[str] | None = "0010_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
