"""A worker process killed in the middle of a Stripe write, for real: `python -m entitle worker` runs as a
subprocess against the test's database (a file SQLite database, and PostgreSQL), and the local Stripe
SIGKILLs it right after it performed a create — the object exists at Stripe, its answer never reached the
worker, Entitle never recorded it. A fresh worker process, started once the dead one's lease expired
(`--lease-seconds`), re-runs the job; exactly one Stripe object exists and Entitle's billing link holds it.

The windows covered: the Stripe Product of a plan (catalog sync), the Stripe Customer before
`record_customer` recorded it, and the Stripe Subscription before `_record` recorded it.

Endpoints and who emulates them (see tests/support/stripe_emulator.py): Products, Customers and
Subscriptions are localstripe's, Prices the stand-in's; the idempotency keys are the stand-in's
(localstripe has none), which saves each keyed POST's first answer and replays it to a same-key retry as
Stripe does — the replay is what keeps the re-run from creating a second object. The kill is the
stand-in's `after_write` hook, called after the write executed and its answer was saved, before the
answer is sent. Real Stripe test mode cannot kill a process: emulator only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.billing import catalog_sync, subscription_sync
from entitle.billing.models import CUSTOMER, PACKAGE, PENDING, SUBSCRIPTION, SUCCESS
from entitle.jobs.models import RUNNING, SUCCEEDED, Job
from entitle.jobs.service import Worker
from tests.billing.conftest import card_payment_method, connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of, make_plan, version
from tests.billing.test_stripe_subscription_sync import customer_row, provision, subscription_row
from tests.conftest import LiveServer
from tests.support.stripe_emulator import Logged, StripeEmulator

pytestmark = pytest.mark.emulator_only

LEASE_SECONDS = 2


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)  # carries the test's ENTITLE_SECRET_KEY (the integration's secrets decrypt)
    env["ENTITLE_DATABASE_URL"] = database_url
    env["ENTITLE_DATA_DIR"] = str(data_dir)
    env.pop("ENTITLE_WORKER_LEASE_SECONDS", None)
    return env


def run_worker(database_url: str, data_dir: Path, *, kill_after: tuple[StripeEmulator, str] | None = None) -> int:
    """`python -m entitle worker --once` as its own process; with `kill_after` (emulator, path), the
    emulator SIGKILLs it right after its first successful POST to that path. Returns the exit code."""
    pid: list[int] = []
    killed: list[Logged] = []
    if kill_after is not None:
        emulator, path = kill_after

        def kill(entry: Logged) -> None:
            if entry.path == path and not killed and pid:
                killed.append(entry)
                os.kill(pid[0], signal.SIGKILL)

        emulator.standin.after_write = kill
    proc = subprocess.Popen(
        [sys.executable, "-m", "entitle", "worker", "--once", "--lease-seconds", str(LEASE_SECONDS)],
        env=_env(database_url, data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid.append(proc.pid)
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        if kill_after is not None:
            kill_after[0].standin.after_write = None
    if kill_after is not None:
        assert killed, f"the worker never wrote {kill_after[1]}; it exited {proc.returncode}: {stderr[-2000:]}"
    else:
        assert proc.returncode == 0, stderr[-2000:]
    return proc.returncode


def job_of(server: LiveServer, kind: str) -> Job:
    with server.db.read() as s:
        (job,) = s.scalars(select(Job).where(Job.kind == kind))
        return job


def wait_for_lease_to_expire(job: Job) -> None:
    """The dead worker's claim runs out (wall clock: the next worker is another process)."""
    assert job.status == RUNNING and job.locked_until is not None
    while datetime.now(UTC) <= job.locked_until:
        time.sleep(0.1)


def stripe_objects(list_them: Callable[[], Any], key: str, value: str) -> list[Any]:
    return [o for o in list_them() if o.metadata is not None and o.metadata.to_dict().get(key) == value]


def customers_of(emulator: StripeEmulator, ref: str) -> list[Any]:
    client = emulator.client()
    return stripe_objects(lambda: client.v1.customers.list(params={"limit": 100}).data, "entitleCustomerId", ref)


def subscriptions_of(emulator: StripeEmulator, ref: str) -> list[Any]:
    client = emulator.client()
    return stripe_objects(
        lambda: client.v1.subscriptions.list(params={"status": "all", "limit": 100}).data,
        "entitleSubscriptionId",
        ref,
    )


def card_customer(api: httpx.Client, emulator: StripeEmulator, ref: str) -> None:
    method = card_payment_method(emulator)
    body = {"id": ref, "name": ref, "email": f"{ref}@example.com", "defaultPaymentMethod": {"billingId": method}}
    resp = api.post("/api/v1/customers", json=body)
    assert resp.status_code == 200, resp.text


