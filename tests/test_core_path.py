"""The whole core path through the official client: catalog -> customer -> subscription ->
entitlements -> usage and events -> limit -> reset on the next period -> cancel -> archive."""

from __future__ import annotations

from datetime import timedelta

import stigg

from tests.conftest import LiveServer
from tests.support.clock import TestClock


def build_catalog(client: stigg.Stigg) -> None:
    f = client.v1.features
    f.create_feature(id="seats", display_name="Seats", feature_type="NUMBER", meter_type="FLUCTUATING")
    f.create_feature(id="api-calls", display_name="API calls", feature_type="NUMBER", meter_type="INCREMENTAL")
    f.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    f.create_feature(
        id="tokens",
        display_name="Tokens",
        feature_type="NUMBER",
        meter_type="INCREMENTAL",
        meter={
            "aggregation": {"function": "SUM", "field": "tokens"},
            "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "completion"}]}],
        },
    )
    client.v1.products.create_product(id="main", display_name="Main")
    client.v1.plans.create(id="free", display_name="Free", product_id="main", pricing_type="FREE")
    client.v1.plans.entitlements.create(
        "free",
        entitlements=[
            {"type": "FEATURE", "id": "seats", "usage_limit": 1},
            {"type": "FEATURE", "id": "api-calls", "usage_limit": 100, "reset_period": "MONTH"},
        ],
    )
    client.v1.plans.publish("free", migration_type="NEW_CUSTOMERS")
    client.v1.plans.create(id="pro", display_name="Pro", product_id="main")
    client.v1.plans.entitlements.create(
        "pro",
        entitlements=[
            {"type": "FEATURE", "id": "seats", "usage_limit": 5},
            {"type": "FEATURE", "id": "api-calls", "usage_limit": 1000, "reset_period": "MONTH"},
            {"type": "FEATURE", "id": "sso"},
            {"type": "FEATURE", "id": "tokens", "usage_limit": 500, "reset_period": "MONTH"},
        ],
    )
    client.v1.plans.update(
        "pro",
        charges={
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 10, "currency": "usd"}}],
                }
            ],
        },
    )
    client.v1.plans.publish("pro", migration_type="NEW_CUSTOMERS")


