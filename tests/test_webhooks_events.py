"""Every webhook event type: each is emitted exactly once for its cause, with its payload.

Receivers are the local HTTP servers of `tests/test_webhooks.py` (allowed by its `webhook_env`
fixture: plain http to loopback in local development).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import stigg

from entitle.environments.service import ensure_environment
from entitle.jobs.service import Worker
from entitle.subscriptions import hooks
from entitle.subscriptions import lifecycle as subscriptions
from entitle.subscriptions.models import Subscription
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.test_core_path import build_catalog
from tests.test_webhooks import Receiver, create_hook
from tests.test_webhooks import receivers as receivers
from tests.test_webhooks import webhook_env as webhook_env

Event = dict[str, Any]


def drain(server: LiveServer) -> None:
    Worker(server.db).drain()


def of_type(receiver: Receiver, *types: str) -> list[Event]:
    return [e for e in receiver.events() if e["type"] in types]


def kinds(receiver: Receiver) -> list[str]:
    return [e["type"] for e in receiver.events()]


@pytest.fixture
def hooked(server: LiveServer, client: stigg.Stigg, api: httpx.Client, receivers: Any) -> Receiver:
    """The core-path catalog, a customer `acme`, and an endpoint that wants every event type."""
    build_catalog(client)
    receiver: Receiver = receivers()
    create_hook(api, receiver.url)
    client.v1.customers.provision(id="acme", name="Acme")
    drain(server)
    receiver.requests.clear()
    receiver._answers.clear()
    return receiver


def provision(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/subscriptions", json={"customerId": "acme", **body})
    assert response.status_code == 200, response.text
    sub: dict[str, Any] = response.json()["data"]["subscription"]
    return sub


def test_upgrade_sends_canceled_created_and_one_entitlement_change(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    free = provision(api, planId="free")
    drain(server)
    hooked.requests.clear()
    pro = provision(api, planId="pro")
    drain(server)
    assert kinds(hooked) == ["subscription.canceled", "entitlements.updated", "subscription.created"]
    canceled, changed, created = hooked.events()
    assert (canceled["data"]["subscriptionId"], canceled["data"]["status"]) == (free["id"], "CANCELED")
    assert canceled["data"]["cancelReason"] == "UPGRADE_OR_DOWNGRADE"
    assert changed["data"] == {"customerId": "acme", "resourceId": None}
    assert (created["data"]["subscriptionId"], created["data"]["planId"]) == (pro["id"], "pro")


def test_trial_ends_soon_then_converts(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    trial_end = test_clock.now() + timedelta(days=10)
    sub = provision(
        api, planId="pro", trialOverrideConfiguration={"isTrial": True, "trialEndDate": trial_end.isoformat()}
    )
    drain(server)
    assert kinds(hooked) == ["subscription.created", "entitlements.updated"]

    test_clock.advance(timedelta(days=6, hours=23))
    drain(server)
    assert of_type(hooked, "subscription.trial_ends_soon") == []  # 3 days before the end, not earlier
    test_clock.advance(timedelta(hours=2))
    drain(server)
    test_clock.advance(timedelta(days=1))
    drain(server)
    soon = of_type(hooked, "subscription.trial_ends_soon")
    assert len(soon) == 1
    assert soon[0]["data"]["subscriptionId"] == sub["id"] and soon[0]["data"]["status"] == "IN_TRIAL"
    assert soon[0]["data"]["trialEndDate"] == trial_end.isoformat().replace("+00:00", "Z")

    test_clock.advance(timedelta(days=3))
    drain(server)
    assert kinds(hooked)[-3:] == ["subscription.trial_ends_soon", "subscription.updated", "entitlements.updated"]
    updated = hooked.events()[-2]["data"]
    assert (updated["change"], updated["status"]) == ("TRIAL_CONVERTED", "ACTIVE")
    assert of_type(hooked, "subscription.trial_expired", "subscription.canceled", "subscription.expired") == []


def test_an_extended_trial_warns_once_for_its_new_end(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    trial_end = test_clock.now() + timedelta(days=10)
    sub = provision(
        api, planId="pro", trialOverrideConfiguration={"isTrial": True, "trialEndDate": trial_end.isoformat()}
    )
    later = trial_end + timedelta(days=10)
    assert api.patch(f"/api/v1/subscriptions/{sub['id']}", json={"trialEndDate": later.isoformat()}).status_code == 200
    for _ in range(20):
        test_clock.advance(timedelta(days=1))
        drain(server)
    soon = of_type(hooked, "subscription.trial_ends_soon")
    assert [e["data"]["trialEndDate"] for e in soon] == [later.isoformat().replace("+00:00", "Z")]


def test_trial_that_cancels_expires(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    trial_end = test_clock.now() + timedelta(days=5)
    sub = provision(
        api,
        planId="pro",
        trialOverrideConfiguration={
            "isTrial": True,
            "trialEndDate": trial_end.isoformat(),
            "trialEndBehavior": "CANCEL_SUBSCRIPTION",
        },
    )
    drain(server)
    hooked.requests.clear()
    test_clock.advance(timedelta(days=6))
    drain(server)
    assert kinds(hooked) == ["subscription.trial_expired", "entitlements.updated"]
    expired = hooked.events()[0]["data"]
    assert (expired["subscriptionId"], expired["status"], expired["cancelReason"]) == (
        sub["id"],
        "EXPIRED",
        "TRIAL_ENDED",
    )


def test_scheduled_cancellation_expires_at_its_date(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    sub = provision(api, planId="pro")
    drain(server)
    hooked.requests.clear()
    end = test_clock.now() + timedelta(days=3)
    response = api.post(
        f"/api/v1/subscriptions/{sub['id']}/cancel",
        json={"cancellationTime": "SPECIFIC_DATE", "endDate": end.isoformat()},
    )
    assert response.status_code == 200, response.text
    drain(server)
    assert kinds(hooked) == ["subscription.updated"]  # still active: entitlements unchanged
    assert hooked.events()[0]["data"]["change"] == "CANCELLATION_SCHEDULED"
    assert hooked.events()[0]["data"]["endDate"] == end.isoformat().replace("+00:00", "Z")

    test_clock.advance(timedelta(days=4))
    drain(server)
    assert kinds(hooked) == ["subscription.updated", "subscription.expired", "entitlements.updated"]
    assert hooked.events()[1]["data"]["status"] == "CANCELED"


def test_the_same_cancellation_again_sends_nothing_another_date_is_announced(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    """A repeat of a scheduled cancellation (a retried request, a second click in the console) changed
    nothing but sent `subscription.updated` CANCELLATION_SCHEDULED again: receivers act on it twice."""
    sub = provision(api, planId="pro")
    drain(server)
    hooked.requests.clear()
    end = test_clock.now() + timedelta(days=3)
    cancel = {"cancellationTime": "SPECIFIC_DATE", "endDate": end.isoformat()}
    for _ in range(2):
        assert api.post(f"/api/v1/subscriptions/{sub['id']}/cancel", json=cancel).status_code == 200
        drain(server)
    assert kinds(hooked) == ["subscription.updated"]
    later = end + timedelta(hours=1)
    moved = {"cancellationTime": "SPECIFIC_DATE", "endDate": later.isoformat()}
    assert api.post(f"/api/v1/subscriptions/{sub['id']}/cancel", json=moved).status_code == 200
    drain(server)
    assert kinds(hooked) == ["subscription.updated"] * 2
    assert hooked.events()[1]["data"]["change"] == "CANCELLATION_SCHEDULED"
    assert hooked.events()[1]["data"]["endDate"] == later.isoformat().replace("+00:00", "Z")


def test_updates_migration_delegation_and_transfer(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    sub = provision(api, planId="pro", resourceId="site-1")
    client.v1.customers.provision(id="other")
    drain(server)
    hooked.requests.clear()

    # Metadata only: the subscription changed, the entitlements did not.
    assert api.patch(f"/api/v1/subscriptions/{sub['id']}", json={"metadata": {"k": "v"}}).status_code == 200
    drain(server)
    assert kinds(hooked) == ["subscription.updated"]
    assert hooked.events()[0]["data"]["change"] == "UPDATED"
    hooked.requests.clear()

    overrides = {"entitlements": [{"type": "FEATURE", "id": "seats", "usageLimit": 50}]}
    assert api.patch(f"/api/v1/subscriptions/{sub['id']}", json=overrides).status_code == 200
    drain(server)
    assert kinds(hooked) == ["subscription.updated", "entitlements.updated"]
    assert hooked.events()[1]["data"] == {"customerId": "acme", "resourceId": "site-1"}
    hooked.requests.clear()

    # A new version published for all customers moves the subscription: MIGRATED.
    client.v1.plans.create_draft("pro")
    client.v1.plans.publish("pro", migration_type="ALL_CUSTOMERS")
    drain(server)
    assert kinds(hooked) == ["subscription.updated", "entitlements.updated"]
    assert hooked.events()[0]["data"]["change"] == "MIGRATED"
    hooked.requests.clear()

    moved = api.post(f"/api/v1/subscriptions/{sub['id']}/transfer", json={"destinationResourceId": "site-2"})
    assert moved.status_code == 200, moved.text
    drain(server)
    assert kinds(hooked) == ["subscription.updated", "entitlements.updated", "entitlements.updated"]
    assert hooked.events()[0]["data"]["change"] == "TRANSFERRED"
    assert [e["data"]["resourceId"] for e in hooked.events()[1:]] == ["site-2", "site-1"]
    hooked.requests.clear()

    handed = api.post(f"/api/v1/subscriptions/{sub['id']}/delegate", json={"targetCustomerId": "other"})
    assert handed.status_code == 200, handed.text
    drain(server)
    assert kinds(hooked) == ["subscription.updated", "entitlements.updated", "entitlements.updated"]
    delegated = hooked.events()[0]["data"]
    assert (delegated["change"], delegated["customerId"], delegated["payingCustomerId"]) == (
        "DELEGATED",
        "other",
        "acme",
    )
    assert {e["data"]["customerId"] for e in hooked.events()[1:]} == {"other", "acme"}


def test_delayed_start(server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock) -> None:
    start = test_clock.now() + timedelta(days=2)
    sub = provision(api, planId="pro", startDate=start.isoformat())
    drain(server)
    assert kinds(hooked) == ["subscription.created"]  # not started: grants nothing yet
    assert hooked.events()[0]["data"]["status"] == "NOT_STARTED"
    test_clock.advance(timedelta(days=2, minutes=1))
    drain(server)
    assert kinds(hooked) == ["subscription.created", "subscription.updated", "entitlements.updated"]
    started = hooked.events()[1]["data"]
    assert (started["subscriptionId"], started["change"], started["status"]) == (sub["id"], "STARTED", "ACTIVE")


class _PaymentRequired:
    def requires_payment(self, session: Any, subscription: Subscription) -> bool:
        return True


def test_payment_failed_and_succeeded(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    hooks.install_payment_gate(_PaymentRequired())
    try:
        sub = provision(api, planId="pro")
    finally:
        hooks.install_payment_gate(None)
    assert sub["status"] == "PAYMENT_PENDING"
    env = ensure_environment(server.db, "development").pk
    subscriptions.payment_failed(server.db, env, sub["id"], {"invoiceId": "in_1", "reason": "card_declined"})
    drain(server)
    assert kinds(hooked) == ["subscription.created", "subscription.updated", "customer.payment_failed"]
    failed = hooked.events()[2]["data"]
    assert failed == {
        "customerId": "acme",
        "subscriptionId": sub["id"],
        "subscriptionCustomerId": "acme",
        "planId": "pro",
        "status": "PAYMENT_PENDING",
        "paymentCollection": "FAILED",
        "details": {"invoiceId": "in_1", "reason": "card_declined"},
    }
    assert hooked.events()[1]["data"]["change"] == "PAYMENT_FAILED"  # still pending: no entitlement change
    hooked.requests.clear()

    subscriptions.payment_succeeded(server.db, env, sub["id"])
    drain(server)
    assert kinds(hooked) == ["subscription.updated", "entitlements.updated"]
    assert (hooked.events()[0]["data"]["change"], hooked.events()[0]["data"]["status"]) == (
        "PAYMENT_SUCCEEDED",
        "ACTIVE",
    )


def test_customer_archive_sends_one_entitlement_change(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    provision(api, planId="pro")
    drain(server)
    hooked.requests.clear()
    assert api.post("/api/v1/customers/acme/archive").status_code == 200
    drain(server)
    assert kinds(hooked) == ["subscription.canceled", "entitlements.updated", "customer.archived"]
    assert hooked.events()[0]["data"]["cancelReason"] == "CustomerArchived"


def test_promotion_expires_once_at_its_end(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    grant = {"promotionalEntitlements": [{"featureId": "sso", "period": "1 week"}]}
    assert api.post("/api/v1/customers/acme/promotional-entitlements", json=grant).status_code == 200
    test_clock.advance(timedelta(days=3))
    # Granted again: the grant now ends a week from here; the first end passes without an event.
    assert api.post("/api/v1/customers/acme/promotional-entitlements", json=grant).status_code == 200
    regranted_end = test_clock.now() + timedelta(weeks=1)
    test_clock.advance(timedelta(days=5))
    drain(server)
    assert of_type(hooked, "promotional_entitlement.expired") == []
    test_clock.advance(timedelta(days=3))
    drain(server)
    test_clock.advance(timedelta(days=30))
    drain(server)
    assert kinds(hooked) == [
        "promotional_entitlement.granted",
        "entitlements.updated",
        "promotional_entitlement.granted",
        "entitlements.updated",
        "promotional_entitlement.expired",
        "entitlements.updated",
    ]
    expired = hooked.events()[4]["data"]
    assert expired["featureId"] == "sso" and expired["customerId"] == "acme"
    assert expired["endDate"] == regranted_end.isoformat().replace("+00:00", "Z")


def test_a_revoked_promotion_does_not_expire(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    grant = {"promotionalEntitlements": [{"featureId": "sso", "period": "1 week"}]}
    assert api.post("/api/v1/customers/acme/promotional-entitlements", json=grant).status_code == 200
    assert api.delete("/api/v1/customers/acme/promotional-entitlements/sso").status_code == 200
    test_clock.advance(timedelta(days=8))
    drain(server)
    assert of_type(hooked, "promotional_entitlement.expired") == []


def report(api: httpx.Client, value: int, feature: str = "api-calls", behavior: str = "DELTA") -> httpx.Response:
    usage = {"customerId": "acme", "featureId": feature, "value": value, "updateBehavior": behavior}
    return api.post("/api/v2/usage", json={"usages": [usage]})


def test_hard_limit_reached_once_per_window(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    provision(api, planId="free")  # api-calls: 100 a month, hard
    assert report(api, 60).status_code == 200
    drain(server)
    assert of_type(hooked, "usage.limit_reached") == []
    assert report(api, 50).status_code == 200  # 110: crosses the limit
    # Usage past a hard limit is still recorded (the check denies access); the limit was reached once.
    assert report(api, 1).status_code == 200
    assert report(api, 1).status_code == 200
    drain(server)
    reached = of_type(hooked, "usage.limit_reached")
    assert len(reached) == 1
    data = reached[0]["data"]
    assert {k: data[k] for k in ("customerId", "featureId", "resourceId", "usageLimit", "currentUsage", "refused")} == {
        "customerId": "acme",
        "featureId": "api-calls",
        "resourceId": None,
        "usageLimit": 100,
        "currentUsage": 110,
        "refused": False,
    }
    assert data["usagePeriodStart"] is not None and data["usagePeriodEnd"] is not None

    test_clock.advance(timedelta(days=32))  # a new monthly window: a new crossing
    assert report(api, 100).status_code == 200
    drain(server)
    assert len(of_type(hooked, "usage.limit_reached")) == 2


def test_a_report_past_a_lowered_limit_is_recorded_and_announced(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    sub = provision(api, planId="pro")  # api-calls: 1000 a month
    assert report(api, 150).status_code == 200
    # The limit drops under the usage: no report crossed it; the next ones are recorded all the same.
    lowered = {"entitlements": [{"type": "FEATURE", "id": "api-calls", "usageLimit": 100, "resetPeriod": "MONTH"}]}
    assert api.patch(f"/api/v1/subscriptions/{sub['id']}", json=lowered).status_code == 200
    for _ in range(3):
        assert report(api, 5).status_code == 200
    drain(server)
    reached = of_type(hooked, "usage.limit_reached")
    assert len(reached) == 1
    assert (reached[0]["data"]["refused"], reached[0]["data"]["currentUsage"], reached[0]["data"]["usageLimit"]) == (
        False,
        155,
        100,
    )


def test_soft_limit_exceeded_once_per_window(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    soft = [{"type": "FEATURE", "id": "api-calls", "usageLimit": 10, "hasSoftLimit": True, "resetPeriod": "MONTH"}]
    provision(api, planId="free", entitlements=soft)
    assert report(api, 10).status_code == 200  # at the limit, not over it
    drain(server)
    assert of_type(hooked, "usage.soft_limit_exceeded") == []
    assert report(api, 1).status_code == 200
    assert report(api, 5).status_code == 200  # a soft limit never refuses
    drain(server)
    exceeded = of_type(hooked, "usage.soft_limit_exceeded")
    assert len(exceeded) == 1
    assert (exceeded[0]["data"]["usageLimit"], exceeded[0]["data"]["currentUsage"]) == (10, 11)
    assert of_type(hooked, "usage.limit_reached") == []
    test_clock.advance(timedelta(days=32))
    assert report(api, 11).status_code == 200
    drain(server)
    assert len(of_type(hooked, "usage.soft_limit_exceeded")) == 2


def test_metered_events_reaching_a_limit(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    provision(api, planId="pro")  # tokens: 500 a month, measured from "completion" events
    for n, tokens in enumerate([300, 250, 100]):
        event = {
            "customerId": "acme",
            "eventName": "completion",
            "idempotencyKey": f"e{n}",
            "dimensions": {"tokens": tokens},
        }
        assert api.post("/api/v1/events", json={"events": [event]}).status_code == 200, n
    drain(server)
    reached = of_type(hooked, "usage.limit_reached")
    assert [(e["data"]["featureId"], e["data"]["currentUsage"], e["data"]["refused"]) for e in reached] == [
        ("tokens", 550, False)
    ]


def test_scheduled_changes_apply_with_their_events(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    pro = provision(api, planId="pro")
    drain(server)
    hooked.requests.clear()
    # A migration at the end of the period: scheduled now, applied then.
    client.v1.plans.create_draft("pro")
    client.v1.plans.publish("pro", migration_type="NEW_CUSTOMERS")
    migrate = api.post(
        f"/api/v1/subscriptions/{pro['id']}/migrate", json={"subscriptionMigrationTime": "END_OF_BILLING_PERIOD"}
    )
    assert migrate.status_code == 200, migrate.text
    drain(server)
    assert [(e["type"], e["data"].get("change")) for e in hooked.events()] == [
        ("subscription.updated", "UPDATE_SCHEDULED")
    ]
    test_clock.advance(timedelta(days=32))
    drain(server)
    assert [(e["type"], e["data"].get("change")) for e in hooked.events()[1:]] == [
        ("subscription.updated", "FUTURE_UPDATE_APPLIED"),
        ("entitlements.updated", None),
    ]
    hooked.requests.clear()

    # A downgrade waits for the end of the period, then replaces the subscription.
    free = api.post("/api/v1/subscriptions", json={"customerId": "acme", "planId": "free"})
    assert free.status_code == 200, free.text
    drain(server)
    assert [(e["type"], e["data"].get("change")) for e in hooked.events()] == [
        ("subscription.updated", "UPDATE_SCHEDULED")
    ]
    test_clock.advance(timedelta(days=32))
    drain(server)
    assert kinds(hooked)[1:] == ["subscription.canceled", "entitlements.updated", "subscription.created"]
    assert hooked.events()[3]["data"]["planId"] == "free"
