"""Customer and subscription sync to Stripe through the outbox, against the local Stripe, on SQLite and
PostgreSQL.

Endpoints and who emulates them (see tests/support/stripe_emulator.py): Customers (POST /v1/customers),
Subscriptions (POST /v1/subscriptions, GET /v1/subscriptions/{id}, DELETE /v1/subscriptions/{id}) and
Payment methods are localstripe's; the Prices the catalog sync created are the stand-in's, mirrored as
localstripe Plans of the same id. localstripe charges a subscription's first invoice at once, so the
customer needs a payment method (here: `defaultPaymentMethod.billingId`, which the sync makes the Stripe
customer's default), and it accepts one item per subscription (so these plans bill one charge).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.billing import subscription_sync
from entitle.billing.models import CUSTOMER, ERROR, NO_SYNC_REQUIRED, PACKAGE_CHARGE, PENDING, SUBSCRIPTION, SUCCESS
from entitle.customers.models import Customer
from entitle.jobs.models import SUCCEEDED, Job
from entitle.jobs.service import JobContext, Worker
from entitle.subscriptions.models import Subscription
from tests.billing.conftest import card_payment_method, connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of, make_plan, publish_plan, version
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator


def jobs_of(server: LiveServer, kind: str) -> list[Job]:
    with server.db.read() as s:
        return list(s.scalars(select(Job).where(Job.kind == kind).order_by(Job.pk)))


def subscription_row(server: LiveServer, ref: str) -> Subscription:
    with server.db.read() as s:
        return s.scalars(select(Subscription).where(Subscription.ref_id == ref)).one()


def customer_row(server: LiveServer, ref: str) -> Customer:
    with server.db.read() as s:
        return s.scalars(select(Customer).where(Customer.ref_id == ref)).one()


def connected_with_pro(server: LiveServer, api: httpx.Client, emulator: StripeEmulator) -> None:
    """Stripe connected and a paid plan (29.99 monthly, 299 yearly) published and synced to Stripe."""
    connect_stripe(api, emulator)
    make_plan(api)
    assert Worker(server.db).drain() == 1


def paying_customer(api: httpx.Client, emulator: StripeEmulator, ref: str = "cust-ada") -> str:
    """A customer with a card (no raw card number: real Stripe takes none from a server)."""
    method = card_payment_method(emulator)
    body = {
        "id": ref,
        "name": "Ada",
        "email": "ada@example.com",
        "defaultPaymentMethod": {"billingId": method, "type": "CARD"},
    }
    resp = api.post("/api/v1/customers", json=body)
    assert resp.status_code == 200, resp.text
    return method


def provision(api: httpx.Client, customer: str, plan: str, **extra: Any) -> str:
    body = {"customerId": customer, "planId": plan, "id": f"sub-{customer}-{plan}", **extra}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200, resp.text
    return str(body["id"])


def stripe_subscriptions(emulator: StripeEmulator) -> list[Any]:
    return list(emulator.client().v1.subscriptions.list(params={"status": "all", "limit": 100}).data)


def stripe_customers(emulator: StripeEmulator) -> list[Any]:
    return list(emulator.client().v1.customers.list(params={"limit": 100}).data)


# Real Stripe test mode is never emptied: the helpers below find this test's objects through the ids Entitle
# recorded, and "the only one in the account" is asserted on the emulator alone (`emulated`).


def emulated(emulator: StripeEmulator) -> bool:
    return isinstance(emulator, StripeEmulator)


def stripe_customer_of(server: LiveServer, emulator: StripeEmulator, ref: str) -> Any:
    """The Stripe customer Entitle recorded for customer `ref`."""
    billing_id = customer_row(server, ref).billing_id
    assert billing_id is not None, f"customer {ref} has no Stripe customer"
    return emulator.client().v1.customers.retrieve(billing_id)


def subscriptions_of(emulator: StripeEmulator, customer_id: str | None) -> list[Any]:
    """Every Stripe subscription of one Stripe customer (made in this test: its id is new)."""
    assert customer_id is not None
    params: Any = {"customer": customer_id, "status": "all", "limit": 100}
    return list(emulator.client().v1.subscriptions.list(params=params).data)


def test_a_paid_subscription_becomes_a_stripe_customer_and_subscription(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTITLE_PUBLIC_URL", "https://entitle.example.com/")  # the worker (this process) reads it
    connected_with_pro(server, api, stripe_emulator)
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    sub = subscription_row(server, ref)
    pending = link_of(server, SUBSCRIPTION, sub.pk)
    assert pending is not None and pending.sync_state == PENDING  # set in the provisioning transaction
    writes_before = len(stripe_emulator.standin.writes())

    assert Worker(server.db).drain() == 1
    (job,) = jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB)
    assert job.status == SUCCEEDED and job.ordering_key is not None

    customer = stripe_customer_of(server, stripe_emulator, "cust-ada")
    if emulated(stripe_emulator):
        assert [c.id for c in stripe_customers(stripe_emulator)] == [customer.id]
    assert (customer.email, customer.name) == ("ada@example.com", "Ada")
    assert customer.metadata["entitleCustomerId"] == "cust-ada"
    # Links back to the customer's console page (issue 14).
    assert customer.metadata["entitleEntityUrl"] == "https://entitle.example.com/console/customers/cust-ada"
    (stripe_sub,) = subscriptions_of(stripe_emulator, customer.id)
    assert stripe_sub.status == "active" and stripe_sub.customer == customer.id
    assert stripe_sub.metadata["entitleSubscriptionId"] == ref
    assert stripe_sub.metadata["entitleCustomerId"] == "cust-ada"
    assert stripe_sub.metadata["entitlePlanId"] == "plan-pro"
    assert stripe_sub.metadata["entitleEntityUrl"] == f"https://entitle.example.com/console/subscriptions/{ref}"
    _, charges = version(server, "plan-pro", 1)
    (monthly,) = [c for c in charges if c.billing_period == "MONTHLY"]
    price_link = link_of(server, PACKAGE_CHARGE, monthly.pk)
    assert price_link is not None
    (item,) = stripe_sub["items"].data
    assert (item.plan.id, item.quantity, item.plan.amount) == (price_link.billing_id, 1, 2999)

    sub_link = link_of(server, SUBSCRIPTION, sub.pk)
    assert sub_link is not None and (sub_link.sync_state, sub_link.billing_id) == (SUCCESS, stripe_sub.id)
    cust = customer_row(server, "cust-ada")
    cust_link = link_of(server, CUSTOMER, cust.pk)
    assert cust_link is not None and (cust_link.sync_state, cust_link.billing_id) == (SUCCESS, customer.id)
    assert cust.billing_id == customer.id
    assert subscription_row(server, ref).billing_id == stripe_sub.id
    # The wire shows the ids too.
    assert api.get(f"/api/v1/subscriptions/{ref}").json()["data"]["billingId"] == stripe_sub.id
    # Every write of the job carried a key derived from it, one suffix per call.
    keys = [w.idempotency_key for w in stripe_emulator.standin.writes()[writes_before:]]
    assert keys == [f"entitle-job-{job.pk}:customer", f"entitle-job-{job.pk}:subscription"]


def test_free_and_trial_subscriptions_are_not_synced(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    body = {"id": "plan-free", "displayName": "Free", "productId": "acme"}
    assert api.post("/api/v1/plans", json=body).status_code == 200
    publish_plan(api, "plan-free")
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator, "cust-free")
    paying_customer(api, stripe_emulator, "cust-trial")
    free_ref = provision(api, "cust-free", "plan-free")
    trial_end = (datetime.now(UTC) + timedelta(days=14)).isoformat()
    trial_ref = provision(
        api, "cust-trial", "plan-pro", trialOverrideConfiguration={"isTrial": True, "trialEndDate": trial_end}
    )
    assert Worker(server.db).drain() == 0
    assert jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB) == []
    assert (
        customer_row(server, "cust-free").billing_id is None and customer_row(server, "cust-trial").billing_id is None
    )
    if emulated(stripe_emulator):
        assert stripe_customers(stripe_emulator) == [] and stripe_subscriptions(stripe_emulator) == []
    for ref, word in ((free_ref, "free"), (trial_ref, "trial")):
        sub = subscription_row(server, ref)
        link = link_of(server, SUBSCRIPTION, sub.pk)
        assert link is not None and link.sync_state == NO_SYNC_REQUIRED and word in (link.reason or "")
        assert sub.billing_id is None
    # Cancelling an unsynced subscription sends nothing to Stripe either.
    resp = api.post(f"/api/v1/subscriptions/{trial_ref}/cancel", json={"cancellationTime": "IMMEDIATE"})
    assert resp.status_code == 200, resp.text
    assert jobs_of(server, subscription_sync.CANCEL_SUBSCRIPTION_JOB) == []


def test_subscription_sync_can_be_turned_off(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator, syncSubscriptions=False)
    make_plan(api)
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro")
    assert Worker(server.db).drain() == 0
    assert customer_row(server, "cust-ada").billing_id is None and subscription_row(server, ref).billing_id is None
    if emulated(stripe_emulator):
        assert stripe_subscriptions(stripe_emulator) == []
    link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert link is not None and link.sync_state == NO_SYNC_REQUIRED and "turned off" in (link.reason or "")


def crash_first_sync(
    server: LiveServer,
    api: httpx.Client,
    emulator: StripeEmulator,
    monkeypatch: pytest.MonkeyPatch,
    recorder: str,
) -> tuple[str, Job, JobContext]:
    """A paid subscription whose first sync job dies (SystemExit) where `subscription_sync.<recorder>` would
    have recorded what Stripe made; returns the subscription, the job and its context, the recorder back."""
    connected_with_pro(server, api, emulator)
    paying_customer(api, emulator)
    ref = provision(api, "cust-ada", "plan-pro")
    (job,) = jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB)
    ctx = JobContext(job.pk, job.environment_id, job.kind, dict(job.payload), attempt=1)

    def crash(*_: Any) -> None:
        raise SystemExit(f"worker killed before {recorder}")

    with monkeypatch.context() as patched:
        patched.setattr(subscription_sync, recorder, crash)
        with pytest.raises(SystemExit):
            subscription_sync.sync_subscription(server.db, ctx)
    return ref, job, ctx


def test_rerunning_the_job_after_a_crash_creates_one_customer_and_one_subscription(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after Stripe answered but before the ids were recorded; the job runs again."""
    ref, job, ctx = crash_first_sync(server, api, stripe_emulator, monkeypatch, "_record")
    link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert link is not None and link.sync_state == PENDING  # nothing recorded
    subscription_sync.sync_subscription(server.db, ctx)  # the same job again: the same idempotency keys

    customer = stripe_customer_of(server, stripe_emulator, "cust-ada")
    (stripe_sub,) = subscriptions_of(stripe_emulator, customer.id)
    # The customer was recorded as soon as Stripe made it: the re-run refreshes it instead of creating
    # it again; the subscription create is replayed from Stripe's saved answer.
    keys = [(w.idempotency_key, w.replayed) for w in stripe_emulator.standin.writes()[-4:]]
    assert keys == [
        (f"entitle-job-{job.pk}:customer", False),
        (f"entitle-job-{job.pk}:subscription", False),
        (f"entitle-job-{job.pk}:customer-update", False),
        (f"entitle-job-{job.pk}:subscription", True),
    ]
    link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert link is not None and (link.sync_state, link.billing_id) == (SUCCESS, stripe_sub.id)
    assert customer_row(server, "cust-ada").billing_id == customer.id
    # The queued job itself now finds the subscription recorded and calls Stripe no more.
    writes = len(stripe_emulator.standin.writes())
    assert Worker(server.db).drain() == 1
    assert jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB)[0].status == SUCCEEDED
    assert len(stripe_emulator.standin.writes()) == writes
    assert len(stripe_customers(stripe_emulator)) == 1 and len(stripe_subscriptions(stripe_emulator)) == 1