def test_core_path(server: LiveServer, client: stigg.Stigg, test_clock: TestClock) -> None:
    build_catalog(client)
    client.v1.customers.provision(id="acme", name="Acme", email="ops@acme.test")

    none_yet = client.v1.customers.check_entitlement("acme", feature_id="sso").data
    assert (none_yet.is_granted, none_yet.access_denied_reason) == (False, "NoActiveSubscription")

    provisioned = client.v1.subscriptions.provision(customer_id="acme", plan_id="pro", billing_period="MONTHLY").data
    assert provisioned.status == "SUCCESS"
    sub = provisioned.subscription
    assert sub is not None
    assert (sub.status, sub.plan_id, sub.pricing_type) == ("ACTIVE", "pro", "PAID")
    assert sub.current_billing_period_end == test_clock.now() + timedelta(days=31)  # Jan 15 -> Feb 15

    listed = {e.feature.id: e for e in client.v1.customers.retrieve_entitlements("acme").data.entitlements}
    assert set(listed) == {"seats", "api-calls", "sso", "tokens"}
    assert listed["api-calls"].usage_limit == 1000
    assert listed["api-calls"].current_usage == 0
    assert listed["api-calls"].reset_period == "MONTH"
    assert listed["sso"].is_granted

    usage = client.v2.usage.report(
        usages=[{"customer_id": "acme", "feature_id": "api-calls", "value": 999, "idempotency_key": "u1"}]
    ).data.usages[0]
    assert usage.current_usage == 999
    client.v2.usage.report(
        usages=[{"customer_id": "acme", "feature_id": "api-calls", "value": 999, "idempotency_key": "u1"}]
    )  # a retry: not counted twice
    check = client.v1.customers.check_entitlement("acme", feature_id="api-calls", requested_usage=1).data
    assert (check.is_granted, check.current_usage) == (True, 999)
    client.v2.usage.report(usages=[{"customer_id": "acme", "feature_id": "api-calls", "value": 1}])
    denied = client.v1.customers.check_entitlement("acme", feature_id="api-calls", requested_usage=1).data
    assert (denied.is_granted, denied.access_denied_reason) == (False, "RequestedUsageExceedingLimit")
    assert denied.current_usage == 1000

    seats = client.v2.usage.report(
        usages=[{"customer_id": "acme", "feature_id": "seats", "value": 5, "update_behavior": "SET"}]
    ).data.usages[0]
    assert seats.current_usage == 5
    assert not client.v1.customers.check_entitlement("acme", feature_id="seats", requested_usage=1).data.is_granted

    client.v1.events.report(
        events=[
            {
                "customer_id": "acme",
                "event_name": "completion",
                "idempotency_key": f"e{i}",
                "dimensions": {"tokens": 100},
            }
            for i in range(4)
        ]
        + [{"customer_id": "acme", "event_name": "embedding", "idempotency_key": "x", "dimensions": {"tokens": 999}}]
    )
    tokens = client.v1.customers.check_entitlement("acme", feature_id="tokens", requested_usage=100).data
    assert (tokens.is_granted, tokens.current_usage) == (True, 400)
    client.v1.events.report(
        events=[
            {"customer_id": "acme", "event_name": "completion", "idempotency_key": "e9", "dimensions": {"tokens": 150}}
        ]
    )
    assert not client.v1.customers.check_entitlement("acme", feature_id="tokens", requested_usage=100).data.is_granted

    test_clock.advance(timedelta(days=31))  # into the next monthly window
    fresh = client.v1.customers.check_entitlement("acme", feature_id="api-calls", requested_usage=1).data
    assert (fresh.is_granted, fresh.current_usage) == (True, 0)
    assert client.v1.customers.check_entitlement("acme", feature_id="seats").data.current_usage == 5  # no reset
    history = client.v1.usage.history("api-calls", customer_id="acme", start_date=test_clock.now() - timedelta(days=40))
    assert [m.type for m in history.data.markers] == ["PERIODIC_RESET"]

    canceled = client.v1.subscriptions.cancel(sub.id, cancellation_time="IMMEDIATE").data
    assert canceled.status == "CANCELED"
    gone = client.v1.customers.check_entitlement("acme", feature_id="sso").data
    assert (gone.is_granted, gone.access_denied_reason) == (False, "NoActiveSubscription")

    client.v1.customers.archive("acme")
    archived = client.v1.customers.check_entitlement("acme", feature_id="sso").data
    assert archived.access_denied_reason == "CustomerIsArchived"


def test_denials_are_200s_with_reasons(client: stigg.Stigg) -> None:
    build_catalog(client)
    unknown = client.v1.customers.check_entitlement("nobody", feature_id="sso").data
    assert (unknown.is_granted, unknown.access_denied_reason) == (False, "CustomerNotFound")
    client.v1.customers.provision(id="c")
    client.v1.subscriptions.provision(customer_id="c", plan_id="free")
    assert client.v1.customers.check_entitlement("c", feature_id="nope").data.access_denied_reason == (
        "FeatureNotFound"
    )
    assert client.v1.customers.check_entitlement("c", feature_id="sso").data.access_denied_reason == (
        "NoFeatureEntitlementInSubscription"
    )


def test_archiving_a_customer_cancels_its_subscriptions(client: stigg.Stigg) -> None:
    build_catalog(client)
    client.v1.customers.provision(id="leaving")
    sub = client.v1.subscriptions.provision(customer_id="leaving", plan_id="pro").data.subscription
    assert sub is not None and sub.status == "ACTIVE"
    client.v1.customers.archive("leaving")
    ended = client.v1.subscriptions.retrieve(sub.id).data
    assert (ended.status, ended.cancel_reason) == ("CANCELED", "CustomerArchived")
    client.v1.customers.unarchive("leaving")
    assert not client.v1.customers.check_entitlement("leaving", feature_id="sso").data.is_granted