def test_a_worker_killed_after_creating_the_stripe_product_leaves_one_product(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, database_url: str, tmp_path: Path
) -> None:
    connect_stripe(api, stripe_emulator)
    make_plan(api)  # publishing enqueues billing.sync_package
    package, _ = version(server, "plan-pro", 1)

    code = run_worker(database_url, tmp_path, kill_after=(stripe_emulator, "/v1/products"))
    assert code == -signal.SIGKILL
    (made,) = stripe_objects(stripe_emulator.products, "entitleEntityId", "plan-pro")  # it exists at Stripe
    link = link_of(server, PACKAGE, package.pk)
    assert link is not None and (link.sync_state, link.billing_id) == (PENDING, None)  # Entitle never knew
    job = job_of(server, catalog_sync.SYNC_PACKAGE_JOB)
    assert job.attempts == 1

    wait_for_lease_to_expire(job)
    run_worker(database_url, tmp_path)

    (product,) = stripe_objects(stripe_emulator.products, "entitleEntityId", "plan-pro")
    assert product.id == made.id
    link = link_of(server, PACKAGE, package.pk)
    assert link is not None and (link.sync_state, link.billing_id) == (SUCCESS, product.id)
    assert len(stripe_emulator.prices(product.id)) == 2  # monthly and yearly, once each
    job = job_of(server, catalog_sync.SYNC_PACKAGE_JOB)
    assert (job.status, job.attempts) == (SUCCEEDED, 2)
    product_writes = [w for w in stripe_emulator.standin.writes() if w.path == "/v1/products"]
    assert [w.replayed for w in product_writes] == [False, True]  # the re-run got Stripe's saved answer


def test_a_worker_killed_after_creating_the_stripe_customer_leaves_one_customer(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, database_url: str, tmp_path: Path
) -> None:
    """The window between creating the Stripe customer and `record_customer`."""
    connect_stripe(api, stripe_emulator)
    make_plan(api)
    assert Worker(server.db).drain() == 1  # the catalog, synced in the test process
    card_customer(api, stripe_emulator, "cust-ada")
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")

    assert run_worker(database_url, tmp_path, kill_after=(stripe_emulator, "/v1/customers")) == -signal.SIGKILL
    (made,) = customers_of(stripe_emulator, "cust-ada")
    assert customer_row(server, "cust-ada").billing_id is None  # not recorded
    assert link_of(server, CUSTOMER, customer_row(server, "cust-ada").pk) is None
    assert subscriptions_of(stripe_emulator, ref) == []

    wait_for_lease_to_expire(job_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB))
    run_worker(database_url, tmp_path)

    (customer,) = customers_of(stripe_emulator, "cust-ada")
    assert customer.id == made.id
    row = customer_row(server, "cust-ada")
    link = link_of(server, CUSTOMER, row.pk)
    assert row.billing_id == customer.id
    assert link is not None and (link.sync_state, link.billing_id) == (SUCCESS, customer.id)
    (stripe_sub,) = subscriptions_of(stripe_emulator, ref)
    assert stripe_sub.customer == customer.id
    sub = subscription_row(server, ref)
    assert (sub.billing_id, sub.status) == (stripe_sub.id, "ACTIVE")
    assert job_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB).status == SUCCEEDED


def test_a_worker_killed_after_creating_the_stripe_subscription_leaves_one_subscription(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, database_url: str, tmp_path: Path
) -> None:
    connect_stripe(api, stripe_emulator)
    make_plan(api)
    assert Worker(server.db).drain() == 1
    card_customer(api, stripe_emulator, "cust-bob")
    ref = provision(api, "cust-bob", "plan-pro", billingPeriod="MONTHLY")

    assert run_worker(database_url, tmp_path, kill_after=(stripe_emulator, "/v1/subscriptions")) == -signal.SIGKILL
    (made,) = subscriptions_of(stripe_emulator, ref)
    sub = subscription_row(server, ref)
    link = link_of(server, SUBSCRIPTION, sub.pk)
    assert link is not None and (link.sync_state, link.billing_id) == (PENDING, None)
    assert (sub.billing_id, sub.status) == (None, "PAYMENT_PENDING")  # Stripe charged; Entitle does not know

    wait_for_lease_to_expire(job_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB))
    run_worker(database_url, tmp_path)

    (stripe_sub,) = subscriptions_of(stripe_emulator, ref)
    assert stripe_sub.id == made.id
    (customer,) = customers_of(stripe_emulator, "cust-bob")
    sub = subscription_row(server, ref)
    link = link_of(server, SUBSCRIPTION, sub.pk)
    assert link is not None and (link.sync_state, link.billing_id) == (SUCCESS, stripe_sub.id)
    assert (sub.billing_id, sub.status) == (stripe_sub.id, "ACTIVE")
    assert customer_row(server, "cust-bob").billing_id == customer.id
    sub_writes = [w for w in stripe_emulator.standin.writes() if w.path == "/v1/subscriptions"]
    assert [w.replayed for w in sub_writes] == [False, True]
