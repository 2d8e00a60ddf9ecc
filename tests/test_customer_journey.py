from __future__ import annotations

import httpx
import stigg

from tests.conftest import LiveServer


def _catalog(client: stigg.Stigg) -> None:
    c = client.v1
    c.features.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    c.features.create_feature(id="seats", display_name="Seats", feature_type="NUMBER", meter_type="FLUCTUATING")
    c.products.create_product(id="app", display_name="App")
    c.plans.create(id="free", display_name="Free", product_id="app", pricing_type="FREE")
    c.plans.entitlements.create("free", entitlements=[{"type": "FEATURE", "id": "seats", "usage_limit": 1}])
    c.plans.publish("free", migration_type="NEW_CUSTOMERS")
    c.plans.create(id="pro", display_name="Pro", product_id="app")
    c.plans.entitlements.create(
        "pro", entitlements=[{"type": "FEATURE", "id": "sso"}, {"type": "FEATURE", "id": "seats", "usage_limit": 10}]
    )
    c.plans.update(
        "pro",
        charges={
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 20, "currency": "usd"}}],
                }
            ],
        },
        default_trial_config={"duration": 7, "units": "DAY"},
    )
    c.plans.publish("pro", migration_type="NEW_CUSTOMERS")


def _journey(client: stigg.Stigg, setup: str, plan: str) -> None:
    client.v1.products.update_product(
        "app",
        product_settings={
            "subscription_cancellation_time": "END_OF_BILLING_PERIOD",
            "subscription_end_setup": "CANCEL_SUBSCRIPTION",
            "subscription_start_setup": setup,
            "subscription_start_plan_id": plan,
        },
    )


def test_new_customers_start_on_the_free_plan(client: stigg.Stigg) -> None:
    _catalog(client)
    _journey(client, "FREE_PLAN", "free")
    client.v1.customers.provision(id="c")
    subs = list(client.v1.subscriptions.list(customer_id="c"))
    assert [(s.plan_id, s.status) for s in subs] == [("free", "ACTIVE")]
    assert client.v1.customers.check_entitlement("c", feature_id="seats").data.usage_limit == 1


def test_new_customers_start_in_a_trial(client: stigg.Stigg) -> None:
    _catalog(client)
    _journey(client, "TRIAL_PERIOD", "pro")
    client.v1.customers.provision(id="c")
    subs = list(client.v1.subscriptions.list(customer_id="c"))
    assert [(s.plan_id, s.status) for s in subs] == [("pro", "IN_TRIAL")]
    assert client.v1.customers.check_entitlement("c", feature_id="sso").data.is_granted


def test_subscription_params_provision_the_first_subscription_in_the_same_transaction(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client
) -> None:
    _catalog(client)
    _journey(client, "FREE_PLAN", "free")
    created = api.post(
        "/api/v1/customers",
        json={
            "id": "c",
            "name": "C",
            "subscriptionParams": {
                "planId": "pro",
                "billingPeriod": "MONTHLY",
                "trialOverrideConfiguration": {"isTrial": False},
            },
        },
    )
    assert created.status_code == 200, created.text
    subs = list(client.v1.subscriptions.list(customer_id="c"))
    assert [(s.plan_id, s.status) for s in subs] == [("pro", "ACTIVE")]  # the journey's free plan is skipped

    failed = api.post("/api/v1/customers", json={"id": "d", "subscriptionParams": {"planId": "no-such-plan"}})
    assert failed.status_code == 404
    assert api.get("/api/v1/customers/d").status_code == 404  # no customer without its subscription


def test_resources_are_listed_from_subscriptions(client: stigg.Stigg) -> None:
    _catalog(client)
    client.v1.products.update_product("app", multiple_subscriptions=True)
    client.v1.customers.provision(id="c")
    for site in ("site-a", "site-b", "site-a"):
        client.v1.subscriptions.provision(customer_id="c", plan_id="free", resource_id=site)
    assert [r.id for r in client.v1.customers.list_resources("c")] == ["site-a", "site-b"]
    first = client.v1.customers.list_resources("c", limit=1)
    assert [r.id for r in first.data] == ["site-a"]
    client.v1.customers.provision(id="d")
    assert list(client.v1.customers.list_resources("d")) == []
