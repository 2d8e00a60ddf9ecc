"""Add-ons through the official client: max quantity, dependencies, plan compatibility, versions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import stigg

from tests.conftest import LiveServer
from tests.test_plans import add, error_of, make_catalog, plan, publish, rows_of, versions


def addon(api: httpx.Client, ref: str, product: str = "prod", **extra: Any) -> dict[str, Any]:
    resp = api.post("/api/v1/addons", json={"id": ref, "displayName": ref.title(), "productId": product, **extra})
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


FLAT_10 = {
    "pricing_type": "PAID",
    "pricing_models": [
        {
            "billing_model": "FLAT_FEE",
            "price_periods": [
                {"billing_period": "MONTHLY", "price": {"amount": 10, "currency": "usd"}},
                {"billing_period": "ANNUALLY", "price": {"amount": 99.9, "currency": "usd"}},
            ],
        }
    ],
}


def test_addon_lifecycle_through_official_client(server: LiveServer, client: stigg.Stigg) -> None:
    make_catalog(client)
    addons = client.v1.addons

    seats = addons.create(
        id="extra-seats", display_name="Extra seats", product_id="prod", max_quantity=5, metadata={"k": "v"}
    ).data
    assert (seats.status, seats.version_number, seats.max_quantity, seats.is_latest) == ("DRAFT", 1, 5, False)
    assert seats.product_id == "prod" and seats.metadata == {"k": "v"} and seats.dependencies is None
    addons.entitlements.create("extra-seats", entitlements=[{"type": "FEATURE", "id": "f-seats", "usage_limit": 5}])
    addons.update("extra-seats", charges=FLAT_10)  # type: ignore[arg-type]

    addons.create(id="boost", display_name="Boost", product_id="prod")
    addons.entitlements.create(
        "boost",
        entitlements=[
            {
                "type": "FEATURE",
                "id": "f-calls",
                "usage_limit": 100000,
                "behavior": "Override",
                "reset_period": "MONTH",
            },
            {"type": "FEATURE", "id": "f-region", "enum_values": ["apac"]},
        ],
    )
    boost = addons.update("boost", dependencies=["extra-seats"]).data
    assert boost.dependencies == ["extra-seats"]

    # Add-ons publish independently of their dependencies, in any order.
    assert addons.publish("extra-seats", migration_type="NEW_CUSTOMERS").data.task_id
    assert addons.publish("boost", migration_type="NEW_CUSTOMERS").data.task_id
    boost = addons.retrieve("boost").data
    assert (boost.status, boost.is_latest, boost.pricing_type) == ("PUBLISHED", True, "FREE")
    assert sorted(e.id for e in boost.entitlements) == ["f-calls", "f-region"]
    calls = {e.id: e for e in addons.entitlements.list("boost").data}["f-calls"]
    assert calls.behavior == "Override" and calls.usage_limit == 100000  # type: ignore[union-attr]
    charges = list(addons.list_charges("extra-seats"))
    assert sorted((c.billing_period, c.price.amount) for c in charges if c.price) == [
        ("ANNUALLY", 99.9),
        ("MONTHLY", 10),
    ]

    # A plan sells them.
    client.v1.plans.create(id="pro", display_name="Pro", product_id="prod")
    pro = client.v1.plans.update("pro", compatible_addon_ids=["extra-seats", "boost"]).data
    assert pro.compatible_addon_ids == ["extra-seats", "boost"]
    client.v1.plans.publish("pro", migration_type="NEW_CUSTOMERS")

    # Version 2 of extra-seats: a bigger pack, more units allowed.
    assert addons.create_draft("extra-seats").data.version_number == 2
    addons.entitlements.update("f-seats", addon_id="extra-seats", type="FEATURE", usage_limit=10)
    v2 = addons.update("extra-seats", max_quantity=10, display_name="Seat pack").data
    assert (v2.status, v2.max_quantity, v2.version_number) == ("DRAFT", 10, 2)
    addons.publish("extra-seats", migration_type="ALL_CUSTOMERS")
    latest = addons.retrieve("extra-seats").data
    assert (latest.status, latest.version_number, latest.max_quantity, latest.is_latest) == ("PUBLISHED", 2, 10, True)

    old, new = versions(server, "extra-seats", kind="ADDON")
    assert (old.status, old.is_latest, old.max_quantity, old.display_name) == ("PUBLISHED", False, 5, "Extra seats")
    old_ents, old_charges = rows_of(server, old.pk)
    assert old_ents["f-seats"].usage_limit == Decimal(5)
    assert sorted(c.price_amount for c in old_charges if c.price_amount is not None) == [Decimal(10), Decimal("99.9")]
    new_ents, _ = rows_of(server, new.pk)
    assert new_ents["f-seats"].usage_limit == Decimal(10)

    listed = {a.id: a for a in addons.list(product_id="prod")}
    assert set(listed) == {"extra-seats", "boost"} and listed["extra-seats"].version_number == 2


def test_addon_references(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    client.v1.products.create_product(id="other", display_name="Other")
    addon(api, "a")
    addon(api, "b")
    addon(api, "foreign", product="other")
    plan(api, "pro")
    patch = "/api/v1/addons/a"
    error_of(
        api.post("/api/v1/addons", json={"id": "z", "displayName": "Z", "productId": "prod", "maxQuantity": 0}),
        400,
        "INVALID_ARGUMENT",
    )
    error_of(
        api.post("/api/v1/addons", json={"id": "z", "displayName": "Z", "productId": "prod", "status": "ARCHIVED"}),
        400,
        "INVALID_ARGUMENT",
    )
    error_of(
        api.post("/api/v1/addons", json={"id": "a", "displayName": "A", "productId": "prod"}), 409, "ALREADY_EXISTS"
    )
    error_of(api.patch(patch, json={"maxQuantity": -3}), 400, "INVALID_ARGUMENT")
    error_of(api.patch(patch, json={"dependencies": ["a"]}), 400, "INVALID_ARGUMENT")
    error_of(api.patch(patch, json={"dependencies": ["nope"]}), 400, "INVALID_ARGUMENT")
    error_of(api.patch(patch, json={"dependencies": ["pro"]}), 400, "INVALID_ARGUMENT")  # a plan, not an add-on
    error_of(api.patch(patch, json={"dependencies": ["b", "b"]}), 400, "INVALID_ARGUMENT")
    message = error_of(api.patch(patch, json={"dependencies": ["foreign"]}), 400, "INVALID_ARGUMENT")
    assert "another product" in message
    assert api.patch(patch, json={"dependencies": ["b"]}).status_code == 200
    message = error_of(api.patch("/api/v1/addons/b", json={"dependencies": ["a"]}), 400, "INVALID_ARGUMENT")
    assert "cycle" in message
    error_of(api.patch(patch, json={"status": "PUBLISHED"}), 400, "INVALID_ARGUMENT")
    assert api.patch(patch, json={"status": "DRAFT", "maxQuantity": 3}).status_code == 200
    for ids in (["nope"], ["foreign"], ["pro"], ["a", "a"]):
        error_of(api.patch("/api/v1/plans/pro", json={"compatibleAddonIds": ids}), 400, "INVALID_ARGUMENT")
    a = client.v1.addons.retrieve("a").data
    assert (a.dependencies, a.max_quantity) == (["b"], 3)  # the refused changes left nothing behind

    # Entitlements follow the same rules as on plans.
    assert add(api, "a", {"type": "FEATURE", "id": "f-seats", "usageLimit": 2}, kind="addons").status_code == 200
    error_of(add(api, "a", {"type": "FEATURE", "id": "f-seats", "usageLimit": 2}, kind="addons"), 409, "ALREADY_EXISTS")
    error_of(add(api, "a", {"type": "FEATURE", "id": "f-sso", "usageLimit": 2}, kind="addons"), 400, "INVALID_ARGUMENT")

    # Published: max quantity and dependencies need a draft; display fields do not.
    publish(api, "b", kind="addons")
    publish(api, "a", kind="addons")
    message = error_of(api.patch(patch, json={"maxQuantity": 4}), 409, "FAILED_PRECONDITION")
    assert "maxQuantity" in message and "draft" in message
    error_of(api.patch(patch, json={"dependencies": []}), 409, "FAILED_PRECONDITION")
    error_of(api.patch(patch, json={"charges": {"pricingType": "FREE"}}), 409, "FAILED_PRECONDITION")
    assert api.patch(patch, json={"displayName": "Renamed", "status": "PUBLISHED"}).status_code == 200
    error_of(api.delete("/api/v1/addons/a/draft"), 404, "NOT_FOUND")

    # Extension: add-on overage charges.
    client.v1.addons.create_draft("a")
    overage = {
        "pricingType": "PAID",
        "overagePricingModels": [
            {
                "featureId": "f-calls",
                "entitlement": {"featureId": "f-calls", "usageLimit": 10, "hasSoftLimit": True},
                "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 0.25}}],
            }
        ],
    }
    assert api.patch(patch, json={"charges": overage}).status_code == 200
    (charge,) = api.get("/api/v1/addons/a/overage-charges").json()["data"]
    assert (charge["featureId"], charge["price"]) == ("f-calls", {"amount": 0.25, "currency": "usd"})
    assert api.get("/api/v1/addons/a/charges").json()["data"] == []
    calls = {e.id: e for e in client.v1.addons.entitlements.list("a").data}["f-calls"]
    assert calls.usage_limit == 10 and calls.has_soft_limit is True  # type: ignore[union-attr]


def test_addon_archive_rules(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    addon(api, "base-pack")
    addon(api, "top-pack")
    assert api.patch("/api/v1/addons/top-pack", json={"dependencies": ["base-pack"]}).status_code == 200
    plan(api, "pro")
    assert api.patch("/api/v1/plans/pro", json={"compatibleAddonIds": ["top-pack"]}).status_code == 200
    publish(api, "base-pack", kind="addons")
    publish(api, "top-pack", kind="addons")
    publish(api, "pro")

    message = error_of(api.post("/api/v1/addons/base-pack/archive"), 409, "FAILED_PRECONDITION")
    assert "dependency of add-on(s) top-pack" in message
    message = error_of(api.post("/api/v1/addons/top-pack/archive"), 409, "FAILED_PRECONDITION")
    assert "compatible add-on of plan(s) pro" in message

    # A draft of the plan without it is not enough: the published version still sells it.
    client.v1.plans.create_draft("pro")
    assert api.patch("/api/v1/plans/pro", json={"compatibleAddonIds": []}).status_code == 200
    error_of(api.post("/api/v1/addons/top-pack/archive"), 409, "FAILED_PRECONDITION")
    publish(api, "pro")
    archived = client.v1.addons.archive("top-pack").data
    assert archived.status == "ARCHIVED"
    assert client.v1.addons.archive("base-pack").data.status == "ARCHIVED"
    # An archived add-on can no longer be made compatible.
    client.v1.plans.create_draft("pro")
    error_of(api.patch("/api/v1/plans/pro", json={"compatibleAddonIds": ["top-pack"]}), 400, "INVALID_ARGUMENT")
    assert [a.id for a in client.v1.addons.list(status=["ARCHIVED"])] == ["base-pack", "top-pack"]
