"""Contracts (issue 17) driven through the official `stigg` client on SQLite and PostgreSQL: one customer's
sales-led subscriptions grouped under the caller's contract id — created atomically with new and existing
subscriptions, idempotent on `contractId`, one per product, one currency, each subscription on at most one
contract, the state derived from the subscriptions, and archiving cancels them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stigg

from entitle.contracts import rules
from entitle.contracts.service import list_contracts
from entitle.db.pagination import PageRequest
from entitle.environments.service import ensure_environment
from entitle.subscriptions.service import list_subscriptions
from tests.conftest import LiveServer
from tests.support.http import SSL_CONTEXT
from tests.support.statements import statements as _statements


def _paid(client: stigg.Stigg, plan: str, product: str, amount: int, currency: str) -> None:
    client.v1.plans.create(id=plan, display_name=plan.title(), product_id=product)
    client.v1.plans.update(
        plan,
        charges={  # type: ignore[arg-type]
            "pricing_type": "PAID",
            "pricing_models": [
                {
                    "billing_model": "FLAT_FEE",
                    "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": amount, "currency": currency}}],
                }
            ],
        },
    )
    client.v1.plans.publish(plan, migration_type="NEW_CUSTOMERS")


@pytest.fixture
def deal(client: stigg.Stigg) -> stigg.Stigg:
    """Product `core` (plan `enterprise`, CUSTOM-priced), `analytics` (plan `insights`, 50 usd), `eu` (plan
    `euro`, 40 eur); customers acme (with a custom subscription `sub-ent`) and globex."""
    c = client.v1
    c.features.create_feature(id="sso", display_name="SSO", feature_type="BOOLEAN")
    for product in ("core", "analytics", "eu"):
        c.products.create_product(id=product, display_name=product.title())
    c.plans.create(id="enterprise", display_name="Enterprise", product_id="core", pricing_type="CUSTOM")
    c.plans.entitlements.create("enterprise", entitlements=[{"type": "FEATURE", "id": "sso"}])
    c.plans.publish("enterprise", migration_type="NEW_CUSTOMERS")
    _paid(client, "insights", "analytics", 50, "usd")
    _paid(client, "euro", "eu", 40, "eur")
    c.customers.provision(id="acme")
    c.customers.provision(id="globex")
    c.subscriptions.provision(customer_id="acme", plan_id="enterprise", id="sub-ent")
    return client


def _new(plan: str, ref: str, customer: str = "acme", **extra: Any) -> dict[str, Any]:
    return {"new_subscription": {"customer_id": customer, "plan_id": plan, "id": ref, **extra}}


DEAL_PRICE = {"price_overrides": [{"base_charge": True, "amount": 35}]}


def test_a_contract_groups_new_and_existing_subscriptions_once(deal: stigg.Stigg) -> None:
    c = deal.v1
    made = c.contracts.create(
        customer_id="acme",
        contract_id="opp-42",
        name="Acme 2027",
        po_number="PO-7",
        subscriptions=[
            {"existing_subscription_id": "sub-ent"},
            _new("insights", "sub-insights", **DEAL_PRICE),  # type: ignore[list-item]
        ],
    ).data
    assert (made.contract_id, made.customer_external_id, made.state) == ("opp-42", "acme", "ACTIVE")
    assert (made.po_number, made.name) == ("PO-7", "PO-7")  # the PO number names it when set, as at Stigg
    assert [(s.subscription_id, s.plan_display_name, s.product_display_name) for s in made.subscriptions] == [
        ("sub-ent", "Enterprise", "Core"),
        ("sub-insights", "Insights", "Analytics"),
    ]
    assert made.billing_id is None and made.latest_invoice is None
    assert c.subscriptions.retrieve("sub-insights").data.contract_id == "opp-42"
    assert c.subscriptions.retrieve("sub-ent").data.contract_id == "opp-42"

    # The same contractId again: the contract as it is, nothing created twice.
    again = c.contracts.create(
        customer_id="acme",
        contract_id="opp-42",
        subscriptions=[_new("euro", "sub-euro", **DEAL_PRICE)],  # type: ignore[list-item]
    ).data
    assert [s.subscription_id for s in again.subscriptions] == ["sub-ent", "sub-insights"]
    assert sorted(s.id for s in c.subscriptions.list(customer_id="acme").data) == ["sub-ent", "sub-insights"]

    assert [x.contract_id for x in c.customers.list_contracts("acme").data] == ["opp-42"]
    assert c.customers.list_contracts("globex").data == []
    assert [x.contract_id for x in c.contracts.list(customer_external_id="acme")] == ["opp-42"]
    assert list(c.contracts.list(state="DRAFT")) == []
    assert c.contracts.retrieve("opp-42").data.name == "PO-7"

    # An update replaces its subscriptions; one left out keeps running, off the contract.
    updated = c.contracts.update("opp-42", subscription_ids=["sub-ent"], name="Acme renewal", po_number=None).data
    assert ([s.subscription_id for s in updated.subscriptions], updated.name) == (["sub-ent"], "Acme renewal")
    insights = c.subscriptions.retrieve("sub-insights").data
    assert (insights.status, insights.contract_id) == ("ACTIVE", None)

    # Archiving cancels its subscriptions now; the contract stays, CANCELED.
    archived = c.contracts.delete("opp-42").data
    assert archived.state == "CANCELED"
    assert c.subscriptions.retrieve("sub-ent").data.status == "CANCELED"
    assert c.subscriptions.retrieve("sub-insights").data.status == "ACTIVE"
    assert not c.customers.check_entitlement("acme", feature_id="sso").data.is_granted
    assert [x.contract_id for x in c.contracts.list(state="CANCELED,END_BILLING")] == ["opp-42"]
    with pytest.raises(stigg.ConflictError, match="archived"):
        c.contracts.update("opp-42", name="again")


@pytest.mark.parametrize(
    ("subscriptions", "status", "says"),
    [
        # A self-served price: not a sales-led subscription.
        ([_new("insights", "sub-new")], 400, "neither custom-priced"),
        # A new subscription of a product the customer holds replaces the held one, which then cannot join.
        ([{"existing_subscription_id": "sub-ent"}, _new("enterprise", "sub-new")], 400, "only open subscriptions"),
        # Two currencies.
        ([_new("insights", "sub-new", **DEAL_PRICE), _new("euro", "sub-eur", **DEAL_PRICE)], 400, "one currency"),
        # Another customer's subscription.
        ([_new("insights", "sub-new", customer="globex", **DEAL_PRICE)], 400, "not the contract's 'acme'"),
        ([{"existing_subscription_id": "nope"}], 404, "nope"),
        (
            [{"existing_subscription_id": "sub-ent", "new_subscription": _new("insights", "x")["new_subscription"]}],
            400,
            "exactly one",
        ),
    ],
)
def test_a_contract_it_cannot_hold_is_refused_and_nothing_is_written(
    deal: stigg.Stigg, api: httpx.Client, subscriptions: list[dict[str, Any]], status: int, says: str
) -> None:
    body = {"customerId": "acme", "contractId": "opp-bad", "subscriptions": [_wire(x) for x in subscriptions]}
    resp = api.post("/api/v1/contracts", json=body)
    assert resp.status_code == status and says in resp.text, resp.text
    assert api.get("/api/v1/contracts/opp-bad").status_code == 404
    assert sorted(s.id for s in deal.v1.subscriptions.list(customer_id="acme").data) == ["sub-ent"]
    ent = deal.v1.subscriptions.retrieve("sub-ent").data
    assert (ent.status, ent.contract_id) == ("ACTIVE", None)


def test_billing_contracts_and_shared_subscriptions_are_refused(deal: stigg.Stigg, api: httpx.Client) -> None:
    resp = api.post("/api/v1/contracts", json={"customerId": "acme", "setupBilling": True})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "UNSUPPORTED_FIELD"
    first = deal.v1.contracts.create(
        customer_id="acme",
        contract_id="c-1",
        setup_billing=False,
        subscriptions=[{"existing_subscription_id": "sub-ent"}],
    ).data
    assert first.state == "ACTIVE"
    with pytest.raises(stigg.ConflictError, match="already on contract 'c-1'"):
        deal.v1.contracts.create(
            customer_id="acme", contract_id="c-2", subscriptions=[{"existing_subscription_id": "sub-ent"}]
        )
    # Another customer cannot take a contract id in use.
    with pytest.raises(stigg.ConflictError):
        deal.v1.contracts.create(customer_id="globex", contract_id="c-1")
    empty = deal.v1.contracts.create(customer_id="globex", contract_id="c-3").data
    assert (empty.state, empty.subscriptions) == ("DRAFT", [])
    resp = api.patch("/api/v1/contracts/c-3", json={"setupBilling": True})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "UNSUPPORTED_FIELD"
    resp = api.get("/api/v1/contracts", params={"state": "SIGNED"})
    assert resp.status_code == 400


def test_a_contract_without_setup_billing_provisions_access_only(deal: stigg.Stigg, server: LiveServer) -> None:
    """The official client sends no `setupBilling` unless its caller sets it (Stigg's default is true): the
    contract is made, access only, and says so with a null `billingId` and `billingState`."""
    sent: list[bytes] = []
    http = httpx.Client(verify=SSL_CONTEXT, event_hooks={"request": [lambda request: sent.append(request.read())]})
    client = stigg.Stigg(api_key=server.server_key, base_url=server.base_url, max_retries=0, http_client=http)
    made = client.v1.contracts.create(
        customer_id="acme", contract_id="c-default", subscriptions=[{"existing_subscription_id": "sub-ent"}]
    ).data
    assert b"setupBilling" not in sent[-1] and b"c-default" in sent[-1]
    assert (made.state, made.billing_id, made.billing_state, made.latest_invoice) == ("ACTIVE", None, None, None)
    renamed = client.v1.contracts.update("c-default", name="Renamed").data
    assert b"setupBilling" not in sent[-1]
    assert (renamed.name, renamed.billing_id, renamed.billing_state) == ("Renamed", None, None)
    assert deal.v1.subscriptions.retrieve("sub-ent").data.contract_id == "c-default"


def _wire(item: dict[str, Any]) -> dict[str, Any]:
    """The snake_case test table in the wire's camelCase."""

    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(part.title() for part in rest)

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {camel(k): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return dict(convert(item))


@pytest.mark.parametrize(
    ("statuses", "archived", "state"),
    [
        ([], False, "DRAFT"),
        (["NOT_STARTED"], False, "DRAFT"),
        (["CANCELED", "IN_TRIAL"], False, "ACTIVE"),
        (["CANCELED", "EXPIRED"], False, "END_BILLING"),
        (["ACTIVE"], True, "CANCELED"),
    ],
)
def test_the_state_follows_the_subscriptions(statuses: list[str], archived: bool, state: str) -> None:
    assert rules.state_of(statuses, archived) == state


def _member(ref: str, product: str = "core", currency: str | None = "usd", **extra: Any) -> rules.Member:
    fields: dict[str, Any] = {
        "ref": ref,
        "customer_ref": "acme",
        "product_ref": product,
        "status": "ACTIVE",
        "currency": currency,
        "custom_priced": True,
        "externally_billed": False,
    } | extra
    return rules.Member(**fields)


def test_the_membership_rules() -> None:
    assert rules.check_members("acme", []) is None
    assert rules.check_members("acme", [_member("a"), _member("b", "crm", None)]) == "usd"
    with pytest.raises(Exception, match="one subscription per product"):
        rules.check_members("acme", [_member("a"), _member("b")])
    with pytest.raises(Exception, match="one currency"):
        rules.check_members("acme", [_member("a"), _member("b", "crm", "eur")])
    with pytest.raises(Exception, match="appears twice"):
        rules.check_members("acme", [_member("a"), _member("a", "crm")])
    # Externally billed (a billingId) joins without custom prices.
    assert rules.check_members("acme", [_member("a", custom_priced=False, externally_billed=True)]) == "usd"


def test_a_page_of_subscriptions_reads_their_contracts_at_once(deal: stigg.Stigg, server: LiveServer) -> None:
    """Listing subscriptions costs the same queries for a page of 2 as for a page of 8: their contracts (and
    customers, add-ons, coupons...) are read for the whole page, not one subscription at a time. Listing
    contracts costs the same for one contract as for eight."""
    c = deal.v1
    env_id = ensure_environment(server.db, "development").pk

    def contracts_listed() -> tuple[int, list[str]]:
        with _statements(server.db) as seen:
            page = list_contracts(server.db, env_id, PageRequest(limit=100))
        return len(seen), [m.sub.ref_id for view in page.items for m in view.members]

    for n in range(8):
        c.customers.provision(id=f"buyer{n}")
        c.contracts.create(
            customer_id=f"buyer{n}",
            contract_id=f"opp-{n}",
            subscriptions=[_new("insights", f"sub-{n}", customer=f"buyer{n}", **DEAL_PRICE)],  # type: ignore[list-item]
        )
        if n == 0:
            one_contract = contracts_listed()
    eight_contracts = contracts_listed()
    assert one_contract[1] == ["sub-0"] and eight_contracts[1] == [f"sub-{n}" for n in range(8)]
    assert one_contract[0] == eight_contracts[0]  # and so do the contracts with their subscriptions

    def listed(limit: int) -> tuple[int, dict[str, str | None]]:
        with _statements(server.db) as seen:
            _, views = list_subscriptions(server.db, env_id, PageRequest(limit=limit), plan_ref="insights")
        return len(seen), {v.sub.ref_id: v.contract_ref for v in views}

    few, two = listed(2)
    many, eight = listed(8)
    assert two == {"sub-0": "opp-0", "sub-1": "opp-1"}
    assert eight == {f"sub-{n}": f"opp-{n}" for n in range(8)}
    assert many == few
    # And through the API, each listed subscription shows its contractId.
    assert {s.id: s.contract_id for s in c.subscriptions.list(plan_id="insights", limit=8).data} == eight
