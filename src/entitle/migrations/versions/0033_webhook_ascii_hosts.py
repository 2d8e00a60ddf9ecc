"""webhooks: endpoint URLs stored with an internationalized host name get its ASCII (IDNA) form

The API now stores a URL's host as it is called (`entitle.webhooks.rules.ascii_url`); this rewrites the
URLs stored as typed before, so the console and the API show what is called. A URL whose host is not
valid IDNA is left as it is: delivery refuses it (and says why in the delivery log).

Revision ID: 0033_webhook_ascii_hosts
Revises: 0032_package_archive_origin
Create Date: 2026-12-05 17:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033_webhook_ascii_hosts"
down_revision: str | Sequence[str] | None = "0032_package_archive_origin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from entitle.webhooks.rules import ascii_url

    conn = op.get_bind()
    for pk, url in conn.execute(sa.text("SELECT pk, url FROM webhook_endpoints")).all():
        if url.isascii():
            continue
        try:
            converted = ascii_url(url)
        except ValueError:
            continue
        conn.execute(sa.text("UPDATE webhook_endpoints SET url = :url WHERE pk = :pk"), {"url": converted, "pk": pk})


def downgrade() -> None:
    """Nothing to undo: the ASCII form names the same host as the one typed."""
