"""The flow simulator (issue 17): recorded Salesforce opportunities replayed through exactly the HTTP calls
the Flow of docs/salesforce.md makes, on SQLite and PostgreSQL (one server per module and engine)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stigg

from entitle.salesforce.openapi import document
from tests.conftest import LiveServer
from tests.support.http import SSL_CONTEXT
from tests.support.salesforce_flow import Actions, Recorded, recorded, run_flow

LIST_PRICE = 1000


@pytest.fixture(scope="module")
def api(module_server: LiveServer) -> Iterator[httpx.Client]:
    """The catalog the recorded deals name (the unknown plan's excepted), made once per server."""
    c = module_server.stigg().v1
    c.features.create_feature(id="seats", display_name="Seats", feature_type="NUMBER", meter_type="FLUCTUATING")
    c.features.create_feature(id="api-calls", display_name="API calls", feature_type="NUMBER", meter_type="INCREMENTAL")
    c.products.create_product(id="app", display_name="App")
    c.plans.create(id="plan-business", display_name="Business", product_id="app")
    c.plans.entitlements.create(
        "plan-business",
        entitlements=[
            {"type": "FEATURE", "id": "seats", "usage_limit": 10},
            {"type": "FEATURE", "id": "api-calls", "usage_limit": 1000, "reset_period": "MONTH"},
        ],
    )
    flat = {"billing_model": "FLAT_FEE", "price_periods": [_monthly(LIST_PRICE)]}
    c.plans.update("plan-business", charges={"pricing_type": "PAID", "pricing_models": [flat]})  # type: ignore[arg-type]
    c.plans.publish("plan-business", migration_type="NEW_CUSTOMERS")
    c.credits.custom_currencies.create(id="ai-credits", display_name="AI credits")
    with module_server.http() as client:
        yield client


def _monthly(amount: int) -> dict[str, Any]:
    return {"billing_period": "MONTHLY", "price": {"amount": amount, "currency": "usd"}}


@pytest.fixture(scope="module")
def actions(api: httpx.Client) -> Actions:
    return Actions.registered(api)


def _state(client: stigg.Stigg, customer: str) -> dict[str, Any]:
    """Everything the deal provisions, as the API shows it."""
    subs = client.v1.subscriptions.list(customer_id=customer).data
    grants = client.v1.credits.grants.list(customer_id=customer).data
    return {
        "customer": client.v1.customers.retrieve(customer).data.model_dump(),
        "subscriptions": [s.model_dump() for s in subs],
        "grants": [g.model_dump() for g in grants],
    }


def test_a_closed_won_opportunity_becomes_one_customer_and_one_subscription_and_a_replay_changes_nothing(
    module_server: LiveServer, api: httpx.Client, actions: Actions
) -> None:
    deal = recorded("closed_won")
    account, opportunity = deal.account["Id"], deal.opportunity["Id"]
    client = module_server.stigg()

    first = run_flow(api, actions, deal)

    assert first.fault is None, first.calls
    assert [c.operation_id for c in first.calls] == ["upsertCustomer", "provisionSubscription", "createCreditGrant"]
    assert all(c.answer["data"]["created"] for c in first.calls)
    subscription_id = f"sf-{opportunity}"
    assert first.account_updates == {
        "Entitle_Customer_Id__c": account,
        "Entitle_Subscription_Id__c": subscription_id,
        "Entitle_Subscription_Status__c": "ACTIVE",
        # The live servers of the tests are configured with ENTITLE_PUBLIC_URL http://testserver.
        "Entitle_Console_URL__c": f"http://testserver/console/customers/{account}",
        "Entitle_Sync_Error__c": None,
    }
    customer = client.v1.customers.retrieve(account).data
    assert (customer.name, customer.email) == ("Acme Corp", "billing@acme.example")
    assert customer.metadata == {"salesforceAccountId": account}
    (sub,) = client.v1.subscriptions.list(customer_id=account).data
    assert (sub.id, sub.plan_id, sub.status) == (subscription_id, "plan-business", "ACTIVE")
    assert sub.metadata == {"salesforceOpportunityId": opportunity}
    assert sorted((e.id, e.type) for e in sub.subscription_entitlements or []) == [
        ("api-calls", "FEATURE"),
        ("seats", "FEATURE"),
    ]
    seats = client.v1.customers.check_entitlement(account, feature_id="seats").data
    calls = client.v1.customers.check_entitlement(account, feature_id="api-calls").data
    assert (seats.is_granted, seats.usage_limit, calls.usage_limit) == (True, 50, 250000)
    (grant,) = client.v1.credits.grants.list(customer_id=account).data
    assert (grant.id, grant.currency_id, grant.amount, grant.grant_type) == (
        "sf-00k5g00000LnCrdAAA",
        "ai-credits",
        5000,
        "PAID",
    )
    assert (Decimal(str(grant.cost.amount)), grant.cost.currency) == (Decimal(100), "usd")
    balance = client.v1.customers.check_entitlement(account, currency_id="ai-credits").data
    assert (Decimal(str(balance.usage_limit)), Decimal(str(balance.current_usage))) == (5000, 0)
    # The document follows the request model: with priceOverrides honoured, the Flow sends the sales price.
    assert actions.price_overrides
    _assert_price_override(api, subscription_id, deal)
    before = _state(client, account)

    again = run_flow(api, actions, deal)

    assert again.fault is None, again.calls
    assert [c.body for c in again.calls] == [c.body for c in first.calls]
    assert not any(c.answer["data"]["created"] for c in again.calls)
    assert again.account_updates == first.account_updates
    assert _state(client, account) == before


def _assert_price_override(api: httpx.Client, subscription_id: str, deal: Recorded) -> None:
    """The sales price the Flow sent as the base charge's override is what the subscription costs."""
    (plan,) = [i for i in deal.line_items if i["Product2"]["Entitle_Type__c"] == "Plan"]
    sub = api.get(f"/api/v1/subscriptions/{subscription_id}").raise_for_status().json()["data"]
    amounts = set(_amounts(sub.get("prices")))
    assert Decimal(repr(plan["UnitPrice"])) in amounts and Decimal(LIST_PRICE) not in amounts, sub.get("prices")


def _amounts(value: Any) -> Iterator[Decimal]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "amount" and isinstance(inner, int | float):
                yield Decimal(repr(inner))
            else:
                yield from _amounts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _amounts(inner)


def test_an_opportunity_naming_an_unknown_plan_gets_a_4xx_the_flow_branches_on_and_provisions_nothing(
    module_server: LiveServer, api: httpx.Client, actions: Actions
) -> None:
    deal = recorded("unknown_plan")
    account = deal.account["Id"]
    client = module_server.stigg()

    run = run_flow(api, actions, deal)

    failed = run.calls[-1]
    assert (failed.operation_id, failed.status) == ("provisionSubscription", 404)
    assert run.fault is not None and run.fault["code"] == "NOT_FOUND"
    assert "plan-legacy-enterprise" in run.fault["message"]
    # The fault path stops the Flow: no credit grant is attempted, and the account gets the code, not ids.
    assert [c.operation_id for c in run.calls] == ["upsertCustomer", "provisionSubscription"]
    assert run.account_updates == {"Entitle_Sync_Error__c": f"NOT_FOUND: {run.fault['message']}"}
    assert client.v1.subscriptions.list(customer_id=account).data == []
    assert client.v1.credits.grants.list(customer_id=account).data == []
    assert api.get(f"/api/v1/subscriptions/sf-{deal.opportunity['Id']}").status_code == 404


def test_the_document_and_the_actions_are_served_with_a_server_key_only(
    module_server: LiveServer, api: httpx.Client
) -> None:
    assert api.get("/api/v1/salesforce/openapi.json").json() == document("http://testserver")
    with httpx.Client(base_url=module_server.base_url, verify=SSL_CONTEXT) as anonymous:
        refused = [
            anonymous.get("/api/v1/salesforce/openapi.json"),
            anonymous.put("/api/v1/salesforce/customers/0015g00000NoKeyAAA", json={"name": "x"}),
        ]
    assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [(401, "UNAUTHENTICATED")] * 2


def test_an_upsert_updates_what_differs_and_a_reused_id_with_other_terms_is_refused(api: httpx.Client) -> None:
    account = "0015g00000UpsrtAAA"
    created = api.put(f"/api/v1/salesforce/customers/{account}", json={"name": "Initech"}).json()["data"]
    renamed = api.put(f"/api/v1/salesforce/customers/{account}", json={"name": "Initrode"}).json()["data"]
    assert (created["created"], renamed["created"], renamed["name"]) == (True, False, "Initrode")
    assert api.get(f"/api/v1/customers/{account}").json()["data"]["name"] == "Initrode"
    bad_id = api.put("/api/v1/salesforce/customers/" + "x" * 256, json={})
    assert (bad_id.status_code, bad_id.json()["error"]["code"]) == (400, "INVALID_ARGUMENT")

    sub = {"id": "sf-0065g00000ReuseAAA", "customerId": account, "planId": "plan-business"}
    assert api.post("/api/v1/salesforce/subscriptions", json=sub).json()["data"]["created"] is True
    other = api.put("/api/v1/salesforce/customers/0015g00000OtherAAA", json={}).json()["data"]["customerId"]
    reused = api.post("/api/v1/salesforce/subscriptions", json={**sub, "customerId": other})
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    assert api.get("/api/v1/subscriptions", params={"customerId": other}).json()["data"] == []

    grant = {
        "id": "sf-00k5g00000ReuseAAA",
        "customerId": account,
        "currencyId": "ai-credits",
        "amount": 10,
        "displayName": "Credits",
        "grantType": "PROMOTIONAL",
    }
    assert api.post("/api/v1/salesforce/credit-grants", json=grant).json()["data"]["created"] is True
    more = api.post("/api/v1/salesforce/credit-grants", json={**grant, "amount": 20})
    assert (more.status_code, more.json()["error"]["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    long_id = api.post("/api/v1/salesforce/credit-grants", json={**grant, "id": "g" * 65})
    assert (long_id.status_code, long_id.json()["error"]["code"]) == (400, "INVALID_ARGUMENT")
    balance = api.get(f"/api/v1/customers/{account}/entitlements/check", params={"currencyId": "ai-credits"})
    assert balance.json()["data"]["usageLimit"] == 10


def test_an_archived_accounts_answers_are_the_ones_the_document_lists(api: httpx.Client) -> None:
    """docs/salesforce.md said 409 CUSTOMER_ARCHIVED for every action; provisionSubscription and createCreditGrant
    answer 404 (an archived customer takes no writes, as in the API), a status the served document described
    as NOT_FOUND only: the Flow's fault path met a code its document never named for that status."""
    account = "0015g00000ArchivedAA"
    assert api.put(f"/api/v1/salesforce/customers/{account}", json={"name": "Gone"}).status_code == 200
    assert api.post(f"/api/v1/customers/{account}/archive").status_code == 200
    served = {
        op["operationId"]: op["responses"]
        for methods in api.get("/api/v1/salesforce/openapi.json").json()["paths"].values()
        for op in methods.values()
    }
    answers = {
        "upsertCustomer": api.put(f"/api/v1/salesforce/customers/{account}", json={"name": "Back"}),
        "provisionSubscription": api.post(
            "/api/v1/salesforce/subscriptions",
            json={"id": "sf-006Archived", "customerId": account, "planId": "plan-business"},
        ),
        "createCreditGrant": api.post(
            "/api/v1/salesforce/credit-grants",
            json={
                "id": "sf-00kArchived",
                "customerId": account,
                "currencyId": "ai-credits",
                "amount": 5,
                "displayName": "Pack",
                "grantType": "PROMOTIONAL",
            },
        ),
    }
    for operation_id, answer in answers.items():
        assert answer.json()["error"]["code"] == "CUSTOMER_ARCHIVED", (operation_id, answer.text)
        assert "CUSTOMER_ARCHIVED" in served[operation_id][str(answer.status_code)]["description"], operation_id
