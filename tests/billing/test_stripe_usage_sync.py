"""Usage-based charges billed by Stripe: a metered price per charge backed by a Billing Meter per feature,
and the period's usage reported as one meter event, exactly once, on SQLite and PostgreSQL.

Endpoints and who emulates them (tests/support/stripe_emulator.py): Billing Meters (POST/GET
/v1/billing/meters), Meter events (POST /v1/billing/meter_events, where an `identifier` counts once) and
Meter event summaries (GET /v1/billing/meters/{id}/event_summaries) are the stand-in's; Prices too
(a metered price needs `recurring[meter]` naming an existing meter), mirrored as localstripe Plans;
Customers and Subscriptions are localstripe's. Not emulated: meter events reaching localstripe invoices,
so these tests read the usage Stripe would bill from the event summaries.

`billing.report_invoice_usage` is enqueued by the inbound webhook handler on `invoice.created`; here the
test enqueues it with the payload that handler sends.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.billing import rules, usage_sync
from entitle.billing.models import PACKAGE_CHARGE, SUCCESS, Integration
from entitle.billing.usage_models import REPORT_PENDING, REPORT_SENT, BillingUsageReport
from entitle.environments.models import Environment
from entitle.jobs.models import Job
from entitle.jobs.service import JobContext, Worker, enqueue
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_catalog_sync import flat, link_of, publish_plan, version
from tests.billing.test_stripe_subscription_sync import (
    paying_customer,
    provision,
    subscription_row,
)
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator


def metered_plan(api: httpx.Client) -> None:
    """2 cents per API call, billed monthly from the usage reported to Stripe."""
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    feature = {"id": "f-calls", "displayName": "API calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"}
    assert api.post("/api/v1/features", json=feature).status_code == 200
    plan = {"id": "plan-metered", "displayName": "Metered", "productId": "acme"}
    assert api.post("/api/v1/plans", json=plan).status_code == 200
    charges = {
        "pricingType": "PAID",
        "pricingModels": [
            {"billingModel": "USAGE_BASED", "featureId": "f-calls", "pricePeriods": [flat("MONTHLY", 0.02)]}
        ],
    }
    resp = api.patch("/api/v1/plans/plan-metered", json={"charges": charges})
    assert resp.status_code == 200, resp.text
    publish_plan(api, "plan-metered")


def report(api: httpx.Client, value: int) -> None:
    resp = api.post(
        "/api/v1/usage", json={"usages": [{"customerId": "cust-ada", "featureId": "f-calls", "value": value}]}
    )
    assert resp.status_code == 200, resp.text


def env_name(server: LiveServer) -> str:
    with server.db.read() as s:
        env = s.scalars(select(Environment).order_by(Environment.pk)).first()
        assert env is not None
        return env.name


def invoice_created(server: LiveServer, billing_id: str, start: Any, end: Any) -> Job:
    """What the inbound handler enqueues when Stripe sends `invoice.created`."""
    sub = subscription_row(server, "sub-cust-ada-plan-metered")
    with server.db.transaction() as s:
        integration = s.scalars(select(Integration)).one()
        job = enqueue(
            s,
            sub.environment_id,
            usage_sync.REPORT_INVOICE_USAGE_JOB,
            {
                "integrationPk": integration.pk,
                "invoiceId": "in_test",
                "subscriptionBillingId": billing_id,
                "periodStart": int(start.timestamp()),
                "periodEnd": int(end.timestamp()),
            },
        )
        s.flush()
        s.expunge(job)
        return job


def summary(emulator: StripeEmulator, meter_id: str, customer: str, start: Any, end: Any) -> float:
    params: Any = {"customer": customer, "start_time": int(start.timestamp()), "end_time": int(end.timestamp())}
    (row,) = emulator.client().v1.billing.meters.event_summaries.list(meter_id, params=params).data
    return float(row.aggregated_value)


def meters_named(emulator: StripeEmulator, event_name: str) -> list[Any]:
    """The active meters with the event name (real Stripe test mode keeps other tests' meters)."""
    found = emulator.client().v1.billing.meters.list(params={"status": "active", "limit": 100}).data
    return [m for m in found if m.event_name == event_name]


def reports(server: LiveServer) -> list[BillingUsageReport]:
    with server.db.read() as s:
        return list(s.scalars(select(BillingUsageReport).order_by(BillingUsageReport.period_start)))


def test_a_usage_based_charge_becomes_a_metered_price_on_a_meter(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    metered_plan(api)
    Worker(server.db).drain()
    (meter,) = meters_named(stripe_emulator, rules.meter_event_name(env_name(server), "f-calls"))
    assert meter.default_aggregation.formula == "sum"
    assert meter.customer_mapping.event_payload_key == "stripe_customer_id"
    _, charges = version(server, "plan-metered", 1)
    (charge,) = charges
    link = link_of(server, PACKAGE_CHARGE, charge.pk)
    assert link is not None and link.sync_state == SUCCESS and link.billing_id
    price = stripe_emulator.client().v1.prices.retrieve(link.billing_id)
    assert price.recurring is not None
    assert (price.recurring.usage_type, price.recurring.meter, price.unit_amount) == ("metered", meter.id, 2)

    paying_customer(api, stripe_emulator)
    provision(api, "cust-ada", "plan-metered")
    Worker(server.db).drain()
    sub = stripe_emulator.client().v1.subscriptions.retrieve(
        str(subscription_row(server, "sub-cust-ada-plan-metered").billing_id)
    )
    (item,) = sub["items"].data
    assert item.plan.id == link.billing_id  # the metered price is the subscription's item


def test_the_period_usage_is_reported_once_despite_a_duplicated_job_and_a_crash(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    test_clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connect_stripe(api, stripe_emulator)
    metered_plan(api)
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    provision(api, "cust-ada", "plan-metered")
    Worker(server.db).drain()
    sub = subscription_row(server, "sub-cust-ada-plan-metered")
    assert sub.billing_id is not None
    customer = stripe_emulator.client().v1.subscriptions.retrieve(sub.billing_id).customer
    (meter,) = meters_named(stripe_emulator, rules.meter_event_name(env_name(server), "f-calls"))
    start = sub.start_date
    end = start + timedelta(days=30)
    report(api, 100)
    report(api, 20)

    # The worker dies after Stripe took the event but before the row was marked sent.
    job = invoice_created(server, sub.billing_id, start, end)
    ctx = JobContext(job.pk, job.environment_id, job.kind, dict(job.payload), attempt=1)
    mark_sent = usage_sync._mark_sent

    def crash(*_: Any) -> None:
        raise SystemExit("worker killed before recording")

    monkeypatch.setattr(usage_sync, "_mark_sent", crash)
    with pytest.raises(SystemExit):
        usage_sync.report_invoice_usage(server.db, ctx)
    (row,) = reports(server)
    assert (row.state, row.value) == (REPORT_PENDING, 120)
    monkeypatch.setattr(usage_sync, "_mark_sent", mark_sent)
    report(api, 5)  # usage after the first measurement does not change what this period bills
    usage_sync.report_invoice_usage(server.db, ctx)  # the same job again
    invoice_created(server, sub.billing_id, start, end)  # and Stripe's event delivered twice
    Worker(server.db).drain()

    (row,) = reports(server)
    assert (row.state, row.value) == (REPORT_SENT, 120)
    assert row.identifier == rules.usage_identifier(sub.ref_id, "f-calls", start)
    assert summary(stripe_emulator, meter.id, customer, start, end) == 120
    assert len(stripe_emulator.standin.meter_events) == 1
    sends = [w for w in stripe_emulator.standin.writes() if w.path == "/v1/billing/meter_events"]
    assert len(sends) == 2  # the crashed run and its re-run, under one identifier; the duplicate sent nothing

    # The next period bills only its own usage.
    test_clock.advance(timedelta(days=31))
    report(api, 30)
    invoice_created(server, sub.billing_id, end, end + timedelta(days=30))
    Worker(server.db).drain()
    _, second = reports(server)
    assert (second.state, second.value) == (REPORT_SENT, 35)
    assert summary(stripe_emulator, meter.id, customer, end, end + timedelta(days=30)) == 35
    assert summary(stripe_emulator, meter.id, customer, start, end) == 120
    assert len(stripe_emulator.standin.meter_events) == 2