@pytest.mark.emulator_only  # a crash window and Stripe's search index (which lags at Stripe) on demand
def test_a_customer_edited_between_the_crash_and_the_rerun_is_found_not_created_again(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after Stripe made the customer, before `record_customer`; the customer is renamed
    before the job runs again, so the re-sent create differs and Stripe refuses its key (idempotency_error).
    The re-run finds the customer made first by its metadata instead of making a second one."""
    ref, job, ctx = crash_first_sync(server, api, stripe_emulator, monkeypatch, "record_customer")
    (made_first,) = stripe_customers(stripe_emulator)
    assert api.patch("/api/v1/customers/cust-ada", json={"name": "Ada Lovelace"}).status_code == 200

    subscription_sync.sync_subscription(server.db, ctx)

    refused = [w for w in stripe_emulator.standin.log if w.idempotency_key == f"entitle-job-{job.pk}:customer"]
    assert [w.status for w in refused] == [200, 400]  # the differing re-send was refused, not executed
    assert [c.id for c in stripe_customers(stripe_emulator)] == [made_first.id]
    assert customer_row(server, "cust-ada").billing_id == made_first.id
    (stripe_sub,) = subscriptions_of(stripe_emulator, made_first.id)
    link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert link is not None and (link.sync_state, link.billing_id) == (SUCCESS, stripe_sub.id)


def test_cancelling_in_entitle_cancels_the_stripe_subscription(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro")
    Worker(server.db).drain()
    (stripe_sub,) = subscriptions_of(stripe_emulator, customer_row(server, "cust-ada").billing_id)
    assert stripe_sub.status == "active"

    resp = api.post(f"/api/v1/subscriptions/{ref}/cancel", json={"cancellationTime": "IMMEDIATE"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["status"] == "CANCELED"
    assert Worker(server.db).drain() == 1
    (job,) = jobs_of(server, subscription_sync.CANCEL_SUBSCRIPTION_JOB)
    assert job.status == SUCCEEDED
    (after,) = subscriptions_of(stripe_emulator, customer_row(server, "cust-ada").billing_id)
    assert (after.id, after.status) == (stripe_sub.id, "canceled")


def test_a_subscription_cancelled_before_its_sync_ran_never_reaches_stripe(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro")
    resp = api.post(f"/api/v1/subscriptions/{ref}/cancel", json={"cancellationTime": "IMMEDIATE"})
    assert resp.status_code == 200, resp.text
    assert Worker(server.db).drain() == 2  # the sync job first (ordering key), then the cancellation
    assert customer_row(server, "cust-ada").billing_id is None and subscription_row(server, ref).billing_id is None
    if emulated(stripe_emulator):
        assert stripe_subscriptions(stripe_emulator) == []
    link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert link is not None and link.sync_state == NO_SYNC_REQUIRED and "ended" in (link.reason or "")


def test_a_subscription_waits_for_its_prices_and_a_lost_answer_is_replayed(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    """The catalog sync fails at first, so the subscription's job finds no Stripe price and retries;
    then Stripe creates the subscription but its answer is lost, and the retry gets that same one."""
    connect_stripe(api, stripe_emulator)
    stripe_emulator.fail_next(1, path_prefix="/v1/prices")
    make_plan(api)
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro")
    sub_pk = subscription_row(server, ref).pk
    worker = Worker(server.db)
    worker.drain()
    waiting = link_of(server, SUBSCRIPTION, sub_pk)
    assert waiting is not None and waiting.sync_state == ERROR
    assert "has no provider price yet" in (waiting.reason or "")
    stripe_emulator.fail_next(1, path_prefix="/v1/subscriptions", method="POST", after_execution=True)
    for _ in range(4):
        test_clock.advance(timedelta(hours=1))
        worker.drain()
    (job,) = jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB)
    assert job.status == SUCCEEDED and job.attempts >= 3
    (stripe_sub,) = stripe_subscriptions(stripe_emulator)
    assert len(stripe_customers(stripe_emulator)) == 1
    done = link_of(server, SUBSCRIPTION, sub_pk)
    assert done is not None and (done.sync_state, done.reason, done.billing_id) == (SUCCESS, None, stripe_sub.id)
    replays = [w for w in stripe_emulator.standin.writes() if w.idempotency_key == f"entitle-job-{job.pk}:subscription"]
    assert [(w.injected, w.replayed) for w in replays] == [(True, False), (False, True)]


def test_a_trial_that_converts_to_paid_is_synced_then(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    paying_customer(api, stripe_emulator)
    trial_end = (test_clock.now() + timedelta(days=14)).isoformat()
    trial = {"isTrial": True, "trialEndDate": trial_end}
    ref = provision(api, "cust-ada", "plan-pro", trialOverrideConfiguration=trial)
    Worker(server.db).drain()
    assert subscription_row(server, ref).billing_id is None
    if emulated(stripe_emulator):
        assert stripe_subscriptions(stripe_emulator) == []
    test_clock.advance(timedelta(days=15))
    Worker(server.db).drain()  # the trial converts, which enqueues the sync
    assert subscription_row(server, ref).status == "ACTIVE"
    (stripe_sub,) = subscriptions_of(stripe_emulator, customer_row(server, "cust-ada").billing_id)
    assert stripe_sub.status == "active" and stripe_sub.metadata["entitleSubscriptionId"] == ref
    link = link_of(server, SUBSCRIPTION, subscription_row(server, ref).pk)
    assert link is not None and (link.sync_state, link.billing_id) == (SUCCESS, stripe_sub.id)
