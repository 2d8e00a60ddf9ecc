"""A Salesforce Flow simulator: replays, against a live Entitle, exactly the HTTP calls the Flow of
docs/salesforce.md makes for a recorded opportunity (JSON fixtures under tests/fixtures/salesforce/, shaped
like Salesforce REST answers: the Opportunity record, its Account record, the SOQL query of its
OpportunityLineItems with their Product2 fields).

Like External Services, it finds each action's method and path in the registered OpenAPI document by
operationId, so the simulator calls what the document describes. The Flow's own steps are followed one by
one: trigger on Closed Won, loop over the line items by `Product2.Entitle_Type__c`, the three actions in
order, the write-back on the account, and the fault path (the first 4xx/5xx stops the Flow and writes the
error's code on the account)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "salesforce"
DOCUMENT = "/api/v1/salesforce/openapi.json"


@dataclass(frozen=True)
class Recorded:
    opportunity: dict[str, Any]
    account: dict[str, Any]
    line_items: list[dict[str, Any]]


def recorded(name: str) -> Recorded:
    folder = FIXTURES / name
    read = lambda part: json.loads((folder / f"{part}.json").read_text())  # noqa: E731
    return Recorded(read("opportunity"), read("account"), read("line_items")["records"])


@dataclass(frozen=True)
class Call:
    operation_id: str
    method: str
    path: str
    body: dict[str, Any]
    status: int
    answer: dict[str, Any]


@dataclass
class FlowRun:
    calls: list[Call] = field(default_factory=list)
    # What the Flow's "Update Records" element writes on the account.
    account_updates: dict[str, Any] = field(default_factory=dict)

    @property
    def fault(self) -> dict[str, Any] | None:
        failed = [c for c in self.calls if c.status >= 400]
        return failed[0].answer["error"] if failed else None


@dataclass(frozen=True)
class Actions:
    """The registered actions: operationId -> (method, path), and whether the subscription action takes
    `priceOverrides` (the Flow maps a line item's sales price to it only when it does)."""

    routes: dict[str, tuple[str, str]]
    price_overrides: bool

    @classmethod
    def registered(cls, http: httpx.Client) -> Actions:
        document = http.get(DOCUMENT).raise_for_status().json()
        routes: dict[str, tuple[str, str]] = {}
        takes_overrides = False
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                routes[operation["operationId"]] = (method.upper(), path)
                if operation["operationId"] == "provisionSubscription":
                    schema = operation["requestBody"]["content"]["application/json"]["schema"]
                    takes_overrides = "priceOverrides" in schema["properties"]
        return cls(routes, takes_overrides)


def _decimal(number: float) -> Decimal:
    """A Salesforce number (a double on the wire) as the exact decimal it displays."""
    return Decimal(repr(number))


def _integer(number: float) -> int:
    whole = _decimal(number)
    if whole != whole.to_integral_value():
        raise ValueError(f"{number} is not a whole quantity")
    return int(whole)


def run_flow(http: httpx.Client, actions: Actions, deal: Recorded) -> FlowRun:
    run = FlowRun()
    opportunity, account = deal.opportunity, deal.account
    if opportunity["StageName"] != "Closed Won":  # the record-triggered Flow's entry condition
        return run
    currency = str(opportunity["CurrencyIsoCode"]).lower()

    # The Loop over the line items, by the product's Entitle type.
    plan: dict[str, Any] | None = None
    addons: list[dict[str, Any]] = []
    entitlements: list[dict[str, Any]] = []
    credits: list[dict[str, Any]] = []
    for item in deal.line_items:
        product = item["Product2"]
        kind, ref = product["Entitle_Type__c"], product["Entitle_Id__c"]
        if kind == "Plan":
            plan = item
        elif kind == "Add-on":
            addons.append({"id": ref, "quantity": _integer(item["Quantity"])})
        elif kind == "Entitlement":
            entitlements.append({"type": "FEATURE", "id": ref, "usageLimit": _integer(item["Quantity"])})
        elif kind == "Credit":
            credits.append(
                {
                    "id": f"sf-{item['Id']}",
                    "currencyId": ref,
                    "amount": float(item["Quantity"]),
                    "displayName": product["Name"],
                    "grantType": "PAID" if item["UnitPrice"] else "PROMOTIONAL",
                    "cost": {"amount": float(item["TotalPrice"]), "currency": currency},
                    "metadata": {"salesforceOpportunityId": opportunity["Id"], "salesforceLineItemId": item["Id"]},
                }
            )
    assert plan is not None, "the recorded opportunity has no Plan line item"

    def call(operation_id: str, body: dict[str, Any], **path: str) -> dict[str, Any] | None:
        method, template = actions.routes[operation_id]
        url = template.format(**path)
        response = http.request(method, url, json=body)
        run.calls.append(Call(operation_id, method, url, body, response.status_code, response.json()))
        if response.status_code >= 400:  # the fault connector: record the error on the account and stop
            error = response.json()["error"]
            run.account_updates["Entitle_Sync_Error__c"] = f"{error['code']}: {error['message']}"
            return None
        return dict(response.json()["data"])

    customer = call(
        "upsertCustomer",
        {
            "name": account["Name"],
            "email": account["Entitle_Billing_Email__c"],
            "metadata": {"salesforceAccountId": account["Id"]},
        },
        customerId=account["Id"],
    )
    if customer is None:
        return run
    provision: dict[str, Any] = {
        "id": f"sf-{opportunity['Id']}",
        "customerId": customer["customerId"],
        "planId": plan["Product2"]["Entitle_Id__c"],
        "metadata": {"salesforceOpportunityId": opportunity["Id"]},
    }
    if addons:
        provision["addons"] = addons
    if entitlements:
        provision["entitlements"] = entitlements
    if actions.price_overrides and plan["UnitPrice"] != plan["ListPrice"]:
        provision["priceOverrides"] = [{"baseCharge": True, "amount": plan["UnitPrice"], "currency": currency}]
    subscription = call("provisionSubscription", provision)
    if subscription is None:
        return run
    for grant in credits:
        if call("createCreditGrant", {**grant, "customerId": customer["customerId"]}) is None:
            return run
    run.account_updates.update(
        {
            "Entitle_Customer_Id__c": customer["customerId"],
            "Entitle_Subscription_Id__c": subscription["subscriptionId"],
            "Entitle_Subscription_Status__c": subscription["status"],
            "Entitle_Console_URL__c": customer["consoleUrl"],
            "Entitle_Sync_Error__c": None,
        }
    )
    return run
