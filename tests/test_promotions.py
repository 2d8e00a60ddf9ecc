from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import stigg
from hypothesis import given
from hypothesis import strategies as st

from entitle.promotions.rules import promotion_end
from tests.support.clock import TestClock

PROMO_KEYS = dict.fromkeys(
    [
        "custom_end_date",
        "usage_limit",
        "has_unlimited_usage",
        "has_soft_limit",
        "is_visible",
        "enum_values",
        "reset_period",
        "monthly_reset_period_configuration",
        "weekly_reset_period_configuration",
        "yearly_reset_period_configuration",
    ]
)


def promo(feature_id: str, period: str, **fields: object) -> dict[str, object]:
    """The official client requires every key, even when null."""
    return {**PROMO_KEYS, "feature_id": feature_id, "period": period, **fields}


@pytest.fixture
def catalog(client: stigg.Stigg) -> None:
    client.v1.features.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    client.v1.features.create_feature(
        id="api-calls", display_name="API calls", feature_type="NUMBER", meter_type="INCREMENTAL"
    )
    client.v1.features.create_feature(
        id="region",
        display_name="Region",
        feature_type="ENUM",
        enum_configuration=[{"value": "eu", "display_name": "EU"}, {"value": "us", "display_name": "US"}],
    )
    client.v1.customers.provision(id="cust-1", name="Acme")


def test_grant_list_and_revoke(client: stigg.Stigg, catalog: None, test_clock: TestClock) -> None:
    start = test_clock.now()
    granted = client.v1.customers.promotional_entitlements.create(
        "cust-1",
        promotional_entitlements=[
            promo("sso", "1 month"),
            promo(
                "api-calls",
                "lifetime",
                usage_limit=5000,
                reset_period="MONTH",
                monthly_reset_period_configuration={"according_to": "StartOfTheMonth"},
            ),
            promo("region", "custom", enum_values=["eu"], custom_end_date=start + timedelta(days=3)),
        ],
    ).data
    by_feature = {p.feature_id: p for p in granted}
    assert by_feature["sso"].end_date == datetime(2026, 2, 15, 12, 0, tzinfo=UTC)
    assert by_feature["api-calls"].end_date is None
    assert by_feature["api-calls"].usage_limit == 5000
    assert by_feature["api-calls"].reset_period == "MONTH"
    assert by_feature["region"].enum_values == ["eu"]
    assert {p.status for p in granted} == {"Active"}
    assert all(p.environment_id == "development" for p in granted)

    test_clock.advance(timedelta(days=4))
    statuses = {p.feature_id: p.status for p in client.v1.customers.promotional_entitlements.list("cust-1")}
    assert statuses == {"sso": "Active", "api-calls": "Active", "region": "Expired"}
    expired = client.v1.customers.promotional_entitlements.list("cust-1", status=["Expired"])
    assert [p.feature_id for p in expired] == ["region"]

    revoked = client.v1.customers.promotional_entitlements.revoke("sso", id="cust-1").data
    assert revoked.feature_id == "sso"
    assert {p.feature_id for p in client.v1.customers.promotional_entitlements.list("cust-1")} == {
        "api-calls",
        "region",
    }
    with pytest.raises(stigg.NotFoundError):
        client.v1.customers.promotional_entitlements.revoke("sso", id="cust-1")


def test_granting_again_replaces_the_grant(client: stigg.Stigg, catalog: None, test_clock: TestClock) -> None:
    client.v1.customers.promotional_entitlements.create(
        "cust-1", promotional_entitlements=[promo("api-calls", "1 week", usage_limit=10)]
    )
    test_clock.advance(timedelta(days=2))
    again = client.v1.customers.promotional_entitlements.create(
        "cust-1", promotional_entitlements=[promo("api-calls", "1 year", usage_limit=99)]
    ).data[0]
    assert again.usage_limit == 99
    assert again.start_date == test_clock.now()
    assert len(list(client.v1.customers.promotional_entitlements.list("cust-1"))) == 1


