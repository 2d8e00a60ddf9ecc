"""packages: the status a version had when its product's archive archived it

Unarchiving a product restores its plans and add-ons to that status, and leaves archived those archived
on their own. Versions archived before this column existed keep NULL: which archive archived them cannot
be told now, so unarchiving their product leaves them archived, as it did.

Revision ID: 0032_package_archive_origin
Revises: 0031_overview_time_index
Create Date: 2026-12-05 17:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032_package_archive_origin"
down_revision: str | Sequence[str] | None = "0031_overview_time_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("packages") as batch:
        batch.add_column(sa.Column("archived_from_status", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("packages") as batch:
        batch.drop_column("archived_from_status")
