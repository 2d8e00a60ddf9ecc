"""The entitlements a subscription's provisioning answers with (`POST /api/v1/subscriptions`) are what
the checks answer right after it: a feature priced in credits is denied `InsufficientCredits` while no
currency it is priced in has a positive balance, and granted once the plan grants credits; a feature not
priced in credits is granted either way."""

from __future__ import annotations

import itertools
from typing import Any

from tests.conftest import LiveServer

_ids = itertools.count()


def _shop(server: LiveServer) -> dict[str, str]:
    """Two plans granting a feature priced 2 credits a unit and a plain feature; one also grants 10 credits."""
    n = next(_ids)
    names = {
        "currency": f"pcr{n}",
        "priced": f"priced{n}",
        "plain": f"plain{n}",
        "without": f"nocredits{n}",
        "with": f"credits{n}",
    }
    c = server.stigg().v1
    product = f"prod{n}"
    c.products.create_product(id=product, display_name="App")
    c.credits.custom_currencies.create(id=names["currency"], display_name="Credits")
    c.features.create_feature(id=names["priced"], display_name="Calls", feature_type="NUMBER", meter_type="INCREMENTAL")
    c.features.create_feature(id=names["plain"], display_name="Export", feature_type="BOOLEAN")
    features = [{"type": "FEATURE", "id": names["priced"], "has_unlimited_usage": True}]
    features.append({"type": "FEATURE", "id": names["plain"]})
    credit = {"type": "CREDIT", "id": names["currency"], "amount": 10, "cadence": "MONTH"}
    rate = [{"billing_period": "MONTHLY", "credit_rate": {"amount": 2, "currency_id": names["currency"]}}]
    flat = [{"billing_period": "MONTHLY", "price": {"amount": 10, "currency": "usd"}}]
    for plan, granted in ((names["without"], features), (names["with"], [*features, credit])):
        c.plans.create(id=plan, display_name=plan, product_id=product)
        c.plans.entitlements.create(plan, entitlements=granted)
        c.plans.update(
            plan,
            charges={
                "pricing_type": "PAID",
                "pricing_models": [
                    {"billing_model": "FLAT_FEE", "price_periods": flat},
                    {"billing_model": "CREDIT_BASED", "feature_id": names["priced"], "price_periods": rate},
                ],
            },
        )
        c.plans.publish(plan, migration_type="NEW_CUSTOMERS")
    return names


def _answered(server: LiveServer, plan: str, features: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What provisioning answered per feature, and what a check answers per feature right after it."""
    customer = f"credit-answer-{next(_ids)}"
    with server.http() as api:
        api.post("/api/v1/customers", json={"id": customer}).raise_for_status()
        body = {"customerId": customer, "planId": plan, "billingPeriod": "MONTHLY"}
        answer = api.post("/api/v1/subscriptions", json=body)
        assert answer.status_code == 200, answer.text
        provisioned = {
            e["feature"]["id"]: (e["isGranted"], e["accessDeniedReason"])
            for e in answer.json()["data"]["entitlements"]
            if e.get("type") == "FEATURE"
        }
        checked = {}
        for feature in features:
            result = api.get(f"/api/v1/customers/{customer}/entitlements/check", params={"featureId": feature})
            data = result.json()["data"]
            checked[feature] = (data["isGranted"], data["accessDeniedReason"])
    return provisioned, checked


def test_a_credit_priced_feature_is_answered_at_provisioning_as_the_check_answers_it(
    module_server: LiveServer,
) -> None:
    names = _shop(module_server)
    features = [names["priced"], names["plain"]]
    without, checked_without = _answered(module_server, names["without"], features)
    assert without == {names["priced"]: (False, "InsufficientCredits"), names["plain"]: (True, None)}
    assert without == checked_without
    with_credits, checked_with = _answered(module_server, names["with"], features)
    assert with_credits == {names["priced"]: (True, None), names["plain"]: (True, None)}
    assert with_credits == checked_with


def test_the_credits_a_plan_grants_are_in_the_provisioning_answer_as_the_list_has_them(
    module_server: LiveServer,
) -> None:
    """The answer's entitlements are the client's union of FEATURE and CREDIT results, and the list
    right after provisioning has the plan's 10 credits as a CREDIT entitlement; provisioning used to
    answer the features only, so the credits it had just granted were missing from its own answer."""
    names = _shop(module_server)
    customer = f"credit-answer-{next(_ids)}"
    with module_server.http() as api:
        api.post("/api/v1/customers", json={"id": customer}).raise_for_status()
        body = {"customerId": customer, "planId": names["with"], "billingPeriod": "MONTHLY"}
        answer = api.post("/api/v1/subscriptions", json=body)
        assert answer.status_code == 200, answer.text
        answered = answer.json()["data"]["entitlements"]
        listed = api.get(f"/api/v1/customers/{customer}/entitlements").json()["data"]["entitlements"]
    credits = [e for e in answered if e["type"] == "CREDIT"]
    assert [(e["currency"]["currencyId"], e["isGranted"], e["usageLimit"], e["currentUsage"]) for e in credits] == [
        (names["currency"], True, 10, 0)
    ]
    assert [e for e in listed if e["type"] == "CREDIT"] == credits
    assert [e["feature"]["id"] for e in answered if e["type"] == "FEATURE"] == [
        e["feature"]["id"] for e in listed if e["type"] == "FEATURE"
    ]
