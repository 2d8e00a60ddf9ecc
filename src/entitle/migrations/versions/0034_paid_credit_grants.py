"""credits: paid grants collected through the billing provider (an invoice per grant)

A PAID grant with `paymentCollectionMethod` INVOICE waits in PAYMENT_PENDING (no ledger entry, no
balance) until its invoice is paid. The grant keeps its payment collection state, the provider's invoice
id and what the answer shows of that invoice (`latestInvoice`), and the invoicing terms the job needs
(days until due, paid out of band). Existing grants collected nothing: NOT_REQUIRED.

Revision ID: 0034_paid_credit_grants
Revises: 0033_webhook_ascii_hosts
Create Date: 2026-12-06 07:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0034_paid_credit_grants"
down_revision: str | Sequence[str] | None = "0033_webhook_ascii_hosts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credit_grants") as batch:
        batch.add_column(sa.Column("payment_collection", sa.String(24), nullable=False, server_default="NOT_REQUIRED"))
        batch.add_column(sa.Column("invoice_ref", sa.String(255), nullable=True))
        batch.add_column(sa.Column("latest_invoice", entitle.db.types.JSONDoc(), nullable=True))
        batch.add_column(sa.Column("collection_terms", entitle.db.types.JSONDoc(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credit_grants") as batch:
        batch.drop_column("collection_terms")
        batch.drop_column("latest_invoice")
        batch.drop_column("invoice_ref")
        batch.drop_column("payment_collection")
