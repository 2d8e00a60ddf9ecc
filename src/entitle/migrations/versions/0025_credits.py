"""credits: custom currencies, wallets, grants, the ledger, consumptions and reservations (issue 16)

Revision ID: 0025_credits
Revises: 0024_webhook_delivery_customer
Create Date: 2026-12-05 05:57:22.135341
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0025_credits"
down_revision: str | Sequence[str] | None = "0024_webhook_delivery_customer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credit_currencies",
        sa.Column("ref_id", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("unit_singular", sa.Text(), nullable=True),
        sa.Column("unit_plural", sa.Text(), nullable=True),
        sa.Column("metadata", entitle.db.types.JSONDoc(), nullable=False),
        sa.Column("archived_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_credit_currencies_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_credit_currencies")),
        sa.UniqueConstraint("environment_id", "ref_id", name=op.f("uq_credit_currencies_environment_id_ref_id")),
    )
    with op.batch_alter_table("credit_currencies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_currencies_environment_id"), ["environment_id"], unique=False)

    op.create_table(
        "credit_wallets",
        sa.Column("customer_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("currency_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("resource_ref", sa.String(length=255), nullable=False),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["currency_pk"],
            ["credit_currencies.pk"],
            name=op.f("fk_credit_wallets_currency_pk_credit_currencies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_pk"], ["customers.pk"], name=op.f("fk_credit_wallets_customer_pk_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_credit_wallets_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_credit_wallets")),
        sa.UniqueConstraint(
            "customer_pk",
            "currency_pk",
            "resource_ref",
            name=op.f("uq_credit_wallets_customer_pk_currency_pk_resource_ref"),
        ),
    )
    with op.batch_alter_table("credit_wallets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_wallets_environment_id"), ["environment_id"], unique=False)

    op.create_table(
        "credit_consumptions",
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("wallet_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=False),
        sa.Column("timestamp", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("feature_ref", sa.String(length=255), nullable=True),
        sa.Column("dimensions", entitle.db.types.JSONDoc(), nullable=True),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_credit_consumptions_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["wallet_pk"],
            ["credit_wallets.pk"],
            name=op.f("fk_credit_consumptions_wallet_pk_credit_wallets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_credit_consumptions")),
        sa.UniqueConstraint(
            "environment_id", "idempotency_key", name=op.f("uq_credit_consumptions_environment_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("credit_consumptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_consumptions_environment_id"), ["environment_id"], unique=False)

    op.create_table(
        "credit_grants",
        sa.Column("ref_id", sa.String(length=64), nullable=False),
        sa.Column("wallet_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("grant_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=False),
        sa.Column("consumed", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=False),
        sa.Column("reserved", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("effective_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expire_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("voided_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("metadata", entitle.db.types.JSONDoc(), nullable=False),
        sa.Column("cost_amount", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=False),
        sa.Column("cost_currency", sa.String(length=8), nullable=False),
        sa.Column("payment_collection_method", sa.String(length=16), nullable=False),
        sa.Column("source_type", sa.String(length=32), nullable=True),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_credit_grants_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["wallet_pk"],
            ["credit_wallets.pk"],
            name=op.f("fk_credit_grants_wallet_pk_credit_wallets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_credit_grants")),
        sa.UniqueConstraint("environment_id", "ref_id", name=op.f("uq_credit_grants_environment_id_ref_id")),
    )
    with op.batch_alter_table("credit_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_grants_environment_id"), ["environment_id"], unique=False)
        batch_op.create_index("ix_credit_grants_wallet_status", ["wallet_pk", "status"], unique=False)

    op.create_table(
        "credit_reservations",
        sa.Column("ref_id", sa.String(length=255), nullable=False),
        sa.Column("wallet_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=False),
        sa.Column("expires_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("consumed_amount", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=True),
        sa.Column("released_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("holds", entitle.db.types.JSONDoc(), nullable=False),
        sa.Column("metadata", entitle.db.types.JSONDoc(), nullable=False),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_credit_reservations_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["wallet_pk"],
            ["credit_wallets.pk"],
            name=op.f("fk_credit_reservations_wallet_pk_credit_wallets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_credit_reservations")),
        sa.UniqueConstraint("environment_id", "ref_id", name=op.f("uq_credit_reservations_environment_id_ref_id")),
    )
    with op.batch_alter_table("credit_reservations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_reservations_environment_id"), ["environment_id"], unique=False)

    op.create_table(
        "credit_ledger",
        sa.Column("wallet_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("grant_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_type", sa.String(length=48), nullable=False),
        sa.Column("amount", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=False),
        sa.Column("timestamp", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("feature_ref", sa.String(length=255), nullable=True),
        sa.Column("reservation_ref", sa.String(length=255), nullable=True),
        sa.Column("hold_returned_amount", entitle.db.types.ExactDecimal(precision=38, scale=12), nullable=True),
        sa.Column("metadata", entitle.db.types.JSONDoc(), nullable=True),
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.pk"],
            name=op.f("fk_credit_ledger_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["grant_pk"], ["credit_grants.pk"], name=op.f("fk_credit_ledger_grant_pk_credit_grants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["wallet_pk"],
            ["credit_wallets.pk"],
            name=op.f("fk_credit_ledger_wallet_pk_credit_wallets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_credit_ledger")),
    )
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_ledger_environment_id"), ["environment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_ledger_grant_pk"), ["grant_pk"], unique=False)
        batch_op.create_index("ix_credit_ledger_wallet", ["wallet_pk", "pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_ledger_wallet")
        batch_op.drop_index(batch_op.f("ix_credit_ledger_grant_pk"))
        batch_op.drop_index(batch_op.f("ix_credit_ledger_environment_id"))

    op.drop_table("credit_ledger")
    with op.batch_alter_table("credit_reservations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_reservations_environment_id"))

    op.drop_table("credit_reservations")
    with op.batch_alter_table("credit_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_grants_wallet_status")
        batch_op.drop_index(batch_op.f("ix_credit_grants_environment_id"))

    op.drop_table("credit_grants")
    with op.batch_alter_table("credit_consumptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_consumptions_environment_id"))

    op.drop_table("credit_consumptions")
    with op.batch_alter_table("credit_wallets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_wallets_environment_id"))

    op.drop_table("credit_wallets")
    with op.batch_alter_table("credit_currencies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_currencies_environment_id"))

    op.drop_table("credit_currencies")
