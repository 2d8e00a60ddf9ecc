"""Coupon sync to Stripe through the outbox, against the local Stripe, on SQLite and PostgreSQL.

Endpoints and who emulates them (tests/support/stripe_emulator.py): Coupons (POST /v1/coupons, GET and
DELETE /v1/coupons/{id}) are localstripe's, with the stand-in keeping the fields localstripe refuses
(`name`, `currency_options`); a subscription's `discounts` are kept by the stand-in (localstripe's
subscriptions take none), which copies the coupon as applied, as Stripe keeps an applied discount when
its coupon is deleted. Customers, Subscriptions and Payment methods are localstripe's; Prices the
stand-in's (mirrored as localstripe Plans).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import select

from entitle.billing import coupon_sync
from entitle.billing.models import NO_SYNC_REQUIRED, PENDING, SUBSCRIPTION, SUCCESS
from entitle.billing.stripe_provider import _coupon_of
from entitle.catalog.coupons.models import Coupon
from entitle.jobs.models import SUCCEEDED
from entitle.jobs.service import Worker
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of, make_plan
from tests.billing.test_stripe_subscription_sync import (
    jobs_of,
    paying_customer,
    provision,
    subscription_row,
)
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator


def coupon_row(server: LiveServer, ref: str) -> Coupon:
    with server.db.read() as s:
        return s.scalars(select(Coupon).where(Coupon.ref_id == ref)).one()


def create_coupon(api: httpx.Client, ref: str, **body: Any) -> None:
    resp = api.post("/api/v1/coupons", json={"id": ref, "name": body.pop("name", ref.title()), **body})
    assert resp.status_code == 200, resp.text


def discount_coupon(emulator: StripeEmulator, subscription_id: str) -> str | None:
    """The coupon of the Stripe subscription's discount, read as the provider reads it."""
    sub = emulator.client().v1.subscriptions.retrieve(subscription_id, params={"expand": ["discounts"]})
    return _coupon_of(sub.to_dict())


def stripe_coupon(emulator: StripeEmulator, coupon_id: str) -> Any:
    return emulator.client().v1.coupons.retrieve(coupon_id)


def test_coupons_become_stripe_coupons_on_connect_and_on_create(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    create_coupon(api, "launch-20", name="Launch 20%", percentOff=20, durationInMonths=3)
    create_coupon(api, "old", percentOff=5)
    assert api.post("/api/v1/coupons/old/archive").status_code == 200
    connect_stripe(api, stripe_emulator)  # the active coupon already there is synced on connect
    create_coupon(
        api,
        "ten-off",
        name="Ten off",
        amountsOff=[{"amount": 10, "currency": "usd"}, {"amount": 9.5, "currency": "eur"}],
    )
    pending = link_of(server, coupon_sync.COUPON, coupon_row(server, "ten-off").pk)
    assert pending is not None and pending.sync_state == PENDING  # in the create transaction
    assert link_of(server, coupon_sync.COUPON, coupon_row(server, "old").pk) is None  # archived: never synced

    Worker(server.db).drain()
    jobs = jobs_of(server, coupon_sync.SYNC_COUPON_JOB)
    assert [j.status for j in jobs] == [SUCCEEDED, SUCCEEDED]

    launch = coupon_row(server, "launch-20")
    link = link_of(server, coupon_sync.COUPON, launch.pk)
    assert link is not None and link.sync_state == SUCCESS and link.billing_id == launch.billing_id
    assert launch.billing_id is not None
    remote = stripe_coupon(stripe_emulator, launch.billing_id)
    assert (remote.percent_off, remote.duration, remote.duration_in_months) == (20, "repeating", 3)
    assert remote.name == "Launch 20%"
    assert remote.metadata["entitleEntityId"] == "launch-20"
    assert remote.metadata["entitleEntityType"] == "COUPON"
    assert remote.metadata["entitleEntityUrl"].endswith("/console/coupons/launch-20")
    wire = api.get("/api/v1/coupons/launch-20").json()["data"]
    assert wire["billingId"] == launch.billing_id and "coupons/" in wire["billingLinkUrl"]

    fixed = coupon_row(server, "ten-off")
    assert fixed.billing_id is not None
    remote_fixed = stripe_coupon(stripe_emulator, fixed.billing_id)
    assert (remote_fixed.amount_off, remote_fixed.currency, remote_fixed.duration) == (950, "eur", "forever")
    # The other currency as a currency option (the stand-in keeps the form value, a string).
    assert int(remote_fixed.currency_options["usd"]["amount_off"]) == 1000
    (job,) = [j for j in jobs if j.payload["couponPk"] == fixed.pk]
    keys = [w.idempotency_key for w in stripe_emulator.standin.writes() if w.path == "/v1/coupons"]
    assert f"entitle-job-{job.pk}:coupon" in keys


def test_a_subscription_with_a_coupon_gets_the_stripe_discount_and_archiving_keeps_it(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    make_plan(api)
    create_coupon(api, "launch-20", percentOff=20)
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro", appliedCoupon={"couponId": "launch-20"})
    Worker(server.db).drain()
    coupon_id = coupon_row(server, "launch-20").billing_id
    stripe_sub_id = str(subscription_row(server, ref).billing_id)  # the one Entitle recorded
    assert coupon_id is not None and discount_coupon(stripe_emulator, stripe_sub_id) == coupon_id

    resp = api.post("/api/v1/coupons/launch-20/archive")
    assert resp.status_code == 200, resp.text
    assert Worker(server.db).drain() == 1
    (job,) = jobs_of(server, coupon_sync.DELETE_COUPON_JOB)
    assert job.status == SUCCEEDED
    with pytest.raises(stripe.InvalidRequestError):
        stripe_coupon(stripe_emulator, str(coupon_id))  # deleted at Stripe
    assert discount_coupon(stripe_emulator, stripe_sub_id) == coupon_id  # the applied discount stays
    link = link_of(server, coupon_sync.COUPON, coupon_row(server, "launch-20").pk)
    assert link is not None and link.details.get("deleted") is True
    sub_link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert sub_link is not None and sub_link.sync_state == SUCCESS
    # Archiving again deletes nothing more.
    assert api.post("/api/v1/coupons/launch-20/archive").status_code == 200
    assert Worker(server.db).drain() == 0


def test_a_coupon_archived_before_its_sync_ran_never_reaches_stripe(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    create_coupon(api, "brief", percentOff=50)
    assert api.post("/api/v1/coupons/brief/archive").status_code == 200
    assert Worker(server.db).drain() == 2  # the sync first (same ordering key), then the deletion
    assert [w for w in stripe_emulator.standin.writes() if w.path.startswith("/v1/coupons")] == []
    link = link_of(server, coupon_sync.COUPON, coupon_row(server, "brief").pk)
    assert link is not None and link.sync_state == NO_SYNC_REQUIRED and "archived" in (link.reason or "")
