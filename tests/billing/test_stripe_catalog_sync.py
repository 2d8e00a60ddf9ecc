"""Catalog sync to Stripe through the outbox, against the local Stripe, on SQLite and PostgreSQL.

Endpoints and who emulates them (see tests/support/stripe_emulator.py): Products (POST /v1/products,
POST /v1/products/{id}, GET /v1/products) are localstripe's; Prices (POST /v1/prices, POST
/v1/prices/{id}, GET /v1/prices) are the stand-in's, each mirrored as a localstripe Plan of the same id.
Idempotency keys and injected failures are the stand-in's, in front of both.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.billing import catalog_sync
from entitle.billing.models import ERROR, NO_SYNC_REQUIRED, PACKAGE, PACKAGE_CHARGE, PENDING, SUCCESS, BillingLink
from entitle.catalog.packages.models import Package, PackageCharge
from entitle.jobs import store as job_store
from entitle.jobs.models import DEAD, SUCCEEDED, Job
from entitle.jobs.service import JobContext, Worker
from tests.billing.conftest import connect_stripe
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import Logged, StripeEmulator


def flat(period: str, amount: float | str, currency: str = "usd") -> dict[str, Any]:
    return {"billingPeriod": period, "price": {"amount": amount, "currency": currency}}


def make_plan(
    api: httpx.Client, ref: str = "plan-pro", *, monthly: float = 29.99, annual: float = 299, publish: bool = True
) -> None:
    if api.get("/api/v1/products/acme").status_code == 404:
        assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    body = {"id": ref, "displayName": "Pro", "productId": "acme", "description": "For teams"}
    assert api.post("/api/v1/plans", json=body).status_code == 200
    set_prices(api, ref, [flat("MONTHLY", monthly), flat("ANNUALLY", annual)])
    if publish:
        publish_plan(api, ref)


def set_prices(api: httpx.Client, ref: str, periods: list[dict[str, Any]], path: str = "plans") -> None:
    charges = {"pricingType": "PAID", "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": periods}]}
    resp = api.patch(f"/api/v1/{path}/{ref}", json={"charges": charges})
    assert resp.status_code == 200, resp.text


def publish_plan(api: httpx.Client, ref: str, path: str = "plans") -> None:
    resp = api.post(f"/api/v1/{path}/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"})
    assert resp.status_code == 200, resp.text


def sync_jobs(server: LiveServer) -> list[Job]:
    with server.db.read() as s:
        rows = s.scalars(select(Job).where(Job.kind == catalog_sync.SYNC_PACKAGE_JOB).order_by(Job.pk))
        return list(rows)


def version(server: LiveServer, ref: str, number: int, kind: str = "PLAN") -> tuple[Package, list[PackageCharge]]:
    with server.db.read() as s:
        package = s.scalars(
            select(Package).where(Package.ref_id == ref, Package.kind == kind, Package.version_number == number)
        ).one()
        charges = list(s.scalars(select(PackageCharge).where(PackageCharge.package_pk == package.pk)))
        return package, charges


def link_of(server: LiveServer, kind: str, pk: int) -> BillingLink | None:
    with server.db.read() as s:
        return s.scalars(
            select(BillingLink).where(BillingLink.entity_kind == kind, BillingLink.entity_pk == pk)
        ).one_or_none()


def by_period(charges: list[PackageCharge]) -> dict[str, PackageCharge]:
    return {c.billing_period: c for c in charges}


def product_of(server: LiveServer, emulator: StripeEmulator, ref: str, kind: str = "PLAN", number: int = 1) -> Any:
    """The Stripe product Entitle linked to a version (real Stripe test mode is never emptied, so a test
    finds its objects by id; "the only one in the account" is checked on the emulator alone)."""
    package, _ = version(server, ref, number, kind)
    link = link_of(server, PACKAGE, package.pk)
    assert link is not None and link.billing_id is not None, f"{ref} v{number} has no Stripe product"
    return emulator.client().v1.products.retrieve(link.billing_id)


def catalog_writes(emulator: StripeEmulator) -> list[Logged]:
    """The emulator's writes after connecting (which configures the billing portal)."""
    return [w for w in emulator.standin.writes() if not w.path.startswith("/v1/billing_portal/")]


def emulated(emulator: StripeEmulator) -> bool:
    return isinstance(emulator, StripeEmulator)


