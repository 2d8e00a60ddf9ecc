"""contracts: one customer's sales-led subscriptions, grouped under the caller's contract id (issue 17)

Revision ID: 0029_contracts
Revises: 0028_integration_publishable_key
Create Date: 2026-12-05 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0029_contracts"
down_revision: str | Sequence[str] | None = "0028_integration_publishable_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "contracts",
        sa.Column("ref_id", sa.String(length=255), nullable=False),
        sa.Column("customer_pk", _FK, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("po_number", sa.Text(), nullable=True),
        sa.Column("activation_start_date", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("activation_end_date", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("archived_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_pk"], ["customers.pk"], name=op.f("fk_contracts_customer_pk_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_contracts_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_contracts")),
        sa.UniqueConstraint("environment_id", "ref_id", name=op.f("uq_contracts_environment_id_ref_id")),
    )
    op.create_index(op.f("ix_contracts_customer_pk"), "contracts", ["customer_pk"], unique=False)
    op.create_index(op.f("ix_contracts_environment_id"), "contracts", ["environment_id"], unique=False)
    op.create_table(
        "contract_subscriptions",
        sa.Column("contract_pk", _FK, nullable=False),
        sa.Column("subscription_pk", _FK, nullable=False),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_pk"],
            ["contracts.pk"],
            name=op.f("fk_contract_subscriptions_contract_pk_contracts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_pk"],
            ["subscriptions.pk"],
            name=op.f("fk_contract_subscriptions_subscription_pk_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_contract_subscriptions_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_contract_subscriptions")),
        sa.UniqueConstraint("subscription_pk", name=op.f("uq_contract_subscriptions_subscription_pk")),
    )
    op.create_index(
        op.f("ix_contract_subscriptions_contract_pk"), "contract_subscriptions", ["contract_pk"], unique=False
    )
    op.create_index(
        op.f("ix_contract_subscriptions_environment_id"), "contract_subscriptions", ["environment_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("contract_subscriptions")
    op.drop_table("contracts")
