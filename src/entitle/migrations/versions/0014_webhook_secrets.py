"""webhook secrets encrypted at rest (issue 5, webhooks)

Revision ID: 0014_webhook_secrets
Revises: 0013_push
Create Date: 2026-11-22 00:00:00

`webhook_endpoints.secret` (plain) becomes `secret_encrypted` (Fernet, the key of `entitle.secrets`:
ENTITLE_SECRET_KEY, else the data dir's secret.key); existing rows are encrypted in place, so run
this migration with the same key settings as the server and worker. Also adds `webhook_event_marks`,
the keys of events sent once per cause (a usage limit reached in a usage window).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

import entitle.db.types

if TYPE_CHECKING:
    from entitle.secrets import SecretBox

revision: str = "0014_webhook_secrets"
down_revision: str | Sequence[str] | None = "0013_push"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _box() -> SecretBox:
    # `entitle migrate` checks no key at its start (most migrations need none): on PostgreSQL this one
    # refuses a data-dir key here, before it encrypts anything with a key `serve` refuses.
    from entitle.secrets import process_box

    return process_box()


def upgrade() -> None:
    op.create_table(
        "webhook_event_marks",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("environment_id", _PK, nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_webhook_event_marks_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_webhook_event_marks")),
        sa.UniqueConstraint("environment_id", "key", name=op.f("uq_webhook_event_marks_environment_id_key")),
    )
    with op.batch_alter_table("webhook_event_marks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_event_marks_environment_id"), ["environment_id"], unique=False)

    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_encrypted", sa.Text(), nullable=True))

    bind = op.get_bind()
    endpoints = sa.table("webhook_endpoints", sa.column("pk"), sa.column("secret"), sa.column("secret_encrypted"))
    rows = bind.execute(sa.select(endpoints.c.pk, endpoints.c.secret)).all()
    if rows:
        box = _box()
        for pk, secret in rows:
            bind.execute(endpoints.update().where(endpoints.c.pk == pk).values(secret_encrypted=box.encrypt(secret)))

    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("secret_encrypted", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("secret")


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret", sa.Text(), nullable=True))
    bind = op.get_bind()
    endpoints = sa.table("webhook_endpoints", sa.column("pk"), sa.column("secret"), sa.column("secret_encrypted"))
    rows = bind.execute(sa.select(endpoints.c.pk, endpoints.c.secret_encrypted)).all()
    if rows:
        box = _box()
        for pk, token in rows:
            bind.execute(endpoints.update().where(endpoints.c.pk == pk).values(secret=box.decrypt(token)))
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("secret_encrypted")

    with op.batch_alter_table("webhook_event_marks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_event_marks_environment_id"))
    op.drop_table("webhook_event_marks")
