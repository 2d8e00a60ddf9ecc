"""Migration 0023: the `invoiceDaysUntilDue` older versions kept on subscriptions is moved into the sealed
payload of a sync job that has not reached Stripe yet, then the column is dropped (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from entitle.clock import utcnow
from entitle.db.migrate import upgrade
from entitle.jobs.service import seal
from entitle.secrets import secret_box
from tests.billing.test_billing_information import _fresh_database


def _insert(conn: sa.Connection, meta: sa.MetaData, table: str, **values: Any) -> int:
    now = utcnow()
    row = {"created_at": now, "updated_at": now, **values}
    pk = conn.execute(meta.tables[table].insert().values(**row).returning(meta.tables[table].c.pk)).scalar_one()
    return int(pk)


def test_the_migration_moves_kept_days_into_the_waiting_sync_job_and_drops_the_column(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _fresh_database(database_url, tmp_path, request, "entitle_migration_0023")
    upgrade(url, "0022_console_users_audit")
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    now = utcnow()
    with engine.begin() as conn:
        env = _insert(conn, meta, "environments", name="development", is_production=False)
        product = _insert(
            conn,
            meta,
            "products",
            ref_id="acme",
            display_name="Acme",
            metadata={},
            multiple_subscriptions=True,
            status="PUBLISHED",
            product_settings={},
            environment_id=env,
        )
        plan = _insert(
            conn,
            meta,
            "packages",
            kind="PLAN",
            ref_id="plan-pro",
            product_pk=product,
            version_number=1,
            status="PUBLISHED",
            is_latest=True,
            display_name="Pro",
            metadata={},
            environment_id=env,
        )
        customer = _insert(conn, meta, "customers", ref_id="cust-ada", metadata={}, environment_id=env)
        subs = {}
        for ref, days in (("waiting", 14), ("synced", 21), ("no-days", None)):
            subs[ref] = _insert(
                conn,
                meta,
                "subscriptions",
                ref_id=ref,
                customer_pk=customer,
                product_pk=product,
                plan_pk=plan,
                plan_ref="plan-pro",
                status="ACTIVE",
                pricing_type="PAID",
                payment_collection="NOT_REQUIRED",
                payment_collection_method="INVOICE",
                start_date=now,
                billing_cycle_anchor=now,
                metadata={},
                environment_id=env,
                invoice_days_until_due=days,
            )
        jobs = {}
        for ref, sealed in (
            ("waiting", seal({"subscription": {"metadata": {"costCenter": "cc-1"}}})),
            ("no-days", None),
        ):
            jobs[ref] = _insert(
                conn,
                meta,
                "jobs",
                environment_id=env,
                kind="billing.sync_subscription",
                payload={"integrationPk": 1, "subscriptionPk": subs[ref]},
                status="PENDING",
                attempts=0,
                max_attempts=12,
                run_at=now,
                sealed=sealed,
            )

    upgrade(url, "0023_invoice_days_forgotten")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("subscriptions")}
        sealed_of = dict(conn.execute(sa.text("SELECT pk, sealed FROM jobs")).all())
    engine.dispose()
    assert "invoice_days_until_due" not in columns
    box = secret_box(tmp_path)  # the key is ENTITLE_SECRET_KEY here
    opened = json.loads(box.decrypt(sealed_of[jobs["waiting"]]))
    assert opened == {"subscription": {"metadata": {"costCenter": "cc-1"}, "invoiceDaysUntilDue": 14}}
    assert sealed_of[jobs["no-days"]] is None  # nothing was kept for it: nothing to carry
