from __future__ import annotations

import httpx
import pytest
import stigg

from tests.test_core_path import build_catalog


def test_customer_lifecycle_through_official_client(client: stigg.Stigg) -> None:
    created = client.v1.customers.provision(
        id="cust-1",
        name="Acme",
        email="billing@acme.test",
        metadata={"tier": "gold", "region": "eu"},
        language="en",
        timezone="Europe/Paris",
        integrations=[{"id": "stripe-main", "vendor_identifier": "STRIPE", "synced_entity_id": "cus_123"}],
    ).data
    assert created.id == "cust-1"
    assert created.email == "billing@acme.test"
    assert created.metadata == {"tier": "gold", "region": "eu"}
    assert created.archived_at is None
    assert [(i.id, i.vendor_identifier, i.synced_entity_id) for i in created.integrations or []] == [
        ("stripe-main", "STRIPE", "cus_123")
    ]
    assert created.billing_id == "cus_123"  # the Stripe customer the billing adapter bills

    # metadata replaces wholesale; omitted fields stay
    updated = client.v1.customers.update("cust-1", metadata={"tier": "platinum"}).data
    assert updated.metadata == {"tier": "platinum"}
    assert updated.name == "Acme"
    assert updated.email == "billing@acme.test"

    fetched = client.v1.customers.retrieve("cust-1").data
    assert fetched.metadata == {"tier": "platinum"}
    assert fetched.updated_at >= fetched.created_at

    archived = client.v1.customers.archive("cust-1").data
    assert archived.archived_at is not None
    assert archived.name is None and archived.email is None
    with pytest.raises(stigg.NotFoundError):
        client.v1.customers.retrieve("cust-1")
    assert [c.id for c in client.v1.customers.list()] == []

    restored = client.v1.customers.unarchive("cust-1").data
    assert restored.archived_at is None
    assert restored.name is None  # erased on archive, not restored
    assert client.v1.customers.retrieve("cust-1").data.metadata == {"tier": "platinum"}


def test_archived_id_can_never_be_provisioned_again(client: stigg.Stigg, api: httpx.Client) -> None:
    client.v1.customers.provision(id="gone", name="Gone")
    client.v1.customers.archive("gone")
    again = api.post("/api/v1/customers", json={"id": "gone", "name": "Back"})
    assert again.status_code == 409
    assert again.headers["x-should-retry"] == "false"
    assert again.json()["error"]["code"] == "CUSTOMER_ARCHIVED"

    client.v1.customers.provision(id="live")
    dup = api.post("/api/v1/customers", json={"id": "live"})
    assert dup.status_code == 409
    assert dup.json()["error"]["code"] == "ALREADY_EXISTS"


def test_list_filters_and_pages(client: stigg.Stigg) -> None:
    for i in range(5):
        client.v1.customers.provision(id=f"c{i}", name="Same" if i < 3 else f"N{i}", email=f"u{i}@x.test")
    assert [c.id for c in client.v1.customers.list(name="Same")] == ["c0", "c1", "c2"]
    assert [c.id for c in client.v1.customers.list(email="u4@x.test")] == ["c4"]
    first = client.v1.customers.list(limit=2)
    assert [c.id for c in first.data] == ["c0", "c1"]
    assert [c.id for c in first] == [f"c{i}" for i in range(5)]


def test_import_creates_only_new_customers(client: stigg.Stigg) -> None:
    client.v1.customers.provision(id="old", name="Old")
    result = client.v1.customers.import_(
        customers=[
            {"id": "old", "email": None, "name": "Renamed"},
            {"id": "new-1", "email": "n1@x.test", "name": "New 1", "metadata": {"src": "csv"}},
            {"id": "new-2", "email": None, "name": None},
        ]
    ).data
    assert sorted(result.new_customers) == ["new-1", "new-2"]
    assert client.v1.customers.retrieve("old").data.name == "Old"
    assert client.v1.customers.retrieve("new-1").data.metadata == {"src": "csv"}


def test_integration_links(client: stigg.Stigg, api: httpx.Client) -> None:
    client.v1.customers.provision(id="c")
    link = client.v1.customers.integrations.link(
        "c", body_id="stripe-main", vendor_identifier="STRIPE", synced_entity_id="cus_1"
    ).data
    assert (link.id, link.synced_entity_id) == ("stripe-main", "cus_1")
    assert (
        client.v1.customers.integrations.update("stripe-main", id="c", synced_entity_id="cus_2").data.synced_entity_id
        == "cus_2"
    )
    assert [i.id for i in client.v1.customers.integrations.list("c")] == ["stripe-main"]
    assert client.v1.customers.integrations.retrieve("stripe-main", id="c").data.synced_entity_id == "cus_2"
    dup = api.post(
        "/api/v1/customers/c/integrations",
        json={"id": "stripe-main", "vendorIdentifier": "STRIPE", "syncedEntityId": "x"},
    )
    assert dup.status_code == 409
    assert (
        api.post(
            "/api/v1/customers/c/integrations", json={"id": "x", "vendorIdentifier": "AUTH0", "syncedEntityId": "x"}
        ).status_code
        == 400
    )
    client.v1.customers.integrations.unlink("stripe-main", id="c")
    assert list(client.v1.customers.integrations.list("c")) == []


