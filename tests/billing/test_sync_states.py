"""Sync states through the API: `GET /api/v1/integrations/{id}/sync-states` and `syncStates` on customers
and subscriptions, against the local Stripe, on SQLite and PostgreSQL.

Endpoints and who emulates them (see tests/support/stripe_emulator.py): Products, Customers and
Subscriptions are localstripe's; Prices and the injected failure (`fail_next`) the stand-in's.
Emulator only: the ERROR case needs failure injection.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from entitle.billing.models import CUSTOMER, ERROR, NO_SYNC_REQUIRED, PACKAGE, SUBSCRIPTION, SUCCESS
from entitle.jobs.service import Worker
from tests.billing.conftest import card_customer, connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of, make_plan, publish_plan, version
from tests.billing.test_stripe_subscription_sync import customer_row, provision, subscription_row
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.emulator_only


def states(api: httpx.Client, integration_id: str, **params: Any) -> list[dict[str, Any]]:
    resp = api.get(f"/api/v1/integrations/{integration_id}/sync-states", params=params)
    assert resp.status_code == 200, resp.text
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


def test_sync_states_show_success_error_and_no_sync_required(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    integration = connect_stripe(api, stripe_emulator)["id"]
    make_plan(api)
    body = {"id": "plan-free", "displayName": "Free", "productId": "acme"}
    assert api.post("/api/v1/plans", json=body).status_code == 200
    publish_plan(api, "plan-free")
    worker = Worker(server.db)
    worker.drain()

    # Plans: one state per published version, SUCCESS with the Stripe product, or NO_SYNC_REQUIRED with why.
    pro, _ = version(server, "plan-pro", 1)
    product = link_of(server, PACKAGE, pro.pk)
    assert product is not None and product.billing_id
    (shown,) = states(api, integration, entityType="PLAN", entityId="plan-pro")
    assert shown["syncedAt"] is not None
    assert {k: v for k, v in shown.items() if k != "syncedAt"} == {
        "entityType": "PLAN",
        "entityId": "plan-pro",
        "entityVersion": 1,
        "integrationId": integration,
        "vendorIdentifier": "STRIPE",
        "billingId": product.billing_id,
        "status": SUCCESS,
        "error": None,
        "reason": None,
    }
    (free_plan,) = states(api, integration, entityType="PLAN", entityId="plan-free")
    assert (free_plan["status"], free_plan["billingId"]) == (NO_SYNC_REQUIRED, None)
    assert "free plan" in free_plan["reason"]

    # A free subscription: NO_SYNC_REQUIRED with the reason, on the endpoint and on the subscription.
    card_customer(api, stripe_emulator, "cust-ada")
    free = provision(api, "cust-ada", "plan-free")
    (free_state,) = states(api, integration, entityType="SUBSCRIPTION", entityId=free)
    assert (free_state["status"], free_state["reason"]) == (NO_SYNC_REQUIRED, "free subscription: nothing to bill")
    on_sub = api.get(f"/api/v1/subscriptions/{free}").json()["data"]["syncStates"]
    assert [(s["status"], s["reason"], s["entityId"]) for s in on_sub] == [
        (NO_SYNC_REQUIRED, "free subscription: nothing to bill", free)
    ]

    # Stripe fails the subscription's creation: ERROR with the reason, while the job retries.
    stripe_emulator.fail_next(1, path_prefix="/v1/subscriptions", method="POST")
    paid = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    (pending,) = states(api, integration, entityType="SUBSCRIPTION", entityId=paid)
    assert (pending["status"], pending["billingId"], pending["error"]) == ("PENDING", None, None)
    worker.drain()
    (failed,) = states(api, integration, entityType="SUBSCRIPTION", entityId=paid)
    assert failed["status"] == ERROR and failed["billingId"] is None and failed["reason"] is None
    assert "attempt 1" in failed["error"]
    fetched = api.get(f"/api/v1/subscriptions/{paid}").json()["data"]
    assert [(s["status"], s["error"]) for s in fetched["syncStates"]] == [(ERROR, failed["error"])]
    # The customer was created at Stripe before the failure: its state is SUCCESS with its Stripe id.
    ada = customer_row(server, "cust-ada")
    (customer_state,) = states(api, integration, entityType="CUSTOMER", entityId="cust-ada")
    assert (customer_state["status"], customer_state["billingId"]) == (SUCCESS, ada.billing_id)
    customer = api.get("/api/v1/customers/cust-ada").json()["data"]
    assert [(s["entityType"], s["status"], s["billingId"]) for s in customer["syncStates"]] == [
        (CUSTOMER, SUCCESS, ada.billing_id)
    ]
    assert customer["integrations"] == [
        {"id": integration, "vendorIdentifier": "STRIPE", "syncedEntityId": ada.billing_id}
    ]

    # The retry (backoff elapsed) succeeds: SUCCESS with the Stripe subscription's id, the error gone.
    test_clock.advance(timedelta(hours=1))
    worker.drain()
    sub = subscription_row(server, paid)
    (recovered,) = states(api, integration, entityType="SUBSCRIPTION", entityId=paid)
    assert (recovered["status"], recovered["billingId"], recovered["error"]) == (SUCCESS, sub.billing_id, None)
    assert sub.billing_id and sub.billing_id.startswith("sub_")

    # Every state of the integration, page by page, oldest link first (prices are not listed).
    everything = states(api, integration, limit=100)
    assert {s["entityType"] for s in everything} == {"PLAN", CUSTOMER, SUBSCRIPTION}
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        resp = api.get(f"/api/v1/integrations/{integration}/sync-states", params=params).json()
        assert len(resp["data"]) <= 2
        seen += resp["data"]
        if resp["pagination"]["next"] is None:
            break
        params = {"limit": 2, "after": resp["pagination"]["next"]}
    assert seen == everything and len(everything) == 5  # two plans, a customer, two subscriptions
    subscription_link = link_of(server, SUBSCRIPTION, sub.pk)
    assert subscription_link is not None and subscription_link.sync_state == SUCCESS


def test_sync_states_refuse_bad_filters_and_unknown_integrations(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    integration = connect_stripe(api, stripe_emulator)["id"]
    path = f"/api/v1/integrations/{integration}/sync-states"
    for params in ({"entityId": "plan-pro"}, {"entityType": "PRICE"}, {"limit": 0}, {"after": "garbage!"}):
        resp = api.get(path, params=params)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["error"]["code"] == "INVALID_ARGUMENT"
    missing = api.get("/api/v1/integrations/no-such-integration/sync-states")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    # A removed integration's links stay, and so does their history.
    make_plan(api)
    Worker(server.db).drain()
    assert api.delete(f"/api/v1/integrations/{integration}").status_code == 200
    assert [s["status"] for s in states(api, integration, entityType="PLAN")] == [SUCCESS]
    # Another environment does not see it.
    with server.http(server.key("staging")) as other:
        assert other.get(path).status_code == 404


def test_a_new_customers_answer_shows_the_sync_its_own_transaction_started(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """A new customer's sync states are read unless its transaction already knows the environment has no
    integration: with one, billing information given at provisioning shows at once as a PENDING sync."""
    integration = connect_stripe(api, stripe_emulator)["id"]
    make_plan(api)
    body = {"id": "plan-free", "displayName": "Free", "productId": "acme"}
    assert api.post("/api/v1/plans", json=body).status_code == 200
    publish_plan(api, "plan-free")
    answers = []
    for customer_id, extra in (("cust-alone", {}), ("cust-journey", {"subscriptionParams": {"planId": "plan-free"}})):
        body = {"id": customer_id, "passthrough": {"stripe": {"customerName": "Ada"}}, **extra}
        answer = api.post("/api/v1/customers", json=body)
        assert answer.status_code == 200, answer.text
        shown = answer.json()["data"]["syncStates"]
        assert shown == api.get(f"/api/v1/customers/{customer_id}").json()["data"]["syncStates"]
        answers.append([(s["entityType"], s["entityId"], s["integrationId"], s["status"]) for s in shown])
    assert answers == [
        [(CUSTOMER, "cust-alone", integration, "PENDING")],
        [(CUSTOMER, "cust-journey", integration, "PENDING")],
    ]
