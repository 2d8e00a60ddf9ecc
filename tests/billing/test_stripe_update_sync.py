"""Subscription updates, payment collection and the per-customer limit, against the local Stripe, on
SQLite and PostgreSQL.

Endpoints and who emulates them (tests/support/stripe_emulator.py): Subscriptions (create, retrieve,
update, list) are localstripe's, which holds one item per subscription — so these plans bill one charge,
and an update replaces or re-quantifies that one item (several items, deleted and added, are covered by
the pure rule in test_billing_rules.py); `collection_method`, `days_until_due`,
`default_payment_method`, `discounts` and `proration_behavior` are kept by the stand-in (localstripe
refuses them). Prices are the stand-in's, mirrored as localstripe Plans.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.billing import subscription_sync
from entitle.billing.models import PACKAGE_CHARGE, SUBSCRIPTION, SUCCESS
from entitle.jobs.models import SUCCEEDED
from entitle.jobs.service import Worker
from entitle.subscriptions.models import Subscription
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_catalog_sync import flat, link_of, publish_plan, set_prices, version
from tests.billing.test_stripe_coupon_sync import coupon_row, create_coupon, discount_coupon
from tests.billing.test_stripe_subscription_sync import (
    connected_with_pro,
    customer_row,
    jobs_of,
    paying_customer,
    provision,
    subscription_row,
    subscriptions_of,
)
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator


def price_of(server: LiveServer, plan: str, number: int, period: str) -> str:
    _, charges = version(server, plan, number)
    (charge,) = [c for c in charges if c.billing_period == period]
    link = link_of(server, PACKAGE_CHARGE, charge.pk)
    assert link is not None and link.billing_id is not None
    return link.billing_id


def stripe_sub(server: LiveServer, emulator: StripeEmulator, ref: str) -> Any:
    """The Stripe subscription Entitle recorded for `ref` (real Stripe test mode is never emptied)."""
    billing_id = subscription_row(server, ref).billing_id
    assert billing_id is not None, f"subscription {ref} is not at Stripe"
    return emulator.client().v1.subscriptions.retrieve(billing_id)


def the_item(server: LiveServer, emulator: StripeEmulator, ref: str) -> tuple[str, int]:
    (item,) = stripe_sub(server, emulator, ref)["items"].data
    return item.plan.id, item.quantity


def update_writes(emulator: StripeEmulator) -> list[Any]:
    return [w for w in emulator.standin.writes() if (w.idempotency_key or "").endswith(":update")]


def team_plan(api: httpx.Client) -> None:
    """A per-seat plan: 10 a seat a month."""
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    feature = {"id": "f-seats", "displayName": "Seats", "featureType": "NUMBER", "meterType": "FLUCTUATING"}
    assert api.post("/api/v1/features", json=feature).status_code == 200, "feature"
    assert (
        api.post("/api/v1/plans", json={"id": "plan-team", "displayName": "Team", "productId": "acme"}).status_code
        == 200
    )
    charges = {
        "pricingType": "PAID",
        "pricingModels": [{"billingModel": "PER_UNIT", "featureId": "f-seats", "pricePeriods": [flat("MONTHLY", 10)]}],
    }
    resp = api.patch("/api/v1/plans/plan-team", json={"charges": charges})
    assert resp.status_code == 200, resp.text
    publish_plan(api, "plan-team")


def test_a_quantity_change_updates_the_item_once_even_when_the_answer_is_lost(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connect_stripe(api, stripe_emulator)
    team_plan(api)
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-team", charges=[{"id": "f-seats", "quantity": 3}])
    Worker(server.db).drain()
    price = price_of(server, "plan-team", 1, "MONTHLY")
    assert the_item(server, stripe_emulator, ref) == (price, 3)

    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"charges": [{"id": "f-seats", "quantity": 5}]})
    assert resp.status_code == 200, resp.text
    # Stripe applies the update but its answer is lost: the job fails, and its retry finds nothing to do.
    stripe_emulator.fail_next(1, path_prefix="/v1/subscriptions/", method="POST", after_execution=True)
    worker = Worker(server.db)
    worker.drain()
    for _ in range(3):
        test_clock.advance(timedelta(minutes=30))
        worker.drain()
    (job,) = jobs_of(server, subscription_sync.UPDATE_SUBSCRIPTION_JOB)
    assert job.status == SUCCEEDED and job.attempts == 2
    assert the_item(server, stripe_emulator, ref) == (price, 5)
    writes = update_writes(stripe_emulator)
    assert [(w.idempotency_key, w.injected) for w in writes] == [(f"entitle-job-{job.pk}:update", True)]
    sub = stripe_sub(server, stripe_emulator, ref)
    assert sub.proration_behavior == "create_prorations"  # a change mid-period is prorated
    link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert link is not None and link.sync_state == SUCCESS and "updateError" not in link.details


def test_a_plan_migration_and_an_immediate_billing_period_change_move_the_stripe_item(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    assert the_item(server, stripe_emulator, ref) == (price_of(server, "plan-pro", 1, "MONTHLY"), 1)

    # A new version with a new monthly price; migrating moves the Stripe item to it, in place.
    assert api.post("/api/v1/plans/plan-pro/draft").status_code == 200
    set_prices(api, "plan-pro", [flat("MONTHLY", 39.99), flat("ANNUALLY", 299)])
    publish_plan(api, "plan-pro")
    Worker(server.db).drain()
    resp = api.post(f"/api/v1/subscriptions/{ref}/migrate", json={"subscriptionMigrationTime": "IMMEDIATE"})
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    assert the_item(server, stripe_emulator, ref) == (price_of(server, "plan-pro", 2, "MONTHLY"), 1)

    resp = api.patch(
        f"/api/v1/subscriptions/{ref}", json={"billingPeriod": "ANNUALLY", "scheduleStrategy": "IMMEDIATE"}
    )
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    assert the_item(server, stripe_emulator, ref) == (price_of(server, "plan-pro", 2, "ANNUALLY"), 1)
    assert [j.status for j in jobs_of(server, subscription_sync.UPDATE_SUBSCRIPTION_JOB)] == [SUCCEEDED] * 2
    # A change with nothing for Stripe (metadata) writes nothing there.
    writes = len(update_writes(stripe_emulator))
    assert api.patch(f"/api/v1/subscriptions/{ref}", json={"metadata": {"k": "v"}}).status_code == 200
    Worker(server.db).drain()
    assert len(update_writes(stripe_emulator)) == writes


def test_a_scheduled_billing_period_change_reaches_stripe_when_it_takes_effect_without_proration(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"billingPeriod": "ANNUALLY"})
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    assert the_item(server, stripe_emulator, ref) == (price_of(server, "plan-pro", 1, "MONTHLY"), 1)  # not yet
    test_clock.advance(timedelta(days=32))
    Worker(server.db).drain()
    assert the_item(server, stripe_emulator, ref) == (price_of(server, "plan-pro", 1, "ANNUALLY"), 1)
    sub = stripe_sub(server, stripe_emulator, ref)
    assert sub.proration_behavior == "none"  # applied at the period's end: nothing to prorate


def test_a_coupon_applied_later_becomes_the_stripe_discount(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    create_coupon(api, "loyal", percentOff=15)
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro")
    Worker(server.db).drain()
    before = stripe_sub(server, stripe_emulator, ref)
    assert discount_coupon(stripe_emulator, before.id) is None
    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"appliedCoupon": {"couponId": "loyal"}})
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    after = stripe_sub(server, stripe_emulator, ref)
    assert discount_coupon(stripe_emulator, after.id) == coupon_row(server, "loyal").billing_id
    assert the_item(server, stripe_emulator, ref)[1] == 1  # the items were left alone


def test_payment_collection_charge_and_invoice(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    method = paying_customer(api, stripe_emulator)
    paying_customer(api, stripe_emulator, "cust-bob")
    charged = provision(api, "cust-ada", "plan-pro")
    invoiced = provision(
        api,
        "cust-bob",
        "plan-pro",
        paymentCollectionMethod="INVOICE",
        billingInformation={"invoiceDaysUntilDue": 14},
    )
    Worker(server.db).drain()
    by_ref = {ref: stripe_sub(server, stripe_emulator, ref) for ref in (charged, invoiced)}
    assert by_ref[charged].collection_method == "charge_automatically"
    assert by_ref[charged].default_payment_method == method
    assert (by_ref[invoiced].collection_method, by_ref[invoiced].days_until_due) == ("send_invoice", 14)
    bad = api.post(
        "/api/v1/subscriptions",
        json={"customerId": "cust-bob", "planId": "plan-pro", "billingInformation": {"invoiceDaysUntilDue": "soon"}},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_invoice_days_until_due_is_forwarded_once_and_not_kept(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """`invoiceDaysUntilDue` is billing information (Stigg's SubscriptionBillingInfo, never returned on a
    subscription): it reaches the Stripe subscription through the sealed job and Entitle keeps nothing, so a
    later update that does not give it leaves Stripe's value alone instead of re-sending a stored one."""
    connected_with_pro(server, api, stripe_emulator)
    create_coupon(api, "loyal", percentOff=15)
    paying_customer(api, stripe_emulator)
    paying_customer(api, stripe_emulator, "cust-bob")
    invoiced = {"paymentCollectionMethod": "INVOICE", "billingPeriod": "MONTHLY"}
    ref = provision(api, "cust-ada", "plan-pro", **invoiced, billingInformation={"invoiceDaysUntilDue": 14})
    zero = provision(api, "cust-bob", "plan-pro", **invoiced, billingInformation={"invoiceDaysUntilDue": 0})
    shown = api.get(f"/api/v1/subscriptions/{ref}").json()["data"]
    assert "invoiceDaysUntilDue" not in str(shown) and "billingInformation" not in shown
    assert "invoice_days_until_due" not in Subscription.__table__.columns
    Worker(server.db).drain()
    assert stripe_sub(server, stripe_emulator, ref).days_until_due == 14
    assert stripe_sub(server, stripe_emulator, zero).days_until_due == 0  # not the default
    assert all(job.sealed is None for job in jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB))

    # An update without it changes Stripe's coupon and leaves the days as Stripe holds them.
    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"appliedCoupon": {"couponId": "loyal"}})
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    after = stripe_sub(server, stripe_emulator, ref)
    assert discount_coupon(stripe_emulator, after.id) is not None and after.days_until_due == 14
    (write,) = update_writes(stripe_emulator)
    assert "days_until_due" not in (write.params or {})
    # An update giving it sends it, once.
    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"billingInformation": {"invoiceDaysUntilDue": 45}})
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    assert stripe_sub(server, stripe_emulator, ref).days_until_due == 45
    assert all(job.sealed is None for job in jobs_of(server, subscription_sync.UPDATE_SUBSCRIPTION_JOB))

    # Days for invoices a charged subscription never sends are refused, not dropped.
    resp = api.post(
        "/api/v1/subscriptions",
        json={"customerId": "cust-bob", "planId": "plan-pro", "billingInformation": {"invoiceDaysUntilDue": 7}},
    )
    assert resp.status_code == 400 and "paymentCollectionMethod INVOICE" in resp.json()["error"]["message"]


