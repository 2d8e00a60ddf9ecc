"""Billing information forwarded to Stripe and forgotten (issue 13): a customer's `passthrough.stripe`
(addresses, tax ids, invoice name and fields, provider metadata) reaches the Stripe customer through a
sealed `billing.sync_customer` job, and no table of Entitle holds it — not before delivery (the job
holds it encrypted), not after (the job's sealed payload is erased). A provider outage delays it, loses
nothing; a dead job keeps it for a retry; a discarded job erases it. With no integration to take it, it
is refused. Against the local Stripe (customers and tax ids are localstripe's), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from entitle.billing.customer_sync import SYNC_CUSTOMER_JOB
from entitle.billing.models import CUSTOMER, ERROR, SUCCESS
from entitle.db.types import json_text
from entitle.jobs.models import DEAD, DISCARDED, PENDING, SUCCEEDED, Job
from entitle.jobs.service import Worker, discard_job, retry_job
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of
from tests.billing.test_stripe_subscription_sync import customer_row, jobs_of, stripe_customer_of
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator

# Distinctive values: a scan of every table finds them if any row keeps them.
CITY = "Quuxbridge-4417"
STREET = "17 Zyzzyva Lane"
SHIP_CITY = "Shipton-9032"
VAT = "DE998877665544"
INVOICE_NAME = "Ada Lovelace Analytical GmbH"
CUSTOM_FIELD = "PO-778899-XQ"
PROVIDER_META = "crm-5566-zz"
SECRETS = (CITY, STREET, SHIP_CITY, VAT, INVOICE_NAME, CUSTOM_FIELD, PROVIDER_META)


def billing_information(city: str = CITY) -> dict[str, Any]:
    return {
        "billingAddress": {"line1": STREET, "city": city, "postalCode": "10115", "country": "DE"},
        "shippingAddress": {"line1": "1 Dock Road", "city": SHIP_CITY, "country": "DE"},
        "customerName": INVOICE_NAME,
        "invoiceCustomFields": {"PO": CUSTOM_FIELD},
        "metadata": {"crmId": PROVIDER_META},
        "taxIds": [{"type": "eu_vat", "value": VAT}],
    }


def table_dump(server: LiveServer) -> str:
    """Every row of every table, as text (job rows included)."""
    parts: list[str] = []
    with server.db.write_engine.connect() as conn:
        meta = sa.MetaData()
        meta.reflect(conn)
        for table in meta.sorted_tables:
            parts.extend(repr(tuple(row)) for row in conn.execute(sa.select(table)))
    return "\n".join(parts)


def assert_nothing_kept(server: LiveServer) -> None:
    dump = table_dump(server)
    kept = [value for value in SECRETS if value in dump]
    assert kept == [], f"Entitle's tables hold billing information: {kept}"


def stripe_tax_ids(emulator: StripeEmulator, customer_id: str) -> list[tuple[str, str]]:
    listed = emulator.client().v1.customers.tax_ids.list(customer_id).data
    return [(str(t.type), str(t.value)) for t in listed]


def test_billing_information_reaches_the_stripe_customer_and_no_table_keeps_it(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    body = {
        "id": "cust-ada",
        "name": "Ada",
        "email": "ada@example.com",
        "passthrough": {"stripe": billing_information()},
    }
    resp = api.post("/api/v1/customers", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["passthrough"] is None
    assert api.get("/api/v1/customers/cust-ada").json()["data"]["passthrough"] is None
    # On its way: the pending job carries it, encrypted.
    (job,) = jobs_of(server, SYNC_CUSTOMER_JOB)
    assert job.status == PENDING and job.sealed is not None
    assert_nothing_kept(server)

    assert Worker(server.db).drain() == 1
    found = stripe_customer_of(server, stripe_emulator, "cust-ada").to_dict()
    assert found["address"]["city"] == CITY and found["address"]["line1"] == STREET
    assert found["address"]["postal_code"] == "10115"
    assert found["shipping"]["address"]["city"] == SHIP_CITY
    assert found["name"] == INVOICE_NAME
    assert found["invoice_settings"]["custom_fields"] == [{"name": "PO", "value": CUSTOM_FIELD}]
    assert found["metadata"]["crmId"] == PROVIDER_META
    assert found["metadata"]["entitleCustomerId"] == "cust-ada"
    assert stripe_tax_ids(stripe_emulator, found["id"]) == [("eu_vat", VAT)]
    (job,) = jobs_of(server, SYNC_CUSTOMER_JOB)
    assert (job.status, job.sealed) == (SUCCEEDED, None)
    assert_nothing_kept(server)

    # An update forwards again: the new address replaces the old, the tax id is not added twice.
    update = {"passthrough": {"stripe": billing_information("Newtown-1212")}}
    resp = api.patch("/api/v1/customers/cust-ada", json=update)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["passthrough"] is None
    Worker(server.db).drain()
    found = stripe_customer_of(server, stripe_emulator, "cust-ada").to_dict()
    assert found["address"]["city"] == "Newtown-1212"
    assert stripe_tax_ids(stripe_emulator, found["id"]) == [("eu_vat", VAT)]
    assert "Newtown-1212" not in table_dump(server)
    assert_nothing_kept(server)


def test_a_provider_outage_delays_the_billing_information_and_loses_nothing(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connect_stripe(api, stripe_emulator)
    assert api.post("/api/v1/customers", json={"id": "cust-ada", "email": "ada@example.com"}).status_code == 200
    stripe_emulator.fail_next(3, path_prefix="/v1/customers")
    resp = api.patch("/api/v1/customers/cust-ada", json={"passthrough": {"stripe": billing_information()}})
    assert resp.status_code == 200, resp.text
    worker = Worker(server.db)
    worker.drain()
    ada = customer_row(server, "cust-ada")
    failing = link_of(server, CUSTOMER, ada.pk)
    assert failing is not None and failing.sync_state == ERROR
    (job,) = jobs_of(server, SYNC_CUSTOMER_JOB)
    assert job.status == PENDING and job.sealed is not None  # still held, encrypted, for the next attempt
    assert_nothing_kept(server)
    for _ in range(3):
        test_clock.advance(timedelta(hours=1))
        worker.drain()
    (job,) = jobs_of(server, SYNC_CUSTOMER_JOB)
    assert (job.status, job.sealed) == (SUCCEEDED, None)
    found = stripe_customer_of(server, stripe_emulator, "cust-ada").to_dict()
    assert found["address"]["city"] == CITY
    assert stripe_tax_ids(stripe_emulator, found["id"]) == [("eu_vat", VAT)]
    done = link_of(server, CUSTOMER, ada.pk)
    assert done is not None and done.sync_state == SUCCESS
    assert_nothing_kept(server)


@pytest.mark.emulator_only
def test_a_dead_job_keeps_it_for_a_retry_and_a_discarded_one_erases_it(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    for ref in ("cust-ada", "cust-bob"):
        body = {"id": ref, "email": f"{ref}@example.com", "passthrough": {"stripe": billing_information()}}
        assert api.post("/api/v1/customers", json=body).status_code == 200
    with server.db.transaction() as s:
        for job in s.scalars(select(Job).where(Job.kind == SYNC_CUSTOMER_JOB)):
            job.max_attempts = 1  # the first failure buries it
    stripe_emulator.fail_next(2, path_prefix="/v1/customers")
    Worker(server.db).drain()
    ada_job, bob_job = jobs_of(server, SYNC_CUSTOMER_JOB)
    assert (ada_job.status, bob_job.status) == (DEAD, DEAD)
    assert ada_job.sealed is not None and bob_job.sealed is not None

    retry_job(server.db, None, ada_job.pk)
    discarded = discard_job(server.db, None, bob_job.pk)
    assert (discarded.status, discarded.sealed) == (DISCARDED, None)
    Worker(server.db).drain()
    ada_job, bob_job = jobs_of(server, SYNC_CUSTOMER_JOB)
    assert (ada_job.status, ada_job.sealed) == (SUCCEEDED, None)
    assert (bob_job.status, bob_job.attempts) == (DISCARDED, 1)  # never run again
    assert stripe_customer_of(server, stripe_emulator, "cust-ada").to_dict()["address"]["city"] == CITY
    assert customer_row(server, "cust-bob").billing_id is None
    assert_nothing_kept(server)


def test_billing_information_is_refused_without_an_integration_to_take_it(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    body = {"id": "cust-ada", "passthrough": {"stripe": billing_information()}}
    for attempt in (body, {"id": "cust-ada", "shouldSyncFree": True}):
        resp = api.post("/api/v1/customers", json=attempt)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["code"] == "BILLING_INTEGRATION_REQUIRED"
        assert "no billing integration" in error["message"]
    assert api.get("/api/v1/customers/cust-ada").status_code == 404  # nothing written
    assert api.post("/api/v1/customers", json={"id": "cust-ada"}).status_code == 200
    resp = api.patch(
        "/api/v1/customers/cust-ada", json={"passthrough": {"stripe": {"taxIds": [{"type": "eu_vat", "value": VAT}]}}}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BILLING_INTEGRATION_REQUIRED"
    assert_nothing_kept(server)
    # An integration that does not sync customers cannot take it either.
    connect_stripe(api, stripe_emulator, syncCustomers=False)
    resp = api.patch("/api/v1/customers/cust-ada", json={"passthrough": {"stripe": billing_information()}})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "BILLING_INTEGRATION_REQUIRED"
    assert "syncCustomers" in resp.json()["error"]["message"]
    assert jobs_of(server, SYNC_CUSTOMER_JOB) == []


def test_should_sync_free_makes_a_free_customer_at_stripe(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    assert api.post("/api/v1/customers", json={"id": "cust-free", "email": "free@example.com"}).status_code == 200
    assert (
        api.post(
            "/api/v1/customers", json={"id": "cust-sync", "email": "sync@example.com", "shouldSyncFree": True}
        ).status_code
        == 200
    )
    Worker(server.db).drain()
    assert customer_row(server, "cust-free").billing_id is None  # a free customer stays out of Stripe
    synced = stripe_customer_of(server, stripe_emulator, "cust-sync")
    assert synced.metadata["entitleCustomerId"] == "cust-sync"
    # On an update too.
    assert api.patch("/api/v1/customers/cust-free", json={"shouldSyncFree": True}).status_code == 200
    Worker(server.db).drain()
    assert stripe_customer_of(server, stripe_emulator, "cust-free").metadata["entitleCustomerId"] == "cust-free"


def _fresh_database(database_url: str, tmp_path: Any, request: pytest.FixtureRequest, name: str) -> str:
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    admin = sa.create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return str(cluster.url(name))


@pytest.mark.emulator_only
def test_the_migration_forwards_stored_billing_information_then_erases_it(
    database_url: str, tmp_path: Any, request: pytest.FixtureRequest, stripe_emulator: StripeEmulator
) -> None:
    """0020 on a database where customers' passthrough was kept in plaintext: a connected customer's goes
    to Stripe (a sealed job a worker delivers), an unconnected environment's is erased, and the column
    is gone."""
    from entitle.db import Database
    from entitle.db.migrate import upgrade
    from entitle.secrets import secret_box

    url = _fresh_database(database_url, tmp_path, request, "entitle_migration_0020")
    upgrade(url, "0018_usage_trust")
    box = secret_box(tmp_path)  # the key is ENTITLE_SECRET_KEY here
    stored = json_text({"stripe": {**billing_information(), "paymentMethodId": "pm_card_visa"}})
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in ("development", "staging"):
            conn.execute(
                sa.text(
                    "INSERT INTO environments (name, is_production, created_at, updated_at) VALUES (:name, false, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"name": name},
            )
        envs = dict(conn.execute(sa.text("SELECT name, pk FROM environments")).all())
        conn.execute(
            sa.text(
                "INSERT INTO integrations (ref_id, vendor, secret_key_encrypted, secret_key_hint, is_default, "
                "livemode, api_base, sync_customers, sync_subscriptions, tax_enabled, payment_settlement_hours, "
                "environment_id, created_at, updated_at) VALUES ('int-1', 'STRIPE', :secret, 'sk_test_...', true, "
                "false, :base, true, true, false, 24, :env, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {
                "secret": box.encrypt(stripe_emulator.secret_key),
                "base": stripe_emulator.api_base,
                "env": envs["development"],
            },
        )
        for ref, env in (("cust-ada", "development"), ("cust-eve", "staging")):
            conn.execute(
                sa.text(
                    "INSERT INTO customers (ref_id, metadata, passthrough, environment_id, created_at, updated_at) "
                    "VALUES (:ref, '{}', :passthrough, :env, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"ref": ref, "passthrough": stored, "env": envs[env]},
            )
    upgrade(url, "0020_billing_info_forgotten")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("customers")}
        jobs = conn.execute(sa.text("SELECT kind, status, sealed, payload FROM jobs")).all()
        methods = dict(conn.execute(sa.text("SELECT ref_id, default_payment_method FROM customers")).all())
    assert "passthrough" not in columns
    (job,) = jobs  # only the connected customer's is forwarded
    assert (job.kind, job.status) == (SYNC_CUSTOMER_JOB, PENDING)
    sealed = box.decrypt(job.sealed)
    assert CITY in sealed and VAT in sealed
    assert "pm_card_visa" in str(methods["cust-ada"])  # a provider reference, kept as defaultPaymentMethod

    upgrade(url, "head")  # the worker is today's code: it needs today's tables
    db = Database(url)
    try:
        # The card is localstripe's: the stored id names none, so the details go without it.
        with db.transaction() as s:
            s.execute(sa.text("UPDATE customers SET default_payment_method = NULL"))
        assert Worker(db).drain() == 1
        with db.read() as s:
            ada_billing_id = s.execute(
                sa.text("SELECT billing_id FROM customers WHERE ref_id = 'cust-ada'")
            ).scalar_one()
            ((status, sealed_after),) = s.execute(sa.text("SELECT status, sealed FROM jobs")).all()
    finally:
        db.dispose()
    assert (status, sealed_after) == (SUCCEEDED, None)
    found = stripe_emulator.client().v1.customers.retrieve(ada_billing_id).to_dict()
    assert found["address"]["city"] == CITY and found["name"] == INVOICE_NAME
    assert stripe_tax_ids(stripe_emulator, ada_billing_id) == [("eu_vat", VAT)]
    with engine.connect() as conn:
        meta = sa.MetaData()
        meta.reflect(conn)
        dump = "\n".join(repr(tuple(row)) for table in meta.sorted_tables for row in conn.execute(sa.select(table)))
    engine.dispose()
    assert [value for value in SECRETS if value in dump] == []
