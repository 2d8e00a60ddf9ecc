"""A preview refuses a per-unit quantity outside its price's minimum and maximum, as provisioning does
(found by helper X: the preview quoted 60 seats of a price sold from 2 to 20, which provisioning then
refused), whether the quantity comes as `billableFeatures` or as `charges`. Both databases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer


def _catalog(api: httpx.Client) -> None:
    """Team: 10 a month flat plus 5 a seat, 2 to 20 seats."""
    for path, body in (
        ("/api/v1/features", {"id": "seats", "displayName": "Seats", "featureType": "NUMBER"}),
        ("/api/v1/products", {"id": "app", "displayName": "App"}),
        ("/api/v1/plans", {"id": "team", "displayName": "Team", "productId": "app"}),
        ("/api/v1/customers", {"id": "cust-1"}),
    ):
        assert api.post(path, json=body).status_code == 200
    monthly = [{"billingPeriod": "MONTHLY", "price": {"amount": 10, "currency": "usd"}}]
    seat = [{"billingPeriod": "MONTHLY", "price": {"amount": 5, "currency": "usd"}}]
    charges = {
        "pricingType": "PAID",
        "pricingModels": [
            {"billingModel": "FLAT_FEE", "pricePeriods": monthly},
            {
                "billingModel": "PER_UNIT",
                "featureId": "seats",
                "minUnitQuantity": 2,
                "maxUnitQuantity": 20,
                "pricePeriods": seat,
            },
        ],
    }
    assert api.patch("/api/v1/plans/team", json={"charges": charges}).status_code == 200
    assert api.post("/api/v1/plans/team/publish", json={"migrationType": "NEW_CUSTOMERS"}).status_code == 200


def _preview(api: httpx.Client, **extra: Any) -> httpx.Response:
    body = {"customerId": "cust-1", "planId": "team", "billingPeriod": "MONTHLY", **extra}
    return api.post("/api/v1/subscriptions/preview", json=body)


@pytest.mark.parametrize(
    ("quantity", "as_charge", "problem"),
    [(60, False, "allows at most 20"), (1, False, "needs at least 2"), (21, True, "allows at most 20")],
)
def test_a_quantity_provisioning_would_refuse_is_refused_by_the_preview(
    server: LiveServer, api: httpx.Client, quantity: int, as_charge: bool, problem: str
) -> None:
    _catalog(api)
    charges = [{"type": "FEATURE", "id": "seats", "quantity": quantity}]
    asked = {"charges": charges} if as_charge else {"billableFeatures": [{"featureId": "seats", "quantity": quantity}]}
    previewed = _preview(api, **asked)
    assert previewed.status_code == 400, previewed.text
    assert previewed.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert problem in previewed.json()["error"]["message"]
    # Provisioning the same quantity answers the same.
    provisioned = api.post("/api/v1/subscriptions", json={"customerId": "cust-1", "planId": "team", "charges": charges})
    assert provisioned.status_code == 400, provisioned.text
    assert problem in provisioned.json()["error"]["message"]


def test_a_quantity_within_the_range_is_priced(server: LiveServer, api: httpx.Client) -> None:
    _catalog(api)
    previewed = _preview(api, billableFeatures=[{"featureId": "seats", "quantity": 20}])
    assert previewed.status_code == 200, previewed.text
    assert previewed.json()["data"]["recurringInvoice"]["total"] == 110