def test_invoice_days_until_due_with_no_integration_is_refused(server: LiveServer, api: httpx.Client) -> None:
    assert api.post("/api/v1/customers", json={"id": "cust-ada"}).status_code == 200
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    assert api.post("/api/v1/plans", json={"id": "plan-x", "displayName": "X", "productId": "acme"}).status_code == 200
    publish_plan(api, "plan-x")
    body = {
        "customerId": "cust-ada",
        "planId": "plan-x",
        "paymentCollectionMethod": "INVOICE",
        "billingInformation": {"invoiceDaysUntilDue": 14},
    }
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BILLING_INTEGRATION_REQUIRED", resp.text
    assert api.get("/api/v1/subscriptions", params={"customerId": "cust-ada"}).json()["data"] == []


def test_the_subscription_limit_per_stripe_customer_refuses_provisioning_without_a_half_write(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripe holds at most 500 active subscriptions per customer; the rule is the same with a limit of 2."""
    monkeypatch.setattr(subscription_sync, "LIMIT", 2)
    connected_with_pro(server, api, stripe_emulator)
    assert api.patch("/api/v1/products/acme", json={"multipleSubscriptions": True}).status_code == 200
    paying_customer(api, stripe_emulator)
    first = provision(api, "cust-ada", "plan-pro", id="sub-1")
    provision(api, "cust-ada", "plan-pro", id="sub-2")
    jobs_before = len(jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB))
    resp = api.post("/api/v1/subscriptions", json={"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-3"})
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"]["code"] == "BILLING_SUBSCRIPTION_LIMIT_REACHED"
    with server.db.read() as s:
        assert s.scalars(select(Subscription).where(Subscription.ref_id == "sub-3")).one_or_none() is None
    assert len(jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB)) == jobs_before
    # Ending one makes room again.
    resp = api.post(f"/api/v1/subscriptions/{first}/cancel", json={"cancellationTime": "IMMEDIATE"})
    assert resp.status_code == 200, resp.text
    provision(api, "cust-ada", "plan-pro", id="sub-3")
    Worker(server.db).drain()
    ada = customer_row(server, "cust-ada").billing_id
    assert len([s for s in subscriptions_of(stripe_emulator, ada) if s.status == "active"]) == 2
    assert subscription_row(server, "sub-3").billing_id is not None
