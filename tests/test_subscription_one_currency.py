"""A subscription is billed in one currency: a plan priced in euros for Germany with an add-on priced only
in dollars is refused (400) at provisioning, in the preview and when the add-on is added later, instead
of being summed as one amount ("27 eur + 15 usd = 42 eur") and then refused by the provider. Priced in
one currency (the add-on given its own German price, or no country asked), it is taken. Both databases."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import LiveServer


def _flat(monthly: int, *, de: int | None = None) -> dict[str, Any]:
    periods: list[dict[str, Any]] = [{"billingPeriod": "MONTHLY", "price": {"amount": monthly, "currency": "usd"}}]
    if de is not None:
        periods.append(
            {"billingPeriod": "MONTHLY", "billingCountryCode": "DE", "price": {"amount": de, "currency": "eur"}}
        )
    return {"pricingType": "PAID", "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": periods}]}


def _catalog(api: httpx.Client, *, addon_de: int | None) -> None:
    """Pro: 29 usd a month, 27 eur in Germany; add-on Extra: 15 usd (and `addon_de` eur in Germany)."""
    for path, body in (
        ("/api/v1/products", {"id": "app", "displayName": "App"}),
        ("/api/v1/addons", {"id": "extra", "displayName": "Extra", "productId": "app"}),
        ("/api/v1/plans", {"id": "pro", "displayName": "Pro", "productId": "app"}),
        ("/api/v1/customers", {"id": "cust-de", "name": "Berlin GmbH"}),
    ):
        assert api.post(path, json=body).status_code == 200
    assert api.patch("/api/v1/addons/extra", json={"charges": _flat(15, de=addon_de)}).status_code == 200
    assert api.post("/api/v1/addons/extra/publish", json={"migrationType": "NEW_CUSTOMERS"}).status_code == 200
    body = {"charges": _flat(29, de=27), "compatibleAddonIds": ["extra"]}
    assert api.patch("/api/v1/plans/pro", json=body).status_code == 200
    assert api.post("/api/v1/plans/pro/publish", json={"migrationType": "NEW_CUSTOMERS"}).status_code == 200


def _order(**extra: Any) -> dict[str, Any]:
    return {"customerId": "cust-de", "planId": "pro", "billingPeriod": "MONTHLY", **extra}


def test_a_plan_and_an_add_on_priced_in_two_currencies_are_refused_wherever_they_meet(
    server: LiveServer, api: httpx.Client
) -> None:
    _catalog(api, addon_de=None)
    german = _order(billingCountryCode="DE", addons=[{"id": "extra", "quantity": 1}])

    preview = api.post("/api/v1/subscriptions/preview", json=german)
    assert preview.status_code == 400, preview.text
    error = preview.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert "plan 'pro' in eur" in error["message"] and "addon 'extra' in usd" in error["message"], error

    provisioned = api.post("/api/v1/subscriptions", json={**german, "id": "sub-de"})
    assert provisioned.status_code == 400, provisioned.text
    assert "one currency" in provisioned.json()["error"]["message"]
    assert api.get("/api/v1/subscriptions/sub-de").status_code == 404  # nothing written

    # In Germany without the add-on: euros throughout. Adding the add-on later meets the same rule.
    alone = api.post("/api/v1/subscriptions", json=_order(billingCountryCode="DE", id="sub-de"))
    assert alone.status_code == 200, alone.text
    added = api.patch("/api/v1/subscriptions/sub-de", json={"addons": [{"id": "extra", "quantity": 1}]})
    assert added.status_code == 400, added.text
    assert "one currency" in added.json()["error"]["message"]
    held = api.get("/api/v1/subscriptions/sub-de").json()["data"]
    assert held["addons"] == []


def test_one_currency_throughout_is_taken_and_previewed_in_it(server: LiveServer, api: httpx.Client) -> None:
    _catalog(api, addon_de=14)
    german = _order(billingCountryCode="DE", addons=[{"id": "extra", "quantity": 1}])

    preview = api.post("/api/v1/subscriptions/preview", json=german)
    assert preview.status_code == 200, preview.text
    recurring = preview.json()["data"]["recurringInvoice"]
    assert (recurring["currency"], recurring["total"]) == ("eur", 41)
    assert api.post("/api/v1/subscriptions", json={**german, "id": "sub-de"}).status_code == 200

    # No country asked: the default prices, all in dollars.
    assert api.post("/api/v1/customers", json={"id": "cust-us"}).status_code == 200
    us = {**_order(addons=[{"id": "extra", "quantity": 1}]), "customerId": "cust-us"}
    preview = api.post("/api/v1/subscriptions/preview", json=us)
    assert preview.status_code == 200, preview.text
    assert (
        preview.json()["data"]["recurringInvoice"]["currency"],
        preview.json()["data"]["recurringInvoice"]["total"],
    ) == ("usd", 44)