def test_invalid_grants_are_refused_whole(client: stigg.Stigg, catalog: None, api: httpx.Client) -> None:
    def post(*items: dict[str, object]) -> httpx.Response:
        body = {"promotionalEntitlements": list(items)}
        return api.post("/api/v1/customers/cust-1/promotional-entitlements", json=body)

    ok = {"featureId": "sso", "period": "1 month"}
    cases = [
        {"featureId": "api-calls", "period": "1 month"},  # no limit
        {"featureId": "sso", "period": "1 month", "usageLimit": 3},  # boolean with a limit
        {"featureId": "region", "period": "1 month", "enumValues": ["mars"]},
        {"featureId": "api-calls", "period": "custom", "usageLimit": 1},  # custom without an end
        {
            "featureId": "api-calls",
            "period": "1 month",
            "usageLimit": 1,
            "resetPeriod": "WEEK",
            "monthlyResetPeriodConfiguration": {"accordingTo": "StartOfTheMonth"},
        },
        {"featureId": "api-calls", "period": "forever", "usageLimit": 1},
    ]
    for case in cases:
        response = post(ok, case)
        assert response.status_code == 400, (case, response.text)
        assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert post({"featureId": "nope", "period": "1 month"}).status_code == 404
    assert post(ok, ok).status_code == 400
    assert api.get("/api/v1/customers/cust-1/promotional-entitlements").json()["data"] == []
    missing = api.post("/api/v1/customers/ghost/promotional-entitlements", json={"promotionalEntitlements": [ok]})
    assert missing.status_code == 404


def test_fields_that_do_not_fit_the_features_type_are_refused_not_ignored(
    client: stigg.Stigg, catalog: None, api: httpx.Client
) -> None:
    """A plan's entitlement refuses them (the catalog's rule); a promotion stored them, answered them back,
    and every check then ignored one of them: a limit of 50 beside hasUnlimitedUsage granted unlimited."""
    cases = [
        {"featureId": "api-calls", "period": "1 month", "usageLimit": 50, "hasUnlimitedUsage": True},
        {"featureId": "api-calls", "period": "1 month", "usageLimit": 5, "enumValues": ["eu"]},
        {"featureId": "region", "period": "1 month", "enumValues": ["eu"], "usageLimit": 5},
        {"featureId": "region", "period": "1 month", "enumValues": ["eu"], "hasUnlimitedUsage": True},
        {"featureId": "region", "period": "1 month", "enumValues": ["eu", "eu"]},
        {"featureId": "sso", "period": "1 month", "enumValues": ["eu"]},
        {"featureId": "sso", "period": "1 month", "hasSoftLimit": True},
    ]
    for case in cases:
        response = api.post(
            "/api/v1/customers/cust-1/promotional-entitlements", json={"promotionalEntitlements": [case]}
        )
        assert response.status_code == 400, (case, response.text)
        assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert api.get("/api/v1/customers/cust-1/promotional-entitlements").json()["data"] == []
    fits = {"featureId": "api-calls", "period": "1 month", "usageLimit": 50, "hasUnlimitedUsage": False}
    granted = api.post("/api/v1/customers/cust-1/promotional-entitlements", json={"promotionalEntitlements": [fits]})
    assert granted.status_code == 200, granted.text
    check = client.v1.customers.check_entitlement("cust-1", feature_id="api-calls", requested_usage=51).data
    assert (check.is_granted, check.usage_limit) == (False, 50)


def test_a_custom_end_date_with_a_fixed_period_is_refused_not_ignored(
    client: stigg.Stigg, catalog: None, api: httpx.Client
) -> None:
    """A grant for "1 week" with a customEndDate months away used to end after one week, the date
    dropped without a word."""
    asked = datetime.now(UTC) + timedelta(days=90)
    for period in ("1 week", "1 month", "6 month", "1 year", "lifetime"):
        item = {"featureId": "api-calls", "period": period, "usageLimit": 5, "customEndDate": asked.isoformat()}
        refused = api.post(
            "/api/v1/customers/cust-1/promotional-entitlements", json={"promotionalEntitlements": [item]}
        )
        assert refused.status_code == 400, (period, refused.text)
        assert refused.json()["error"] == {
            "code": "INVALID_ARGUMENT",
            "message": f"customEndDate is used only with period 'custom', not '{period}'",
        }
    assert api.get("/api/v1/customers/cust-1/promotional-entitlements").json()["data"] == []
    with pytest.raises(ValueError, match="only with period 'custom'"):
        promotion_end("1 month", datetime.now(UTC), asked)
    granted = client.v1.customers.promotional_entitlements.create(
        "cust-1", promotional_entitlements=[promo("api-calls", "custom", usage_limit=5, custom_end_date=asked)]
    ).data
    assert granted[0].end_date == asked


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["1 week", "1 month", "6 month", "1 year"]),
)
def test_fixed_periods_end_after_start_and_within_their_length(start: datetime, period: str) -> None:
    end = promotion_end(period, start, None)
    assert end is not None
    low, high = {"1 week": (7, 7), "1 month": (28, 31), "6 month": (181, 184), "1 year": (365, 366)}[period]
    assert low <= (end - start).days <= high
    assert promotion_end("lifetime", start, None) is None
