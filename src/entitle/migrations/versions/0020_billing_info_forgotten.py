"""billing information forwarded to the provider and forgotten (issue 13)

Revision ID: 0020_billing_info_forgotten
Revises: 0018_usage_trust
Create Date: 2026-12-05 00:00:00

- `jobs.sealed`: what a job carries but Entitle must not keep in clear (billing information on its way to
  the provider), encrypted with `entitle.secrets`; erased when the job succeeds or is discarded.
- `customers.passthrough` (billing addresses, tax ids, invoice name... kept in plaintext until now) is
  first forwarded: each live customer holding some gets a `billing.sync_customer` job carrying it sealed,
  to the integration billing the customer (as `entitle.billing.store.customer_binding` chooses it) when
  that integration syncs customers. Its payment method id becomes the customer's `defaultPaymentMethod`
  when it has none. Then the column is dropped, so the plaintext is erased everywhere: a customer with
  no integration to forward to loses it (Entitle never sent it anywhere). Run this migration with the
  same key settings as the server and worker (ENTITLE_SECRET_KEY, or the data dir's secret.key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0020_billing_info_forgotten"
down_revision: str | Sequence[str] | None = "0018_usage_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SYNC_CUSTOMER_JOB = "billing.sync_customer"  # entitle.billing.customer_sync.SYNC_CUSTOMER_JOB

_customers = sa.table(
    "customers",
    sa.column("pk"),
    sa.column("environment_id"),
    sa.column("archived_at"),
    sa.column("passthrough", entitle.db.types.JSONDoc()),
    sa.column("default_payment_method", entitle.db.types.JSONDoc()),
)
_integrations = sa.table(
    "integrations",
    sa.column("pk"),
    sa.column("environment_id"),
    sa.column("ref_id"),
    sa.column("vendor"),
    sa.column("is_default"),
    sa.column("sync_customers"),
    sa.column("removed_at"),
)
_customer_integrations = sa.table(
    "customer_integrations",
    sa.column("pk"),
    sa.column("customer_pk"),
    sa.column("integration_id"),
    sa.column("vendor_identifier"),
)
_billing_links = sa.table(
    "billing_links",
    sa.column("pk"),
    sa.column("environment_id"),
    sa.column("integration_pk"),
    sa.column("entity_kind"),
    sa.column("entity_pk"),
    sa.column("sync_state"),
    sa.column("reason"),
    sa.column("details", entitle.db.types.JSONDoc()),
    sa.column("created_at", entitle.db.types.UTCDateTime()),
    sa.column("updated_at", entitle.db.types.UTCDateTime()),
)
_jobs = sa.table(
    "jobs",
    sa.column("environment_id"),
    sa.column("kind"),
    sa.column("payload", entitle.db.types.JSONDoc()),
    sa.column("ordering_key"),
    sa.column("status"),
    sa.column("attempts"),
    sa.column("max_attempts"),
    sa.column("run_at", entitle.db.types.UTCDateTime()),
    sa.column("sealed"),
    sa.column("created_at", entitle.db.types.UTCDateTime()),
    sa.column("updated_at", entitle.db.types.UTCDateTime()),
)


def _integration_for(bind: sa.Connection, env_id: int, customer_pk: int) -> Any | None:
    """The integration billing the customer (None: none can, or only a removed one holds it), in the
    order of `customer_binding`: its STRIPE link, else an integration already holding it, else the default."""
    i = _integrations.c
    named = bind.execute(
        sa.select(_integrations)
        .join(_customer_integrations, _customer_integrations.c.integration_id == i.ref_id)
        .where(
            _customer_integrations.c.customer_pk == customer_pk,
            _customer_integrations.c.vendor_identifier == "STRIPE",
            i.environment_id == env_id,
            i.vendor == "STRIPE",
        )
        .order_by(_customer_integrations.c.pk)
    ).first()
    if named is not None:
        return named if named.removed_at is None else None
    holding = bind.execute(
        sa.select(_integrations)
        .join(_billing_links, _billing_links.c.integration_pk == i.pk)
        .where(
            _billing_links.c.entity_kind == "CUSTOMER",
            _billing_links.c.entity_pk == customer_pk,
            _billing_links.c.sync_state.in_(("PENDING", "SUCCESS", "ERROR")),
            i.vendor == "STRIPE",
        )
        .order_by(i.removed_at.is_not(None), i.pk)
    ).first()
    if holding is not None:
        return holding if holding.removed_at is None else None
    return bind.execute(
        sa.select(_integrations)
        .where(i.environment_id == env_id, i.vendor == "STRIPE", i.removed_at.is_(None))
        .order_by(i.is_default.desc(), i.pk)
    ).first()


def _forward(bind: sa.Connection, customer: Any, details: dict[str, Any], now: Any) -> None:
    from entitle.jobs.service import seal

    integration = _integration_for(bind, customer.environment_id, customer.pk)
    if integration is None or not integration.sync_customers:
        return
    link = _billing_links.c
    where = (link.integration_pk == integration.pk) & (link.entity_kind == "CUSTOMER") & (link.entity_pk == customer.pk)
    if bind.execute(sa.select(link.pk).where(where)).first() is None:
        bind.execute(
            _billing_links.insert().values(
                environment_id=customer.environment_id,
                integration_pk=integration.pk,
                entity_kind="CUSTOMER",
                entity_pk=customer.pk,
                sync_state="PENDING",
                details={},
                created_at=now,
                updated_at=now,
            )
        )
    else:
        bind.execute(_billing_links.update().where(where).values(sync_state="PENDING", reason=None, updated_at=now))
    bind.execute(
        _jobs.insert().values(
            environment_id=customer.environment_id,
            kind=_SYNC_CUSTOMER_JOB,
            payload={"integrationPk": integration.pk, "customerPk": customer.pk},
            ordering_key=f"billing:{integration.pk}:customer:{customer.pk}",
            status="PENDING",
            attempts=0,
            max_attempts=12,
            run_at=now,
            sealed=seal({"billingDetails": details}),
            created_at=now,
            updated_at=now,
        )
    )


def upgrade() -> None:
    from entitle.clock import utcnow

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed", sa.Text(), nullable=True))

    bind = op.get_bind()
    now = utcnow()
    c = _customers.c
    rows = bind.execute(
        sa.select(c.pk, c.environment_id, c.archived_at, c.passthrough, c.default_payment_method)
        .where(c.passthrough.is_not(None))
        .order_by(c.pk)
    ).all()
    for customer in rows:
        stored = customer.passthrough
        if isinstance(stored, str):  # a JSON string stored by an older writer
            stored = json.loads(stored)
        stripe = dict((stored or {}).get("stripe") or {})
        method = stripe.pop("paymentMethodId", None)
        if customer.archived_at is not None:
            continue  # an archived customer is a tombstone: nothing is sent for it
        if method and not customer.default_payment_method:
            bind.execute(
                _customers.update()
                .where(c.pk == customer.pk)
                .values(default_payment_method={"billingId": method, "type": "CARD"})
            )
        if stripe:
            _forward(bind, customer, stripe, now)

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("passthrough")


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("passthrough", entitle.db.types.JSONDoc(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("sealed")
