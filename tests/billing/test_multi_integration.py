"""Several Stripe integrations in one environment, on SQLite and PostgreSQL.

Two integrations are connected to the same local Stripe with two different secret keys (localstripe
keeps one store for every key, so the two "accounts" share objects there): which integration did what
is told apart by Entitle's billing links and by the ids each sync recorded (each integration gets its
own Product and Prices for a plan, and a customer's subscription uses the Prices of the integration
billing it). Endpoints: Products, Customers, Subscriptions are localstripe's; Prices the stand-in's.
Emulator only: real Stripe test mode would need two accounts' keys.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from entitle.billing.models import CUSTOMER, PACKAGE, PACKAGE_CHARGE, SUBSCRIPTION, SUCCESS, BillingLink, Integration
from entitle.jobs.models import Job
from entitle.jobs.service import Worker
from entitle.subscriptions.models import Subscription
from tests.billing.conftest import card_payment_method, connect_stripe
from tests.billing.test_stripe_catalog_sync import make_plan, version
from tests.billing.test_stripe_subscription_sync import customer_row, provision, subscription_row
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.emulator_only

SECOND_KEY = "sk_test_51SecondAccount00000000000000042"


def connect_second(api: httpx.Client, emulator: StripeEmulator, **extra: Any) -> dict[str, Any]:
    body = {"vendorIdentifier": "STRIPE", "apiSecretKey": SECOND_KEY, "apiBase": emulator.api_base, **extra}
    resp = api.post("/api/v1/integrations", json=body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def links(server: LiveServer, integration_id: str, kind: str) -> list[BillingLink]:
    with server.db.read() as s:
        pk = s.scalars(select(Integration.pk).where(Integration.ref_id == integration_id)).one()
        return list(
            s.scalars(
                select(BillingLink)
                .where(BillingLink.integration_pk == pk, BillingLink.entity_kind == kind)
                .order_by(BillingLink.pk)
            )
        )


def card_customer(api: httpx.Client, emulator: StripeEmulator, ref: str, **extra: Any) -> None:
    method = card_payment_method(emulator)
    body = {"id": ref, "name": ref, "defaultPaymentMethod": {"billingId": method, "type": "CARD"}, **extra}
    resp = api.post("/api/v1/customers", json=body)
    assert resp.status_code == 200, resp.text


def two_integrations(server: LiveServer, api: httpx.Client, emulator: StripeEmulator) -> tuple[str, str]:
    """Two Stripe accounts connected and a paid plan published: it reaches both."""
    first = connect_stripe(api, emulator)
    second = connect_second(api, emulator)
    make_plan(api)
    assert Worker(server.db).drain() == 2  # one catalog sync per integration
    return first["id"], second["id"]


def test_two_integrations_are_connected_and_a_published_plan_reaches_both(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    first = connect_stripe(api, stripe_emulator)
    second = connect_second(api, stripe_emulator)
    assert first["id"] != second["id"]
    assert (first["isDefault"], second["isDefault"]) == (True, False)  # the first connected is the default
    listed = api.get("/api/v1/integrations").json()["data"]
    assert [(i["id"], i["isDefault"]) for i in listed] == [(first["id"], True), (second["id"], False)]
    # Connecting the second again (same key, no id) updates it: still two.
    again = connect_second(api, stripe_emulator, isDefault=True)
    assert again["id"] == second["id"] and again["isDefault"] is True
    listed = api.get("/api/v1/integrations").json()["data"]
    assert [(i["id"], i["isDefault"]) for i in listed] == [(first["id"], False), (second["id"], True)]

    make_plan(api)
    assert Worker(server.db).drain() == 2
    pro, charges = version(server, "plan-pro", 1)
    products = {}
    for integration_id in (first["id"], second["id"]):
        (product_link,) = links(server, integration_id, PACKAGE)
        assert (product_link.entity_pk, product_link.sync_state) == (pro.pk, SUCCESS)
        products[integration_id] = product_link.billing_id
        prices = links(server, integration_id, PACKAGE_CHARGE)
        assert sorted(p.entity_pk for p in prices) == sorted(c.pk for c in charges)
        assert all(p.sync_state == SUCCESS and p.billing_id for p in prices)
    # Each account got its own Product (here both live in the one emulator).
    assert products[first["id"]] != products[second["id"]]
    at_stripe = {p.id for p in stripe_emulator.products() if p.metadata.to_dict().get("entitleEntityId") == "plan-pro"}
    assert at_stripe == set(products.values())
    first_prices = {p.billing_id for p in links(server, first["id"], PACKAGE_CHARGE)}
    second_prices = {p.billing_id for p in links(server, second["id"], PACKAGE_CHARGE)}
    assert not first_prices & second_prices

    # Removing one leaves the other syncing: a plan published afterwards reaches the second only.
    assert api.delete(f"/api/v1/integrations/{second['id']}").status_code == 200
    listed = api.get("/api/v1/integrations").json()["data"]
    assert [(i["id"], i["isDefault"]) for i in listed] == [(first["id"], True)]
    make_plan(api, "plan-team")
    assert Worker(server.db).drain() == 1
    team, _ = version(server, "plan-team", 1)
    assert [link.entity_pk for link in links(server, first["id"], PACKAGE)] == [pro.pk, team.pk]
    assert [link.entity_pk for link in links(server, second["id"], PACKAGE)] == [pro.pk]


def test_a_customer_linked_to_the_second_integration_is_billed_only_there(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    first, second = two_integrations(server, api, stripe_emulator)
    link = {"id": second, "vendorIdentifier": "STRIPE"}
    card_customer(api, stripe_emulator, "cust-second", integrations=[link])
    card_customer(api, stripe_emulator, "cust-default")
    on_second = provision(api, "cust-second", "plan-pro", billingPeriod="MONTHLY")
    on_first = provision(api, "cust-default", "plan-pro", billingPeriod="MONTHLY")
    assert Worker(server.db).drain() == 2

    ada, bob = customer_row(server, "cust-second"), customer_row(server, "cust-default")
    sub_second, sub_first = subscription_row(server, on_second), subscription_row(server, on_first)
    assert [(x.entity_pk, x.sync_state) for x in links(server, second, CUSTOMER)] == [(ada.pk, SUCCESS)]
    assert [(x.entity_pk, x.sync_state) for x in links(server, second, SUBSCRIPTION)] == [(sub_second.pk, SUCCESS)]
    assert [(x.entity_pk, x.sync_state) for x in links(server, first, CUSTOMER)] == [(bob.pk, SUCCESS)]
    assert [(x.entity_pk, x.sync_state) for x in links(server, first, SUBSCRIPTION)] == [(sub_first.pk, SUCCESS)]

    # The Stripe subscription of the linked customer bills the second account's prices, not the first's.
    client = stripe_emulator.client()
    second_prices = {p.billing_id for p in links(server, second, PACKAGE_CHARGE)}
    first_prices = {p.billing_id for p in links(server, first, PACKAGE_CHARGE)}
    assert sub_second.billing_id and sub_first.billing_id
    billed = client.v1.subscriptions.retrieve(sub_second.billing_id)
    assert {item.plan.id for item in billed["items"].data} <= second_prices
    assert billed.customer == ada.billing_id
    other = client.v1.subscriptions.retrieve(sub_first.billing_id)
    assert {item.plan.id for item in other["items"].data} <= first_prices

    # The official client parses the customer with its Stripe link and the sync states.
    customer = server.stigg().v1.customers.retrieve("cust-second").data
    stripe_links = [(i.id, i.vendor_identifier, i.synced_entity_id) for i in customer.integrations or []]
    assert stripe_links == [(second, "STRIPE", ada.billing_id)]
    extra: Any = customer.model_extra
    assert [(s["integrationId"], s["status"], s["billingId"]) for s in extra["syncStates"]] == [
        (second, SUCCESS, ada.billing_id)
    ]
    default = server.stigg().v1.customers.retrieve("cust-default").data
    assert [(i.id, i.synced_entity_id) for i in default.integrations or []] == [(first, bob.billing_id)]
    listed = server.stigg().v1.customers.list(limit=10)
    assert {c.id: [i.id for i in c.integrations or []] for c in listed} == {
        "cust-second": [second],
        "cust-default": [first],
    }
    sub = api.get(f"/api/v1/subscriptions/{on_second}").json()["data"]
    shown = [
        (s["entityType"], s["entityId"], s["integrationId"], s["status"], s["billingId"]) for s in sub["syncStates"]
    ]
    assert shown == [("SUBSCRIPTION", on_second, second, SUCCESS, sub_second.billing_id)]
    parsed = server.stigg().v1.subscriptions.retrieve(on_second).data
    assert parsed.id == on_second and parsed.model_extra is not None and parsed.model_extra["syncStates"]

    # A second subscription of the customer stays with its integration, whatever the default is now.
    connect_stripe(api, stripe_emulator, isDefault=True)  # the first becomes the explicit default
    make_plan(api, "plan-team")
    Worker(server.db).drain()
    team_ref = provision(api, "cust-second", "plan-team", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    team = subscription_row(server, team_ref)
    assert team.pk in {x.entity_pk for x in links(server, second, SUBSCRIPTION)}
    assert team.pk not in {x.entity_pk for x in links(server, first, SUBSCRIPTION)}


def _counts(server: LiveServer) -> tuple[int, int]:
    with server.db.read() as s:
        subs = s.scalar(select(func.count()).select_from(Subscription)) or 0
        jobs = s.scalar(select(func.count()).select_from(Job)) or 0
        return subs, jobs


def test_billing_information_integration_id_must_name_a_connected_integration_agreeing_with_the_customer(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    first, second = two_integrations(server, api, stripe_emulator)
    card_customer(api, stripe_emulator, "cust-ada")
    assert api.delete(f"/api/v1/integrations/{second}").status_code == 200
    before = _counts(server)
    for missing in (second, "no-such-integration"):
        body = {"customerId": "cust-ada", "planId": "plan-pro", "billingInformation": {"integrationId": missing}}
        resp = api.post("/api/v1/subscriptions", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == "INTEGRATION_NOT_FOUND" and missing in resp.json()["error"]["message"]
        assert _counts(server) == before  # nothing written: no subscription, no job

    # A third account: an unbound customer's subscription may choose it, and the customer then lives there.
    third = connect_stripe(api, stripe_emulator, apiSecretKey="sk_test_51ThirdAccount000000000000000077")["id"]
    assert Worker(server.db).drain() == 1  # the plan reaches the new integration
    body = {"customerId": "cust-ada", "planId": "plan-pro", "billingInformation": {"integrationId": third}}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200, resp.text
    chosen = resp.json()["data"]["subscription"]
    assert [(s["integrationId"], s["status"]) for s in chosen["syncStates"]] == [(third, "PENDING")]
    Worker(server.db).drain()
    ada = customer_row(server, "cust-ada")
    assert [x.entity_pk for x in links(server, third, CUSTOMER)] == [ada.pk]
    assert links(server, first, CUSTOMER) == []

    # Bound now: a subscription naming another integration disagrees with the customer's.
    make_plan(api, "plan-team")
    Worker(server.db).drain()
    before = _counts(server)
    body = {"customerId": "cust-ada", "planId": "plan-team", "billingInformation": {"integrationId": first}}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "INTEGRATION_MISMATCH", resp.text
    assert _counts(server) == before
    # Naming its own integration (or the vendor) is fine.
    body["billingInformation"] = {"integrationId": "STRIPE"}
    team = api.post("/api/v1/subscriptions", json=body)
    assert team.status_code == 200, team.text
    chosen = team.json()["data"]["subscription"]  # it replaced the plan-pro subscription (same product)
    assert [(s["integrationId"], s["status"]) for s in chosen["syncStates"]] == [(third, "PENDING")]
    # An update cannot move a subscription to another integration; naming its own is accepted.
    moved = api.patch(f"/api/v1/subscriptions/{chosen['id']}", json={"billingInformation": {"integrationId": first}})
    assert moved.status_code == 400 and moved.json()["error"]["code"] == "INTEGRATION_MISMATCH", moved.text
    gone = api.patch(f"/api/v1/subscriptions/{chosen['id']}", json={"billingInformation": {"integrationId": second}})
    assert gone.status_code == 400 and gone.json()["error"]["code"] == "INTEGRATION_NOT_FOUND", gone.text
    kept = api.patch(f"/api/v1/subscriptions/{chosen['id']}", json={"billingInformation": {"integrationId": third}})
    assert kept.status_code == 200, kept.text


def test_removing_an_integration_leaves_its_customers_unbilled_and_the_others_on_the_default(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    first, second = two_integrations(server, api, stripe_emulator)
    card_customer(api, stripe_emulator, "cust-ada")
    provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    assert [x.sync_state for x in links(server, first, CUSTOMER)] == [SUCCESS]
    assert api.delete(f"/api/v1/integrations/{first}").status_code == 200

    # Ada lives in the removed account: she is not moved to the second one; her new plan is not billed.
    make_plan(api, "plan-team")
    Worker(server.db).drain()
    resp = api.post("/api/v1/subscriptions", json={"customerId": "cust-ada", "planId": "plan-team"})
    assert resp.status_code == 200, resp.text
    ada_sub = resp.json()["data"]["subscription"]
    assert (ada_sub["status"], ada_sub["syncStates"]) == ("ACTIVE", [])
    assert links(server, second, CUSTOMER) == [] and links(server, second, SUBSCRIPTION) == []
    named = {"customerId": "cust-ada", "planId": "plan-pro", "billingInformation": {"integrationId": second}}
    refused = api.post("/api/v1/subscriptions", json=named)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "INTEGRATION_MISMATCH"

    # A customer the removed account never held is billed by the default left, the second.
    card_customer(api, stripe_emulator, "cust-bob")
    resp = api.post("/api/v1/subscriptions", json={"customerId": "cust-bob", "planId": "plan-team"})
    bob_sub = resp.json()["data"]["subscription"]
    assert bob_sub["status"] == "PAYMENT_PENDING"
    assert [(s["integrationId"], s["status"]) for s in bob_sub["syncStates"]] == [(second, "PENDING")]
    Worker(server.db).drain()
    bob = customer_row(server, "cust-bob")
    assert [(x.entity_pk, x.sync_state) for x in links(server, second, CUSTOMER)] == [(bob.pk, SUCCESS)]


def test_coupons_reach_every_integration_and_archiving_deletes_them_at_each(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    first, second = two_integrations(server, api, stripe_emulator)
    resp = api.post("/api/v1/coupons", json={"id": "launch-20", "name": "Launch", "percentOff": 20})
    assert resp.status_code == 200, resp.text
    assert Worker(server.db).drain() == 2  # one coupon sync per integration
    for integration_id in (first, second):
        (coupon_link,) = links(server, integration_id, "COUPON")
        assert coupon_link.sync_state == SUCCESS and coupon_link.billing_id
        path = f"/api/v1/integrations/{integration_id}/sync-states"
        (state,) = api.get(path, params={"entityType": "COUPON"}).json()["data"]
        assert (state["entityId"], state["status"]) == ("launch-20", SUCCESS)
        assert state["billingId"] == coupon_link.billing_id
    assert api.post("/api/v1/coupons/launch-20/archive").status_code == 200
    with server.db.read() as s:
        deletes = s.scalars(select(Job).where(Job.kind == "billing.delete_coupon").order_by(Job.pk)).all()
        integration_pks = {ref: pk for ref, pk in s.execute(select(Integration.ref_id, Integration.pk))}
    assert [job.payload["integrationPk"] for job in deletes] == [integration_pks[first], integration_pks[second]]
