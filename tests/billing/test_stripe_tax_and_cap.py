"""Stripe Tax and the 500-subscription cap, seen on the wire (issue 13, item 8), on SQLite and PostgreSQL.

What Entitle *sends* is read from the emulator's request log (`StandIn.writes()`: each POST's decoded form):
with tax enabled on the integration, the Checkout Session and Subscription requests ask for automatic tax;
without it they do not. The cap is Stripe's (Stigg documents it): a paying customer holding 500 open synced
subscriptions gets no 501st — the request is refused with 409 `BILLING_SUBSCRIPTION_LIMIT_REACHED`, nothing
is written and nothing is sent to Stripe. The 500 are real rows (one provisioned through the API and synced,
499 copies of it with their own billing links), so the count the refusal rests on is the production query.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, inspect, select

from entitle.billing.models import SUBSCRIPTION, BillingLink
from entitle.jobs.models import Job
from entitle.jobs.service import Worker
from entitle.subscriptions.models import Subscription
from tests.billing.conftest import card_customer
from tests.billing.test_stripe_checkout import CHECKOUT, connected, new_customer
from tests.billing.test_stripe_subscription_sync import subscription_row
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.emulator_only


def sent(emulator: StripeEmulator, path: str) -> list[dict[str, Any]]:
    return [w.params or {} for w in emulator.standin.writes() if w.path == path and not w.injected]


@pytest.mark.parametrize("tax", [True, False])
def test_checkout_sessions_and_subscriptions_ask_stripe_for_automatic_tax_when_it_is_on(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, tax: bool
) -> None:
    connected(server, api, stripe_emulator, taxEnabled=tax)
    new_customer(api)
    body = {"customerId": "cust-ada", "planId": "plan-pro", "id": "sub-ada", "checkoutOptions": CHECKOUT}
    assert api.post("/api/v1/subscriptions", json=body).status_code == 200
    card_customer(api, stripe_emulator, "cust-card")
    assert api.post("/api/v1/subscriptions", json={"customerId": "cust-card", "planId": "plan-pro"}).status_code == 200
    Worker(server.db).drain()

    (checkout,) = sent(stripe_emulator, "/v1/checkout/sessions")
    (created,) = sent(stripe_emulator, "/v1/subscriptions")
    if tax:
        assert checkout["automatic_tax"] == {"enabled": "true"} and created["automatic_tax"] == {"enabled": "true"}
        # Stripe computes tax from the customer's address: Checkout may record the one it collects.
        assert checkout["customer_update"]["address"] == "auto"
    else:
        assert "automatic_tax" not in checkout and "automatic_tax" not in created


def copies_of(server: LiveServer, ref: str, count: int) -> None:
    """`count` more open subscriptions like `ref`, each with its own SUCCESS billing link (a synced one)."""
    with server.db.transaction() as s:
        original = s.scalars(select(Subscription).where(Subscription.ref_id == ref)).one()
        link = s.scalars(
            select(BillingLink).where(BillingLink.entity_kind == SUBSCRIPTION, BillingLink.entity_pk == original.pk)
        ).one()
        columns = [c.key for c in inspect(Subscription).column_attrs if c.key != "pk"]
        link_columns = [c.key for c in inspect(BillingLink).column_attrs if c.key not in ("pk", "entity_pk")]
        for n in range(count):
            copy = Subscription(**{name: getattr(original, name) for name in columns})
            copy.ref_id = f"{ref}-copy-{n}"
            copy.billing_id = None
            s.add(copy)
            s.flush()
            linked = BillingLink(**{name: getattr(link, name) for name in link_columns}, entity_pk=copy.pk)
            linked.billing_id = f"sub_copy_{n}"
            s.add(linked)
        s.flush()


def test_a_customers_501st_active_stripe_subscription_is_refused_and_nothing_is_sent(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected(server, api, stripe_emulator)
    card_customer(api, stripe_emulator, "cust-many")
    first = {"customerId": "cust-many", "planId": "plan-pro", "id": "sub-many", "resourceId": "r-0"}
    assert api.post("/api/v1/subscriptions", json=first).status_code == 200, "the first one"
    Worker(server.db).drain()
    assert subscription_row(server, "sub-many").billing_id  # synced: one Stripe subscription
    copies_of(server, "sub-many", 499)  # 500 open, synced subscriptions paid by cust-many
    with server.db.read() as s:
        jobs_before = s.scalar(select(func.count()).select_from(Job))
        subs_before = s.scalar(select(func.count()).select_from(Subscription))
    writes_before = len(stripe_emulator.standin.writes())

    body = {"customerId": "cust-many", "planId": "plan-pro", "id": "sub-501", "resourceId": "r-501"}
    refused = api.post("/api/v1/subscriptions", json=body)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "BILLING_SUBSCRIPTION_LIMIT_REACHED"
    assert "500" in error["message"] and "already has 500 active subscriptions" in error["message"]
    assert refused.headers.get("x-should-retry") == "false"
    Worker(server.db).drain()
    with server.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == jobs_before
        assert s.scalar(select(func.count()).select_from(Subscription)) == subs_before
    assert len(stripe_emulator.standin.writes()) == writes_before  # nothing went to Stripe

    # One of the 500 ends: the next one is accepted and reaches Stripe.
    cancel = {"cancellationTime": "IMMEDIATE"}
    assert api.post("/api/v1/subscriptions/sub-many-copy-0/cancel", json=cancel).status_code == 200
    accepted = api.post("/api/v1/subscriptions", json=body)
    assert accepted.status_code == 200, accepted.text
    Worker(server.db).drain()
    assert any(
        p.get("metadata", {}).get("entitleSubscriptionId") == "sub-501"
        for p in sent(stripe_emulator, "/v1/subscriptions")
    )
    assert subscription_row(server, "sub-501").billing_id
