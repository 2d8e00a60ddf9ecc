"""The remaining subscription endpoints of the official client (issue 17), on both databases: import
(honoured, atomic, idempotent on ids), the pending-payment future update (honoured: none waits, 409), and
usage charge / sync (refused with a 409 that says why)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import stigg

from tests.support.clock import TestClock


@pytest.fixture
def catalog(client: stigg.Stigg) -> stigg.Stigg:
    c = client.v1
    c.features.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    c.products.create_product(id="app", display_name="App")
    c.plans.create(id="pro", display_name="Pro", product_id="app")
    c.plans.entitlements.create("pro", entitlements=[{"type": "FEATURE", "id": "sso"}])
    c.plans.update(
        "pro",
        charges={  # type: ignore[arg-type]
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [
                        {"billing_period": "MONTHLY", "price": {"amount": 10, "currency": "usd"}},
                        {"billing_period": "ANNUALLY", "price": {"amount": 100, "currency": "usd"}},
                    ],
                }
            ],
        },
        default_trial_config={"duration": 14, "units": "DAY"},
    )
    c.plans.publish("pro", migration_type="NEW_CUSTOMERS")
    c.customers.provision(id="acme")
    c.customers.provision(id="globex")
    return client


def test_import_brings_subscriptions_in_as_they_are_once(catalog: stigg.Stigg, test_clock: TestClock) -> None:
    c = catalog.v1
    signed = test_clock.now() - timedelta(days=40)
    ends = test_clock.now() + timedelta(days=300)
    rows = [
        {
            "id": "legacy-acme",
            "customer_id": "acme",
            "plan_id": "pro",
            "billing_period": "ANNUALLY",
            "start_date": signed,
            "end_date": ends,
            "billing_id": "sub_from_elsewhere",
            "metadata": {"source": "crm"},
        },
        {"id": "legacy-globex", "customer_id": "globex", "plan_id": "pro"},
    ]
    task = c.subscriptions.import_(subscriptions=rows).data  # type: ignore[arg-type]
    assert task.task_id
    acme = c.subscriptions.retrieve("legacy-acme").data
    # No trial (it is an existing subscription), no payment to wait for, its own start and end.
    assert (acme.status, acme.start_date, acme.end_date, acme.billing_id) == (
        "ACTIVE",
        signed,
        ends,
        "sub_from_elsewhere",
    )
    assert acme.trial_end_date is None and acme.metadata == {"source": "crm"}
    assert acme.billing_cycle_anchor == signed and acme.current_billing_period_start == signed
    assert c.customers.check_entitlement("globex", feature_id="sso").data.is_granted

    # Run again: the ids exist, nothing changes.
    again = c.subscriptions.import_(subscriptions=rows).data  # type: ignore[arg-type]
    assert again.task_id and again.task_id != task.task_id
    assert sorted(s.id for s in c.subscriptions.list().data) == ["legacy-acme", "legacy-globex"]


def test_a_bad_row_refuses_the_whole_import(catalog: stigg.Stigg, api: httpx.Client, test_clock: TestClock) -> None:
    c = catalog.v1
    c.customers.provision(id="initech")
    good = {"id": "ok-1", "customerId": "initech", "planId": "pro"}
    for bad, status, says in (
        ({"id": "bad", "customerId": "initech", "planId": "nope"}, 404, "subscriptions[1] ('bad')"),
        ({"id": "bad", "customerId": "nobody", "planId": "pro"}, 404, "subscriptions[1] ('bad')"),
        ({"id": "bad", "customerId": "initech", "planId": "pro"}, 409, "already has subscription 'ok-1'"),
        (
            {"id": "bad", "customerId": "acme", "planId": "pro", "endDate": test_clock.now().isoformat()},
            400,
            "endDate must be in the future",
        ),
        ({"id": "ok-1", "customerId": "acme", "planId": "pro"}, 400, "unique"),
        ({"id": "bad", "customerId": "acme", "planId": "pro", "billingPeriod": "WEEKLY"}, 400, "billingPeriod"),
    ):
        resp = api.post("/api/v1/subscriptions/import", json={"subscriptions": [good, bad]})
        assert resp.status_code == status and says in resp.text, (bad, resp.text)
        assert c.subscriptions.list(customer_id="initech").data == []  # the good row was not written either
    resp = api.post("/api/v1/subscriptions/import", json={"subscriptions": []})
    assert resp.status_code == 400


def test_pending_payment_updates_and_usage_billing_endpoints(catalog: stigg.Stigg, api: httpx.Client) -> None:
    c = catalog.v1
    c.subscriptions.provision(customer_id="acme", plan_id="pro", id="sub-1")
    # Updates never wait for a payment in Entitle: none is pending, which the endpoint says.
    with pytest.raises(stigg.ConflictError, match="no update waiting for a payment"):
        c.subscriptions.future_update.cancel_pending_payment("sub-1")
    with pytest.raises(stigg.NotFoundError):
        c.subscriptions.future_update.cancel_pending_payment("nope")
    for path, body in (("usage/charge", {}), ("usage/charge", None), ("usage/sync", None)):
        resp = api.post(f"/api/v1/subscriptions/sub-1/{path}", json=body)
        assert resp.status_code == 409 and "metered usage once" in resp.json()["error"]["message"], resp.text
        assert api.post(f"/api/v1/subscriptions/nope/{path}", json=body).status_code == 404
    # The date of a charge that is refused anyway is refused with it.
    resp = api.post("/api/v1/subscriptions/sub-1/usage/charge", json={"untilDate": "2030-01-01T00:00:00Z"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "UNSUPPORTED_FIELD"