def test_publishing_a_plan_creates_its_stripe_product_and_prices(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    integration = connect_stripe(api, stripe_emulator)
    make_plan(api)
    package, charges = version(server, "plan-pro", 1)
    pending = link_of(server, PACKAGE, package.pk)
    assert pending is not None and pending.sync_state == PENDING  # set by publish, before any worker ran
    assert Worker(server.db).drain() == 1
    (job,) = sync_jobs(server)
    assert job.status == SUCCEEDED

    product = product_of(server, stripe_emulator, "plan-pro")
    if emulated(stripe_emulator):
        assert [p.id for p in stripe_emulator.products()] == [product.id]
    assert product.name == "Acme Pro Plan" and product.description == "For teams"
    assert product.metadata["entitleEntityUrl"].endswith("/console/plans/plan-pro")
    assert (product.metadata["entitleEnvironment"], product.metadata["entitleEntityId"]) == ("development", "plan-pro")
    assert (product.metadata["entitleEntityType"], product.metadata["entitleProductId"]) == ("PLAN", "acme")
    prices = {p.recurring.interval: p for p in stripe_emulator.prices(product.id)}
    assert {k: (p.unit_amount, p.currency, p.active) for k, p in prices.items()} == {
        "month": (2999, "usd", True),
        "year": (29900, "usd", True),
    }
    charge = by_period(charges)
    assert prices["month"].metadata["entitleChargeId"] == charge["MONTHLY"].charge_id
    assert prices["year"].metadata["entitleBillingPeriod"] == "ANNUALLY"
    assert prices["month"].metadata["entitleEntityUrl"] == product.metadata["entitleEntityUrl"]

    product_link = link_of(server, PACKAGE, package.pk)
    assert product_link is not None and (product_link.sync_state, product_link.billing_id) == (SUCCESS, product.id)
    for period, interval in (("MONTHLY", "month"), ("ANNUALLY", "year")):
        price_link = link_of(server, PACKAGE_CHARGE, charge[period].pk)
        assert price_link is not None
        assert (price_link.sync_state, price_link.billing_id) == (SUCCESS, prices[interval].id)
    # Every Stripe write carried a key derived from the job, one suffix per call.
    keys = [w.idempotency_key for w in catalog_writes(stripe_emulator)]
    assert keys and all(k is not None and k.startswith(f"entitle-job-{job.pk}:") for k in keys)
    assert len(set(keys)) == len(keys) == 3
    listed = api.get("/api/v1/integrations").json()["data"]
    assert [i["id"] for i in listed] == [integration["id"]]


def test_rerunning_the_job_after_a_crash_creates_nothing_twice(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after Stripe answered but before the ids were recorded; the job runs again."""
    connect_stripe(api, stripe_emulator)
    make_plan(api)
    (job,) = sync_jobs(server)
    ctx = JobContext(job.pk, job.environment_id, job.kind, dict(job.payload), attempt=1)

    def crash(*_: Any) -> None:
        raise SystemExit("worker killed before recording")

    record = catalog_sync._record
    monkeypatch.setattr(catalog_sync, "_record", crash)
    with pytest.raises(SystemExit):
        catalog_sync.sync_package(server.db, ctx)
    monkeypatch.setattr(catalog_sync, "_record", record)
    catalog_sync.sync_package(server.db, ctx)  # the same job again: same idempotency keys

    product = product_of(server, stripe_emulator, "plan-pro")
    if emulated(stripe_emulator):
        assert [p.id for p in stripe_emulator.products()] == [product.id]
    assert len(stripe_emulator.prices(product.id)) == 2
    writes = catalog_writes(stripe_emulator)
    assert [w.replayed for w in writes] == [False] * 3 + [True] * 3
    package, _ = version(server, "plan-pro", 1)
    product_link = link_of(server, PACKAGE, package.pk)
    assert product_link is not None and (product_link.sync_state, product_link.billing_id) == (SUCCESS, product.id)
    # The queued job itself now finds the version recorded and calls Stripe no more.
    assert Worker(server.db).drain() == 1
    assert sync_jobs(server)[0].status == SUCCEEDED
    assert len(catalog_writes(stripe_emulator)) == 6


def test_a_response_lost_on_the_way_back_is_replayed_on_retry(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    """Stripe created the monthly price but the answer was lost: the retried job gets that same price."""
    connect_stripe(api, stripe_emulator)
    stripe_emulator.fail_next(1, path_prefix="/v1/prices", after_execution=True)
    make_plan(api)
    worker = Worker(server.db)
    worker.drain()
    (job,) = sync_jobs(server)
    assert (job.status, job.attempts) == ("PENDING", 1)
    test_clock.advance(timedelta(minutes=5))
    worker.drain()
    (product,) = stripe_emulator.products()
    assert len(stripe_emulator.prices(product.id)) == 2
    assert sync_jobs(server)[0].status == SUCCEEDED


def test_stripe_failures_are_retried_until_the_sync_succeeds(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connect_stripe(api, stripe_emulator)
    stripe_emulator.fail_next(3, path_prefix="/v1/prices")
    make_plan(api)
    package, _ = version(server, "plan-pro", 1)
    worker = Worker(server.db)
    worker.drain()
    failing = link_of(server, PACKAGE, package.pk)
    assert failing is not None and failing.sync_state == ERROR
    assert failing.reason is not None and "injected failure" in failing.reason
    for _ in range(3):
        test_clock.advance(timedelta(hours=1))
        worker.drain()
    (job,) = sync_jobs(server)
    assert (job.status, job.attempts) == (SUCCEEDED, 4)
    (product,) = stripe_emulator.products()
    assert len(stripe_emulator.prices(product.id)) == 2
    done = link_of(server, PACKAGE, package.pk)
    assert done is not None and (done.sync_state, done.reason, done.billing_id) == (SUCCESS, None, product.id)


def test_a_sync_that_never_succeeds_lands_dead(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connect_stripe(api, stripe_emulator)
    stripe_emulator.fail_next(10_000, path_prefix="/v1/products", status=500)
    make_plan(api)
    worker = Worker(server.db)
    for _ in range(20):
        worker.drain()
        test_clock.advance(timedelta(hours=2))
    (job,) = sync_jobs(server)
    assert (job.status, job.attempts) == (DEAD, job.max_attempts)
    assert job.last_error is not None and "APIError" in job.last_error
    dead = api.get("/api/v1/jobs", params={"status": "DEAD"}).json()["data"]
    assert [d["kind"] for d in dead] == [catalog_sync.SYNC_PACKAGE_JOB]
    package, _ = version(server, "plan-pro", 1)
    link = link_of(server, PACKAGE, package.pk)
    assert link is not None and link.sync_state == ERROR
    assert stripe_emulator.products() == []
    # Once Stripe is back, the operator's retry finishes the job.
    stripe_emulator.standin.clear_failures()
    assert api.post(f"/api/v1/jobs/{job.pk}/retry").status_code == 200
    worker.drain()
    assert sync_jobs(server)[0].status == SUCCEEDED
    assert len(stripe_emulator.products()) == 1


def test_a_changed_price_in_a_new_version_is_a_new_price_and_the_old_one_is_archived(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    make_plan(api, monthly=29.99, annual=299)
    worker = Worker(server.db)
    worker.drain()
    product = product_of(server, stripe_emulator, "plan-pro")
    v1 = {p.recurring.interval: p for p in stripe_emulator.prices(product.id)}

    assert api.post("/api/v1/plans/plan-pro/draft").status_code == 200
    assert api.patch("/api/v1/plans/plan-pro", json={"displayName": "Pro Plus"}).status_code == 200
    set_prices(api, "plan-pro", [flat("MONTHLY", "34.5"), flat("ANNUALLY", 299)])
    publish_plan(api, "plan-pro")
    worker.drain()
    assert [j.status for j in sync_jobs(server)] == [SUCCEEDED, SUCCEEDED]

    assert product_of(server, stripe_emulator, "plan-pro", number=2).id == product.id  # one for every version
    if emulated(stripe_emulator):
        assert [p.id for p in stripe_emulator.products()] == [product.id]
    renamed = stripe_emulator.client().v1.products.retrieve(product.id)
    assert (renamed.name, renamed.metadata["entitleVersion"]) == ("Acme Pro Plus Plan", "2")
    prices = {p.id: p for p in stripe_emulator.prices(product.id)}
    assert len(prices) == 3
    assert prices[v1["month"].id].active is False  # replaced: archived (subscriptions on it keep it)
    assert prices[v1["year"].id].active is True  # unchanged: the new version keeps it
    (new_monthly,) = [p for p in prices.values() if p.id not in (v1["month"].id, v1["year"].id)]
    assert (new_monthly.unit_amount, new_monthly.recurring.interval, new_monthly.active) == (3450, "month", True)
    assert new_monthly.metadata["entitleVersion"] == "2"

    _, v1_charges = version(server, "plan-pro", 1)
    _, v2_charges = version(server, "plan-pro", 2)
    old, new = by_period(v1_charges), by_period(v2_charges)
    old_monthly = link_of(server, PACKAGE_CHARGE, old["MONTHLY"].pk)
    assert old_monthly is not None and old_monthly.details.get("archived") is True
    new_monthly_link = link_of(server, PACKAGE_CHARGE, new["MONTHLY"].pk)
    assert new_monthly_link is not None and new_monthly_link.billing_id == new_monthly.id
    annual_links = [link_of(server, PACKAGE_CHARGE, c.pk) for c in (old["ANNUALLY"], new["ANNUALLY"])]
    assert [a.billing_id for a in annual_links if a is not None] == [v1["year"].id] * 2


def test_free_plans_need_no_sync_and_nothing_is_enqueued_without_an_integration(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    make_plan(api, "plan-early")  # published before Stripe is connected: no job
    assert sync_jobs(server) == []
    connect_stripe(api, stripe_emulator)  # connecting syncs what is already published
    assert (
        api.post("/api/v1/plans", json={"id": "plan-free", "displayName": "Free", "productId": "acme"}).status_code
        == 200
    )
    publish_plan(api, "plan-free")
    assert (
        api.post("/api/v1/addons", json={"id": "seats", "displayName": "Seats", "productId": "acme"}).status_code == 200
    )
    set_prices(api, "seats", [flat("MONTHLY", Decimal("0.5").__float__())], path="addons")
    publish_plan(api, "seats", path="addons")
    assert len(sync_jobs(server)) == 3
    Worker(server.db).drain()
    assert {j.status for j in sync_jobs(server)} == {SUCCEEDED}

    free, _ = version(server, "plan-free", 1)
    free_link = link_of(server, PACKAGE, free.pk)
    assert free_link is not None and free_link.sync_state == NO_SYNC_REQUIRED and "free" in (free_link.reason or "")
    assert product_of(server, stripe_emulator, "plan-early").name == "Acme Pro Plan"
    addon_product = product_of(server, stripe_emulator, "seats", "ADDON")
    assert addon_product.name == "Acme Seats Add-on"
    if emulated(stripe_emulator):
        names = sorted(p.name for p in stripe_emulator.products())
        assert names == ["Acme Pro Plan", "Acme Seats Add-on"]
    (addon_price,) = stripe_emulator.prices(addon_product.id)
    assert (addon_price.unit_amount, addon_price.metadata["entitleEntityType"]) == (50, "ADDON")


def test_a_charge_stripe_cannot_bill_exactly_is_recorded_as_an_error(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    feature = {"id": "f-seats", "displayName": "Seats", "featureType": "NUMBER", "meterType": "FLUCTUATING"}
    assert api.post("/api/v1/features", json=feature).status_code == 200
    assert (
        api.post("/api/v1/plans", json={"id": "plan-usage", "displayName": "Usage", "productId": "acme"}).status_code
        == 200
    )
    tiers = [
        {"upTo": 10.5, "unitPrice": {"amount": 2, "currency": "usd"}},
        {"unitPrice": {"amount": 1, "currency": "usd"}},
    ]
    charges = {
        "pricingType": "PAID",
        "pricingModels": [
            {"billingModel": "FLAT_FEE", "pricePeriods": [flat("MONTHLY", 10)]},
            # Half a seat at $2 past the tenth: Stripe's tier bounds are whole numbers of units.
            {
                "billingModel": "PER_UNIT",
                "featureId": "f-seats",
                "tiersMode": "GRADUATED",
                "pricePeriods": [{"billingPeriod": "MONTHLY", "tiers": tiers}],
            },
        ],
    }
    resp = api.patch("/api/v1/plans/plan-usage", json={"charges": charges})
    assert resp.status_code == 200, resp.text
    publish_plan(api, "plan-usage")
    Worker(server.db).drain()
    _, plan_charges = version(server, "plan-usage", 1)
    states = {c.billing_model: link_of(server, PACKAGE_CHARGE, c.pk) for c in plan_charges}
    flat_link, tiered_link = states["FLAT_FEE"], states["PER_UNIT"]
    assert flat_link is not None and flat_link.sync_state == SUCCESS
    assert tiered_link is not None and tiered_link.sync_state == ERROR
    assert tiered_link.reason is not None and "10.5" in tiered_link.reason and "whole numbers" in tiered_link.reason
    product = product_of(server, stripe_emulator, "plan-usage")
    assert [p.unit_amount for p in stripe_emulator.prices(product.id)] == [1000]
    with server.db.read() as s:
        assert job_store.dead_count(s) == 0
