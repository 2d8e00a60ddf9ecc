"""Usage periods sent once, and right (issue 13, item 6), on SQLite and PostgreSQL, against the emulator.

- Only a draft renewal invoice (`billing_reason` `subscription_cycle`, with a period) closes a billing
  period: the emulator's first `invoice.created` (localstripe's carries no `billing_reason`) reports nothing
  and marks nothing as sent.
- Across a renewal each period's usage reaches the meter once, also when a report's first attempt reached
  Stripe but its answer was lost and the retry comes after Stripe's 24-hour identifier window (the stand-in's
  `pass_identifier_window()` makes Stripe forget identifiers and idempotency keys, as Stripe does): the
  retry reads the meter and sends nothing twice; one that never reached Stripe is still sent.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.billing import inbound, rules
from entitle.billing.models import IGNORED
from entitle.billing.usage_models import REPORT_PENDING, REPORT_SENT
from entitle.jobs.models import Job
from entitle.jobs.service import Worker
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_subscription_sync import paying_customer, provision, subscription_row
from tests.billing.test_stripe_usage_sync import (
    env_name,
    invoice_created,
    metered_plan,
    meters_named,
    report,
    reports,
    summary,
)
from tests.billing.test_stripe_webhooks import events_of, signed_post, stripe_event
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.emulator_only

instants = st.integers(1_600_000_000, 1_900_000_000)


@given(
    start=instants,
    length=st.integers(-10, 90 * 86400),
    reason=st.sampled_from([None, "subscription_cycle", "subscription_create", "subscription_update", "manual"]),
    status=st.sampled_from([None, "draft", "open", "paid"]),
)
def test_only_a_draft_renewal_invoice_with_a_period_closes_one(
    start: int, length: int, reason: str | None, status: str | None
) -> None:
    invoice: dict[str, Any] = {"period_start": start, "period_end": start + length}
    if reason is not None:
        invoice["billing_reason"] = reason
    if status is not None:
        invoice["status"] = status
    expected = (start, start + length) if reason == "subscription_cycle" and status in (None, "draft") else None
    if length <= 0:
        expected = None
    assert rules.renewal_period(invoice) == expected
    assert rules.renewal_period({**invoice, "period_end": None}) is None


@given(start=instants, length=st.integers(1, 90 * 86400), now_offset=st.integers(-86400, 200 * 86400))
def test_a_periods_event_lies_in_its_own_lookup_minutes_and_in_no_neighbours(
    start: int, length: int, now_offset: int
) -> None:
    begin = datetime.fromtimestamp(start, UTC)
    end = begin + timedelta(seconds=length)
    now = max(begin, begin + timedelta(seconds=now_offset))  # a report runs once its period has begun
    at = rules.usage_event_time(begin, end, now)
    assert begin <= at < end and at <= now
    since, until = rules.usage_lookup_range(begin, end)
    assert since.second == until.second == 0 and since.microsecond == until.microsecond == 0
    previous = rules.usage_event_time(begin - timedelta(seconds=length), begin, begin)
    assert not since <= previous < until
    if length >= 120:  # periods of whole minutes (Stripe's are days): the neighbours' events lie elsewhere
        following = rules.usage_event_time(end, end + timedelta(seconds=length), end + timedelta(days=400))
        assert not since <= following < until
        if now >= since:  # and the event is found where it lies
            assert at.second == 0 and since <= at < until


def metered_subscription(server: LiveServer, api: httpx.Client, emulator: StripeEmulator, **extra: Any) -> Any:
    integration = connect_stripe(api, emulator, **extra)
    metered_plan(api)
    Worker(server.db).drain()
    paying_customer(api, emulator)
    provision(api, "cust-ada", "plan-metered")
    Worker(server.db).drain()
    sub = subscription_row(server, "sub-cust-ada-plan-metered")
    assert sub.billing_id is not None
    return integration, sub


def test_an_invoice_event_without_a_renewal_period_marks_no_period_as_sent(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    secret = f"whsec_{secrets.token_hex(16)}"
    integration, sub = metered_subscription(server, api, stripe_emulator, webhookSecret=secret)
    start = int(sub.start_date.timestamp())
    # What localstripe sends for a subscription's first invoice: no billing_reason, a period of zero length.
    first = {"object": "invoice", "id": "in_first", "status": "draft", "subscription": sub.billing_id}
    for extra in ({"period_start": start, "period_end": start}, {"period_start": start, "period_end": start + 86400}):
        resp = signed_post(api, integration["id"], stripe_event("invoice.created", {**first, **extra}), secret)
        assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    assert [e.status for e in events_of(server, "invoice.created")] == [IGNORED, IGNORED]
    with server.db.read() as s:
        assert list(s.scalars(select(Job).where(Job.kind == inbound.REPORT_INVOICE_USAGE_JOB))) == []
    assert reports(server) == []  # the period is not recorded as sent (with 0 or anything else)
    report(api, 40)  # usage after those events still bills with the period
    # The renewal invoice then reports the period's whole usage.
    test_clock.advance(timedelta(days=31))
    renewal = {**first, "id": "in_renewal", "billing_reason": "subscription_cycle"}
    renewal |= {"period_start": start, "period_end": start + 30 * 86400}
    signed_post(api, integration["id"], stripe_event("invoice.created", renewal), secret)
    Worker(server.db).drain()
    (row,) = reports(server)
    assert (row.state, row.value) == (REPORT_SENT, 40)


def test_each_period_is_counted_once_across_a_renewal_even_when_a_retry_comes_after_stripes_window(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    _, sub = metered_subscription(server, api, stripe_emulator)
    customer = stripe_emulator.client().v1.subscriptions.retrieve(sub.billing_id).customer
    (meter,) = meters_named(stripe_emulator, rules.meter_event_name(env_name(server), "f-calls"))
    start = sub.start_date
    first_end, second_end, third_end = (start + timedelta(days=30 * n) for n in (1, 2, 3))
    worker = Worker(server.db)

    def sends() -> int:
        return len([w for w in stripe_emulator.standin.writes() if w.path == "/v1/billing/meter_events"])

    # Period 1: the event reaches Stripe, the answer is lost; the retry comes after the window passed.
    report(api, 120)
    test_clock.advance(timedelta(days=30, minutes=5))
    stripe_emulator.fail_next(1, path_prefix="/v1/billing/meter_events", after_execution=True)
    invoice_created(server, sub.billing_id, start, first_end)
    worker.drain()
    (row,) = reports(server)
    assert (row.state, row.value, sends()) == (REPORT_PENDING, 120, 1)
    assert summary(stripe_emulator, meter.id, customer, start, first_end) == 120  # Stripe has it
    test_clock.advance(timedelta(hours=25))
    stripe_emulator.standin.pass_identifier_window()
    worker.drain()
    (row,) = reports(server)
    assert row.state == REPORT_SENT and sends() == 1  # read from the meter, not sent again
    assert summary(stripe_emulator, meter.id, customer, start, first_end) == 120

    # Period 2 (after the renewal): the first attempt never reaches Stripe; after the window it is sent.
    report(api, 30)
    test_clock.set(second_end + timedelta(minutes=5))
    stripe_emulator.fail_next(1, path_prefix="/v1/billing/meter_events")
    invoice_created(server, sub.billing_id, first_end, second_end)
    worker.drain()
    test_clock.advance(timedelta(hours=25))
    stripe_emulator.standin.pass_identifier_window()
    worker.drain()
    _, second = reports(server)
    assert (second.state, second.value) == (REPORT_SENT, 30)
    assert summary(stripe_emulator, meter.id, customer, first_end, second_end) == 30

    # Period 3 goes through at once; Stripe's event delivered again after the window sends nothing.
    report(api, 7)
    test_clock.set(third_end + timedelta(minutes=5))
    invoice_created(server, sub.billing_id, second_end, third_end)
    worker.drain()
    test_clock.advance(timedelta(days=2))
    stripe_emulator.standin.pass_identifier_window()
    invoice_created(server, sub.billing_id, second_end, third_end)
    worker.drain()
    assert [(r.state, r.value) for r in reports(server)] == [(REPORT_SENT, 120), (REPORT_SENT, 30), (REPORT_SENT, 7)]
    for since, until, value in ((start, first_end, 120), (first_end, second_end, 30), (second_end, third_end, 7)):
        assert summary(stripe_emulator, meter.id, customer, since, until) == value
    assert summary(stripe_emulator, meter.id, customer, start, third_end) == 157
