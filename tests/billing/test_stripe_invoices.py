"""Customer invoices read live from Stripe (`GET /api/v1/customers/{id}/invoices`) through the official
client, and removing the integration (`DELETE /api/v1/integrations/{id}`), on SQLite and PostgreSQL.

Endpoints and who emulates them (see tests/support/stripe_emulator.py): Invoices (GET /v1/invoices,
POST /v1/invoices), Invoice items, Customers and Subscriptions are localstripe's (localstripe makes and
pays a subscription's first invoice when it is created); Prices are the stand-in's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.billing.invoices import InvoiceQuery, select_invoices
from entitle.billing.models import PACKAGE, SUBSCRIPTION, SUCCESS
from entitle.billing.provider import ProviderInvoice
from entitle.db.pagination import PageRequest
from entitle.jobs.models import DEAD, SUCCEEDED
from entitle.jobs.service import Worker
from tests.billing.conftest import RealStripe, card_customer, connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of, make_plan, version
from tests.billing.test_stripe_checkout import connected, new_customer
from tests.billing.test_stripe_subscription_sync import (
    customer_row,
    jobs_of,
    provision,
    subscription_row,
)
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator


def test_no_provider_or_no_stripe_customer_lists_no_invoices(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    new_customer(api)
    client = server.stigg()
    assert list(client.v1.customers.list_invoices("cust-ada")) == []
    connect_stripe(api, stripe_emulator)
    assert list(client.v1.customers.list_invoices("cust-ada")) == []  # not synced: no Stripe customer
    assert api.get("/api/v1/customers/nobody/invoices").status_code == 404
    resp = api.get("/api/v1/customers/cust-ada/invoices", params={"stateIn": "PAID,LOST"})
    assert resp.status_code == 400 and "LOST" in resp.json()["error"]["message"]


def test_a_synced_customers_invoices_come_from_stripe(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected(server, api, stripe_emulator)
    card_customer(api, stripe_emulator, "cust-ada")
    provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    stripe_id = customer_row(server, "cust-ada").billing_id
    assert stripe_id is not None
    stripe_client = stripe_emulator.client()
    # A second invoice, left open: 12.50 of extra work.
    item: Any = {"customer": stripe_id, "amount": 1250, "currency": "usd", "description": "Extra work"}
    stripe_client.v1.invoice_items.create(params=item)
    draft_params: Any = {"customer": stripe_id}
    if isinstance(stripe_emulator, RealStripe):  # current API versions leave pending items off by default
        draft_params["pending_invoice_items_behavior"] = "include"
    draft = stripe_client.v1.invoices.create(params=draft_params)

    client = server.stigg()
    invoices = list(client.v1.customers.list_invoices("cust-ada"))
    assert len(invoices) == 2
    by_state = {i.state: i for i in invoices}
    paid, open_ = by_state["PAID"], by_state["OPEN"]
    assert open_.invoice_id == draft.id and open_.currency == "USD" and open_.paid_date is None
    # (localstripe also puts the subscription's next period on a new invoice; Stripe would not)
    assert (12.5, "Extra work") in [(line.amount, line.description) for line in open_.line_items]
    assert Decimal(str(open_.total)) == sum(Decimal(str(line.amount)) for line in open_.line_items)
    assert paid.total == 29.99 and paid.subtotal == 29.99 and paid.customer_external_id == "cust-ada"
    assert paid.invoice_external_id == paid.invoice_id and paid.invoice_id.startswith("in_")
    assert paid.paid_date is not None and paid.issue_date is not None
    (line,) = paid.line_items
    assert (line.amount, line.quantity, line.unit_price) == (29.99, 1, 29.99)

    # Filters, order and pages, as the contract's parameters ask.
    assert [i.invoice_id for i in client.v1.customers.list_invoices("cust-ada", state_in="OPEN")] == [draft.id]
    by_total = list(client.v1.customers.list_invoices("cust-ada", order_by="total", order_dir="DESC"))
    assert [i.total for i in by_total] == sorted([paid.total, open_.total], reverse=True)
    future = datetime.now(UTC) + timedelta(days=2)
    assert list(client.v1.customers.list_invoices("cust-ada", issued_after=future)) == []
    first = client.v1.customers.list_invoices("cust-ada", limit=1, order_by="total")
    assert [i.invoice_id for i in first.data] == [by_total[1].invoice_id] and first.has_next_page()
    second = first.get_next_page()
    assert [i.invoice_id for i in second.data] == [by_total[0].invoice_id] and not second.has_next_page()
    assert list(client.v1.customers.list_invoices("cust-ada", contract_external_id="c-1")) == []


# -- the pure paging rule --------------------------------------------------------------------------------


def _invoice(n: int, state: str, total: int) -> ProviderInvoice:
    return ProviderInvoice(
        id=f"in_{n:04d}",
        number=None,
        state=state,  # type: ignore[arg-type]
        currency="usd",
        issued_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=n),
        due_at=None,
        paid_at=None,
        subtotal_minor=Decimal(total),
        discount_minor=Decimal(0),
        tax_minor=Decimal(0),
        total_minor=Decimal(total),
        lines=(),
    )


@given(
    st.lists(st.tuples(st.sampled_from(["OPEN", "PAID", "CANCELED"]), st.integers(0, 10_000)), max_size=30),
    st.integers(1, 7),
    st.sampled_from(["issueDate", "dueDate", "total"]),
    st.sampled_from(["ASC", "DESC"]),
    st.one_of(st.none(), st.sets(st.sampled_from(["OPEN", "PAID", "CANCELED"]), min_size=1)),
)
def test_paging_forward_visits_every_matching_invoice_once_in_order(
    specs: list[tuple[str, int]], limit: int, order_by: Any, order_dir: Any, states: set[str] | None
) -> None:
    invoices = [_invoice(n, state, total) for n, (state, total) in enumerate(specs)]
    query = InvoiceQuery(states=tuple(states) if states else None, order_by=order_by, order_dir=order_dir)
    seen: list[str] = []
    page = select_invoices(invoices, query, PageRequest(limit=limit))
    while True:
        seen += [i.id for i in page.items]
        assert len(page.items) <= limit
        if page.next is None:
            break
        page = select_invoices(invoices, query, PageRequest(limit=limit, after=page.next))
    matching = [i for i in invoices if states is None or i.state in states]
    assert sorted(seen) == sorted(i.id for i in matching) and len(set(seen)) == len(seen)
    if order_by == "total":
        totals = [next(i.total_minor for i in invoices if i.id == ident) for ident in seen]
        assert totals == sorted(totals, reverse=order_dir == "DESC")
    # And back: `before` the last page's first item gives the page before it.
    if page.prev is not None:
        back = select_invoices(invoices, query, PageRequest(limit=limit, before=page.prev))
        assert [i.id for i in back.items] == seen[len(seen) - len(page.items) - len(back.items) : -len(page.items)]


# -- removing the integration ----------------------------------------------------------------------------


def test_removing_the_integration_stops_sync_and_keeps_links(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    integration = connected(server, api, stripe_emulator)
    card_customer(api, stripe_emulator, "cust-ada")
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    sub = subscription_row(server, ref)
    synced = link_of(server, SUBSCRIPTION, sub.pk)
    assert synced is not None and synced.sync_state == SUCCESS and sub.billing_id

    # A second paid subscription is queued for sync when the integration is removed.
    card_customer(api, stripe_emulator, "cust-bob")
    queued_ref = provision(api, "cust-bob", "plan-pro", billingPeriod="MONTHLY")
    resp = api.delete(f"/api/v1/integrations/{integration['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["id"] == integration["id"]
    assert api.get("/api/v1/integrations").json()["data"] == []
    assert api.delete(f"/api/v1/integrations/{integration['id']}").status_code == 404

    jobs = {j.payload["subscriptionPk"]: j for j in jobs_of(server, "billing.sync_subscription")}
    queued = jobs[subscription_row(server, queued_ref).pk]
    assert queued.status == DEAD and "removed" in (queued.last_error or "")
    assert Worker(server.db).drain() == 0  # nothing left to call Stripe with

    # Links and ids stay; Stripe is untouched (the subscription there is still active).
    kept = link_of(server, SUBSCRIPTION, sub.pk)
    assert kept is not None and (kept.sync_state, kept.billing_id) == (SUCCESS, sub.billing_id)
    assert stripe_emulator.client().v1.subscriptions.retrieve(sub.billing_id).status == "active"
    # Without a provider, a new paid subscription is active at once and nothing is queued for Stripe.
    make_plan(api, "plan-team")
    data = api.post("/api/v1/subscriptions", json={"customerId": "cust-ada", "planId": "plan-team"}).json()["data"]
    assert data["subscription"]["status"] == "ACTIVE"
    team, _ = version(server, "plan-team", 1)
    assert link_of(server, PACKAGE, team.pk) is None

    # Connecting again revives the same integration with its links; only what was published meanwhile syncs.
    again = connect_stripe(api, stripe_emulator)
    assert again["id"] == integration["id"]
    pro, _ = version(server, "plan-pro", 1)
    assert link_of(server, PACKAGE, pro.pk) is not None
    Worker(server.db).drain()
    team_link = link_of(server, PACKAGE, team.pk)
    assert team_link is not None and team_link.sync_state == SUCCESS
    assert [j.status for j in jobs_of(server, "billing.sync_package")].count(SUCCEEDED) == 2


@pytest.mark.parametrize("missing", ["no-such-integration"])
def test_removing_an_unknown_integration_is_not_found(api: httpx.Client, missing: str) -> None:
    resp = api.delete(f"/api/v1/integrations/{missing}")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "NOT_FOUND"
