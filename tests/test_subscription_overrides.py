"""Subscription-level entitlement overrides take the catalog's reset fields: the anchor of the
chosen period is validated against the contract's enums, and it moves the usage window."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import stigg

from tests.support.clock import TestClock
from tests.test_core_path import build_catalog


def _provision(api: httpx.Client, override: dict[str, object]) -> httpx.Response:
    body = {
        "customerId": "acme",
        "planId": "pro",
        "billingPeriod": "MONTHLY",
        "entitlements": [{"type": "FEATURE", "id": "api-calls", "usageLimit": 7, **override}],
    }
    return api.post("/api/v1/subscriptions", json=body)


def test_a_weekly_override_resets_on_its_anchor_day(
    api: httpx.Client, client: stigg.Stigg, test_clock: TestClock
) -> None:
    build_catalog(client)
    client.v1.customers.provision(id="acme")
    assert test_clock.now().weekday() == 3  # a Thursday: the next Monday is four days on
    resp = _provision(api, {"resetPeriod": "WEEK", "weeklyResetPeriodConfiguration": {"accordingTo": "EveryMonday"}})
    assert resp.status_code == 200, resp.text

    check = client.v1.customers.check_entitlement("acme", feature_id="api-calls").data
    assert check.usage_limit == 7
    assert check.usage_period_end == datetime(2026, 1, 19, tzinfo=UTC)


@pytest.mark.parametrize(
    "override",
    [
        {"resetPeriod": "WEEK", "weeklyResetPeriodConfiguration": {"accordingTo": "StartOfTheMonth"}},
        {"resetPeriod": "MONTH", "monthlyResetPeriodConfiguration": {"accordingTo": "EveryMonday"}},
        {"resetPeriod": "FORTNIGHT"},
    ],
)
def test_an_override_with_an_anchor_outside_the_contract_is_a_400_and_writes_nothing(
    api: httpx.Client, client: stigg.Stigg, override: dict[str, object]
) -> None:
    build_catalog(client)
    client.v1.customers.provision(id="acme")
    resp = _provision(api, override)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert api.get("/api/v1/subscriptions", params={"customerId": "acme"}).json()["data"] == []


@pytest.mark.parametrize(
    "entitlement",
    [
        {"type": "FEATURE", "id": "api-calls", "usageLimit": 7, "hasUnlimitedUsage": True},
        {"type": "FEATURE", "id": "sso", "usageLimit": 7},
        {"type": "FEATURE", "id": "sso", "hasUnlimitedUsage": True},
        {"type": "FEATURE", "id": "sso", "hasSoftLimit": True},
    ],
)
def test_an_override_that_does_not_fit_its_features_type_is_a_400_and_writes_nothing(
    api: httpx.Client, client: stigg.Stigg, entitlement: dict[str, object]
) -> None:
    """A plan's entitlement refuses these (the catalog's rule); an override was stored and then ignored in
    part: usageLimit 7 beside hasUnlimitedUsage granted unlimited, a limit on a BOOLEAN feature nothing."""
    build_catalog(client)
    client.v1.customers.provision(id="acme")
    body = {"customerId": "acme", "planId": "pro", "billingPeriod": "MONTHLY", "entitlements": [entitlement]}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert api.get("/api/v1/subscriptions", params={"customerId": "acme"}).json()["data"] == []