def test_bad_input_is_rejected_whole(api: httpx.Client) -> None:
    bad_email = api.post("/api/v1/customers", json={"id": "c", "email": "not-an-email"})
    assert bad_email.status_code == 400
    bad_currency = api.post("/api/v1/customers", json={"id": "c", "billingCurrency": "usdx"})
    assert bad_currency.status_code == 400
    twice = api.post(
        "/api/v1/customers",
        json={"id": "c", "integrations": [{"id": "a", "vendorIdentifier": "STRIPE"}] * 2},
    )
    assert twice.status_code == 400
    assert api.get("/api/v1/customers/c").status_code == 404


def test_customer_level_coupon_is_refused_not_ignored(client: stigg.Stigg, api: httpx.Client) -> None:
    """A customer's couponId would discount none of its subscriptions: refused; "" and null (no coupon) pass."""
    coupon = {
        "id": "welcome",
        "name": "Welcome",
        "percentOff": 10,
        "amountsOff": None,
        "description": None,
        "durationInMonths": None,
        "metadata": None,
    }
    assert api.post("/api/v1/coupons", json=coupon).status_code == 200
    refused = api.post("/api/v1/customers", json={"id": "c1", "couponId": "welcome"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "UNSUPPORTED_FIELD"
    assert refused.json()["error"]["message"].startswith("couponId:")
    assert client.v1.customers.provision(id="c1", coupon_id="").data.coupon_id is None
    assert client.v1.customers.update("c1", coupon_id="").data.coupon_id is None
    assert api.patch("/api/v1/customers/c1", json={"couponId": None}).status_code == 200
    again = api.patch("/api/v1/customers/c1", json={"couponId": "welcome"})
    assert again.json()["error"]["code"] == "UNSUPPORTED_FIELD"


def test_a_write_to_an_archived_customer_says_it_is_archived(client: stigg.Stigg, api: httpx.Client) -> None:
    # An archived customer is not returned (404, as Stigg does), and a write to it is a 404 too, but with a
    # code and a message of its own: "was not found" would send a client looking for a typo in an id that exists.
    build_catalog(client)
    api.post("/api/v1/credits/custom-currencies", json={"id": "gems", "displayName": "Gems"}).raise_for_status()
    client.v1.customers.provision(id="gone", name="Gone")
    client.v1.customers.archive("gone")
    writes = [
        ("PATCH", "/api/v1/customers/gone", {"name": "Back"}),
        ("POST", "/api/v1/subscriptions", {"customerId": "gone", "planId": "pro", "billingPeriod": "MONTHLY"}),
        ("POST", "/api/v2/usage", {"usages": [{"customerId": "gone", "featureId": "api-calls", "value": 1}]}),
        (
            "POST",
            "/api/v1/credits/grants",
            {"customerId": "gone", "currencyId": "gems", "amount": 5, "displayName": "x", "grantType": "PROMOTIONAL"},
        ),
    ]
    for method, path, body in writes:
        answer = api.request(method, path, json=body)
        assert answer.status_code == 404, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "CUSTOMER_ARCHIVED", (path, error)
        assert "customer 'gone' is archived" in error["message"]
    with pytest.raises(stigg.NotFoundError):
        client.v1.customers.retrieve("gone")  # a read: not returned
    assert client.v1.subscriptions.list(customer_id="gone").data == []  # nothing was written
    # An id that never existed is still 404 on a write.
    unknown = api.patch("/api/v1/customers/never", json={"name": "x"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "NOT_FOUND")


def test_the_email_filter_matches_an_address_in_any_case(client: stigg.Stigg) -> None:
    client.v1.customers.provision(id="mixed", email="Ops.Team@Acme.Test")
    client.v1.customers.provision(id="lower", email="ops@acme.test")
    client.v1.customers.provision(id="other", email="ops@acme.testing")
    assert [c.id for c in client.v1.customers.list(email="ops.team@acme.test")] == ["mixed"]
    assert [c.id for c in client.v1.customers.list(email="OPS@ACME.TEST")] == ["lower"]
    assert [c.id for c in client.v1.customers.list(email="Ops.Team@Acme.Test")] == ["mixed"]
    assert [c.id for c in client.v1.customers.list(email="ops%@acme.test")] == []  # no pattern: equality
