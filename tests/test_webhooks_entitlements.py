"""`entitlements.updated` for every cause, on both channels: the outbound webhook and the push
change log (`push_events`, what `GET /api/v1/stream` serves) — and the causes that would change
entitlements silently are refused instead. Also: `subscription.trial_ends_soon` reaches an endpoint
created after the trial started.

Receivers are the local HTTP servers of `tests/test_webhooks.py`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import stigg
from sqlalchemy import func, select

from entitle.jobs.service import Worker
from entitle.push.models import KIND_ENTITLEMENTS, PushEvent
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.test_core_path import build_catalog
from tests.test_webhooks import Receiver, create_hook
from tests.test_webhooks import receivers as receivers
from tests.test_webhooks import webhook_env as webhook_env
from tests.test_webhooks_events import provision

Change = tuple[str, str | None]  # (customer, resource)


def drain(server: LiveServer) -> None:
    Worker(server.db).drain()


def push_mark(server: LiveServer) -> int:
    with server.db.read() as s:
        return int(s.scalar(select(func.max(PushEvent.id))) or 0)


def pushed_since(server: LiveServer, mark: int) -> list[Change]:
    """Entitlement changes the stream got after `mark`, in order."""
    with server.db.read() as s:
        rows = s.scalars(
            select(PushEvent).where(PushEvent.id > mark, PushEvent.kind == KIND_ENTITLEMENTS).order_by(PushEvent.id)
        )
        return [(r.customer_ref, r.resource_ref) for r in rows]


def announced(receiver: Receiver) -> list[Change]:
    return [
        (e["data"]["customerId"], e["data"]["resourceId"])
        for e in receiver.events()
        if e["type"] == "entitlements.updated"
    ]


def kinds(receiver: Receiver) -> list[str]:
    return [e["type"] for e in receiver.events()]


def reset(receiver: Receiver) -> None:
    receiver.requests.clear()
    receiver._answers.clear()


@pytest.fixture
def hooked(server: LiveServer, client: stigg.Stigg, api: httpx.Client, receivers: Any) -> Receiver:
    build_catalog(client)
    receiver: Receiver = receivers()
    create_hook(api, receiver.url)
    client.v1.customers.provision(id="acme", name="Acme")
    drain(server)
    reset(receiver)
    return receiver


def granted(api: httpx.Client, customer: str, feature: str, resource: str | None = None) -> bool:
    params = {"featureId": feature, **({"resourceId": resource} if resource else {})}
    response = api.get(f"/api/v1/customers/{customer}/entitlements/check", params=params)
    assert response.status_code == 200, response.text
    return bool(response.json()["data"]["isGranted"])


def entitlement_limits(api: httpx.Client, customer: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/customers/{customer}/entitlements")
    assert response.status_code == 200, response.text
    return {e["feature"]["id"]: e.get("usageLimit") for e in response.json()["data"]["entitlements"]}


# -- unarchiving a customer ------------------------------------------------------------------------


def test_unarchiving_a_customer_announces_customer_and_entitlements(
    server: LiveServer, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    provision(api, planId="free", resourceId="site-1")
    grant = {"promotionalEntitlements": [{"featureId": "sso", "period": "1 month"}]}
    assert api.post("/api/v1/customers/acme/promotional-entitlements", json=grant).status_code == 200
    assert api.post("/api/v1/customers/acme/archive").status_code == 200
    drain(server)
    reset(hooked)
    mark = push_mark(server)

    assert api.post("/api/v1/customers/acme/unarchive").status_code == 200
    drain(server)
    assert kinds(hooked) == ["customer.updated", "entitlements.updated", "entitlements.updated"]
    updated = hooked.events()[0]["data"]
    assert (updated["customerId"], updated["archivedAt"]) == ("acme", None)
    assert announced(hooked) == [("acme", None), ("acme", "site-1")]
    assert pushed_since(server, mark) == [("acme", None), ("acme", "site-1")]
    # And it was a real change: the promotion counts again (it answered "customer not found" before).
    assert granted(api, "acme", "sso")

    # Unarchiving a customer that is not archived changes nothing and says nothing.
    reset(hooked)
    mark = push_mark(server)
    assert api.post("/api/v1/customers/acme/unarchive").status_code == 200
    drain(server)
    assert hooked.events() == [] and pushed_since(server, mark) == []


# -- archiving a feature customers still hold --------------------------------------------------------


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code
    message: str = body["message"]
    return message


def test_a_feature_only_a_promotion_grants_cannot_be_archived_until_revoked(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    client.v1.features.create_feature(id="beta", display_name="Beta", feature_type="BOOLEAN")
    grant = {"promotionalEntitlements": [{"featureId": "beta", "period": "1 month"}]}
    assert api.post("/api/v1/customers/acme/promotional-entitlements", json=grant).status_code == 200
    drain(server)
    reset(hooked)
    mark = push_mark(server)

    message = error_of(api.post("/api/v1/features/beta/archive"), 409, "FAILED_PRECONDITION")
    assert "promotional entitlement of customer 'acme'" in message
    assert granted(api, "acme", "beta")  # nothing was taken away
    assert api.get("/api/v1/features/beta").json()["data"].get("archivedAt") is None
    drain(server)
    assert hooked.events() == [] and pushed_since(server, mark) == []

    # Revoking is the change customers hear about; the archive then takes nothing from anyone.
    assert api.delete("/api/v1/customers/acme/promotional-entitlements/beta").status_code == 200
    assert api.post("/api/v1/features/beta/archive").status_code == 200
    drain(server)
    assert kinds(hooked) == ["promotional_entitlement.revoked", "entitlements.updated"]
    assert pushed_since(server, mark) == [("acme", None)]

    # An expired promotion holds nothing back.
    client.v1.features.create_feature(id="trialfeat", display_name="T", feature_type="BOOLEAN")
    grant = {"promotionalEntitlements": [{"featureId": "trialfeat", "period": "1 week"}]}
    assert api.post("/api/v1/customers/acme/promotional-entitlements", json=grant).status_code == 200
    test_clock.advance(timedelta(days=8))
    assert api.post("/api/v1/features/trialfeat/archive").status_code == 200


def test_unarchiving_a_feature_announces_the_promotions_it_brings_back(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    """An archived customer's promotion does not hold a feature back from archiving (the customer
    has no entitlements); once both come back, the promotion counts again: announced."""
    client.v1.features.create_feature(id="beta", display_name="Beta", feature_type="BOOLEAN")
    grant = {"promotionalEntitlements": [{"featureId": "beta", "period": "1 month"}]}
    assert api.post("/api/v1/customers/acme/promotional-entitlements", json=grant).status_code == 200
    assert api.post("/api/v1/customers/acme/archive").status_code == 200
    assert api.post("/api/v1/features/beta/archive").status_code == 200
    assert api.post("/api/v1/customers/acme/unarchive").status_code == 200
    assert not granted(api, "acme", "beta")
    drain(server)
    reset(hooked)
    mark = push_mark(server)

    assert api.post("/api/v1/features/beta/unarchive").status_code == 200
    assert granted(api, "acme", "beta")
    drain(server)
    assert announced(hooked) == [("acme", None)]
    assert pushed_since(server, mark) == [("acme", None)]


def test_a_feature_of_an_archived_plan_still_subscribed_cannot_be_archived(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    client.v1.features.create_feature(id="legacy-export", display_name="Export", feature_type="BOOLEAN")
    client.v1.plans.create(id="legacy", display_name="Legacy", product_id="main", pricing_type="FREE")
    client.v1.plans.entitlements.create("legacy", entitlements=[{"type": "FEATURE", "id": "legacy-export"}])
    client.v1.plans.publish("legacy", migration_type="NEW_CUSTOMERS")
    sub = provision(api, planId="legacy", resourceId="site-1")
    client.v1.plans.archive("legacy")  # new business stops; the subscription keeps its version
    assert granted(api, "acme", "legacy-export", "site-1")

    message = error_of(api.post("/api/v1/features/legacy-export/archive"), 409, "FAILED_PRECONDITION")
    assert f"subscription '{sub['id']}' (archived plan 'legacy')" in message
    assert granted(api, "acme", "legacy-export", "site-1")

    # An override on an open subscription holds the feature too.
    client.v1.features.create_feature(id="vip", display_name="VIP", feature_type="BOOLEAN")
    override = {"entitlements": [{"type": "FEATURE", "id": "vip"}]}
    assert api.patch(f"/api/v1/subscriptions/{sub['id']}", json=override).status_code == 200
    assert granted(api, "acme", "vip", "site-1")
    message = error_of(api.post("/api/v1/features/vip/archive"), 409, "FAILED_PRECONDITION")
    assert f"subscription '{sub['id']}' (an entitlement override)" in message

    drain(server)
    reset(hooked)
    mark = push_mark(server)
    cancel = {"cancellationTime": "IMMEDIATE"}
    assert api.post(f"/api/v1/subscriptions/{sub['id']}/cancel", json=cancel).status_code == 200
    assert api.post("/api/v1/features/legacy-export/archive").status_code == 200
    assert api.post("/api/v1/features/vip/archive").status_code == 200
    drain(server)
    assert announced(hooked) == [("acme", "site-1")]  # the cancellation, not the archives
    assert pushed_since(server, mark) == [("acme", "site-1")]


# -- inheritance: a parent plan's new version, an archived product ---------------------------------


def build_family(client: stigg.Stigg) -> None:
    """`team` is built on `free` (which grants 1 seat and 100 API calls) and adds SSO."""
    client.v1.plans.create(id="team", display_name="Team", product_id="main", parent_plan_id="free")
    client.v1.plans.entitlements.create("team", entitlements=[{"type": "FEATURE", "id": "sso"}])
    client.v1.plans.publish("team", migration_type="NEW_CUSTOMERS")


def test_a_new_version_of_a_parent_plan_is_announced_to_the_heirs_subscribers(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    build_family(client)
    provision(api, planId="team")
    client.v1.customers.provision(id="bystander")
    other = api.post("/api/v1/subscriptions", json={"customerId": "bystander", "planId": "pro"})
    assert other.status_code == 200, other.text
    assert entitlement_limits(api, "acme")["seats"] == 1
    drain(server)
    reset(hooked)
    mark = push_mark(server)

    # Published for new customers only: the team subscription stays on its version, but inherits
    # from the parent's latest version, so acme's seats change now.
    client.v1.plans.create_draft("free")
    client.v1.plans.entitlements.update("seats", plan_id="free", type="FEATURE", usage_limit=3)
    client.v1.plans.publish("free", migration_type="NEW_CUSTOMERS")
    assert entitlement_limits(api, "acme")["seats"] == 3
    drain(server)
    assert announced(hooked) == [("acme", None)]  # the pro subscriber inherits nothing: no event
    assert pushed_since(server, mark) == [("acme", None)]


def test_archiving_a_product_is_announced_to_subscribers_who_inherit_from_its_plans(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    build_family(client)
    provision(api, planId="team")
    assert set(entitlement_limits(api, "acme")) == {"seats", "api-calls", "sso"}
    drain(server)
    reset(hooked)
    mark = push_mark(server)

    assert api.post("/api/v1/products/main/archive").status_code == 200
    assert set(entitlement_limits(api, "acme")) == {"sso"}  # the archived parent no longer counts
    drain(server)
    assert announced(hooked) == [("acme", None)]
    assert pushed_since(server, mark) == [("acme", None)]


# -- the existing causes, both channels -------------------------------------------------------------


def test_every_entitlement_change_reaches_the_webhook_and_the_stream_alike(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, hooked: Receiver, test_clock: TestClock
) -> None:
    client.v1.customers.provision(id="other")
    drain(server)
    reset(hooked)

    def step(action: Any, expected: list[Change]) -> None:
        mark = push_mark(server)
        action()
        drain(server)
        assert announced(hooked) == expected
        assert pushed_since(server, mark) == expected
        reset(hooked)

    subs: list[dict[str, Any]] = []
    step(lambda: subs.append(provision(api, planId="pro", resourceId="site-1")), [("acme", "site-1")])
    sub = subs[0]

    def publish_all() -> None:
        client.v1.plans.create_draft("pro")
        client.v1.plans.publish("pro", migration_type="ALL_CUSTOMERS")

    step(publish_all, [("acme", "site-1")])
    step(
        lambda: api.post(f"/api/v1/subscriptions/{sub['id']}/delegate", json={"targetCustomerId": "other"}),
        [("other", "site-1"), ("acme", "site-1")],
    )
    grant = {"promotionalEntitlements": [{"featureId": "sso", "period": "1 week"}]}
    step(lambda: api.post("/api/v1/customers/acme/promotional-entitlements", json=grant), [("acme", None)])
    step(lambda: test_clock.advance(timedelta(days=8)), [("acme", None)])  # the promotion expired by time
    assert not granted(api, "acme", "sso")


# -- trial ends soon ----------------------------------------------------------------------------------


def test_an_endpoint_created_after_the_trial_started_hears_that_it_ends_soon(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, receivers: Any, test_clock: TestClock
) -> None:
    build_catalog(client)
    client.v1.customers.provision(id="acme")
    trial_end = test_clock.now() + timedelta(days=10)
    sub = provision(
        api, planId="pro", trialOverrideConfiguration={"isTrial": True, "trialEndDate": trial_end.isoformat()}
    )
    drain(server)  # nobody listens yet

    receiver: Receiver = receivers()
    create_hook(api, receiver.url, ["subscription.trial_ends_soon"])
    test_clock.advance(timedelta(days=6, hours=23))
    drain(server)
    assert receiver.events() == []  # three days before the end, not earlier
    test_clock.advance(timedelta(hours=2))
    drain(server)
    test_clock.advance(timedelta(days=4))
    drain(server)
    assert kinds(receiver) == ["subscription.trial_ends_soon"]
    data = receiver.events()[0]["data"]
    assert (data["subscriptionId"], data["status"]) == (sub["id"], "IN_TRIAL")
    assert data["trialEndDate"] == trial_end.isoformat().replace("+00:00", "Z")
