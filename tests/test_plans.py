"""Plans through the official client: versions, draft/publish, entitlements, charges, archive."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stigg
from sqlalchemy import select

from entitle.catalog.features.models import Feature
from entitle.catalog.packages.models import Package, PackageCharge, PackageEntitlement
from tests.conftest import LiveServer


def make_catalog(client: stigg.Stigg, product: str = "prod") -> None:
    client.v1.products.create_product(id=product, display_name="Product")
    f = client.v1.features
    f.create_feature(id="f-sso", display_name="SSO", feature_type="BOOLEAN")
    f.create_feature(id="f-seats", display_name="Seats", feature_type="NUMBER", meter_type="FLUCTUATING")
    f.create_feature(id="f-calls", display_name="API calls", feature_type="NUMBER", meter_type="INCREMENTAL")
    f.create_feature(id="f-exports", display_name="Exports", feature_type="NUMBER", meter_type="INCREMENTAL")
    f.create_feature(id="f-storage", display_name="Storage", feature_type="NUMBER", meter_type="INCREMENTAL")
    f.create_feature(id="f-retention", display_name="Retention days", feature_type="NUMBER")
    f.create_feature(
        id="f-region",
        display_name="Region",
        feature_type="ENUM",
        enum_configuration=[
            {"value": "eu", "display_name": "EU"},
            {"value": "us", "display_name": "US"},
            {"value": "apac", "display_name": "APAC"},
        ],
    )


def error_of(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["code"] == code, body
    if status == 409:
        assert resp.headers["x-should-retry"] == "false"
    message: str = body["error"]["message"]
    return message


def versions(server: LiveServer, ref: str, kind: str = "PLAN") -> list[Package]:
    with server.db.read() as s:
        return list(
            s.scalars(
                select(Package).where(Package.ref_id == ref, Package.kind == kind).order_by(Package.version_number)
            )
        )


def rows_of(server: LiveServer, package_pk: int) -> tuple[dict[str, PackageEntitlement], list[PackageCharge]]:
    with server.db.read() as s:
        ents = s.scalars(select(PackageEntitlement).where(PackageEntitlement.package_pk == package_pk))
        charges = s.scalars(
            select(PackageCharge).where(PackageCharge.package_pk == package_pk).order_by(PackageCharge.pk)
        )
        return {e.ref_id: e for e in ents}, list(charges)


PRO_ENTITLEMENTS: list[Any] = [
    {"type": "FEATURE", "id": "f-sso"},
    {"type": "FEATURE", "id": "f-seats", "usage_limit": 10, "has_soft_limit": True, "order": 2},
    {
        "type": "FEATURE",
        "id": "f-calls",
        "usage_limit": 1000,
        "reset_period": "MONTH",
        "monthly_reset_period_configuration": {"according_to": "StartOfTheMonth"},
        "hidden_from_widgets": ["PAYWALL"],
        "description": "Calls per month",
    },
    {"type": "FEATURE", "id": "f-storage", "has_unlimited_usage": True, "display_name_override": "Unlimited storage"},
    {"type": "FEATURE", "id": "f-region", "enum_values": ["eu", "us"]},
    {"type": "FEATURE", "id": "f-retention", "usage_limit": 30},
]

PRO_CHARGES: dict[str, Any] = {
    "pricing_type": "PAID",
    "overage_billing_period": "ON_SUBSCRIPTION_RENEWAL",
    "pricing_models": [
        {
            "billing_model": "FLAT_FEE",
            "price_periods": [
                {"billing_period": "MONTHLY", "price": {"amount": 49.99, "currency": "usd"}},
                {"billing_period": "ANNUALLY", "price": {"amount": 499, "currency": "usd"}},
                {
                    "billing_period": "MONTHLY",
                    "billing_country_code": "DE",
                    "price": {"amount": 45.5, "currency": "usd"},
                },
            ],
        },
        {
            "billing_model": "PER_UNIT",
            "feature_id": "f-seats",
            "tiers_mode": "GRADUATED",
            "min_unit_quantity": 1,
            "max_unit_quantity": 100,
            "price_periods": [
                {
                    "billing_period": "MONTHLY",
                    "tiers": [
                        {"up_to": 10, "unit_price": {"amount": 5, "currency": "usd"}},
                        {"up_to": 50, "unit_price": {"amount": 4.25, "currency": "usd"}},
                        {
                            "unit_price": {"amount": 3, "currency": "usd"},
                            "flat_price": {"amount": 10, "currency": "usd"},
                        },
                    ],
                }
            ],
        },
        {
            "billing_model": "USAGE_BASED",
            "feature_id": "f-calls",
            "price_periods": [
                {"billing_period": "MONTHLY", "price": {"amount": 0.001, "currency": "usd"}, "block_size": 100}
            ],
        },
    ],
    "overage_pricing_models": [
        {
            "feature_id": "f-exports",
            "entitlement": {
                "feature_id": "f-exports",
                "usage_limit": 100,
                "reset_period": "WEEK",
                "weekly_reset_period_configuration": {"according_to": "EveryMonday"},
            },
            "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 0.5, "currency": "usd"}}],
        }
    ],
}


def test_plan_lifecycle_through_official_client(server: LiveServer, client: stigg.Stigg) -> None:
    make_catalog(client)
    plans = client.v1.plans

    created = plans.create(
        id="plan-pro",
        display_name="Pro",
        product_id="prod",
        description="For teams",
        metadata={"tier": "2"},
        pricing_type="PAID",
        default_trial_config={"duration": 14, "units": "DAY", "trial_end_behavior": "CONVERT_TO_PAID"},
    ).data
    assert (created.id, created.status, created.version_number) == ("plan-pro", "DRAFT", 1)
    assert created.product_id == "prod"
    assert created.is_latest is False
    assert created.entitlements == []
    assert created.metadata == {"tier": "2"}
    assert created.default_trial_config is not None
    assert created.default_trial_config.duration == 14
    assert created.default_trial_config.units == "DAY"

    added = plans.entitlements.create("plan-pro", entitlements=PRO_ENTITLEMENTS).data
    assert [e.id for e in added] == [e["id"] for e in PRO_ENTITLEMENTS]

    updated = plans.update("plan-pro", charges=PRO_CHARGES).data  # type: ignore[arg-type]
    assert updated.pricing_type == "PAID"
    assert sorted(e.id for e in updated.entitlements) == sorted([e["id"] for e in PRO_ENTITLEMENTS] + ["f-exports"])

    # Entitlements read back with their values.
    ents = {e.id: e for e in plans.entitlements.list("plan-pro").data}
    sso, seats, calls, storage, region = (ents[k] for k in ("f-sso", "f-seats", "f-calls", "f-storage", "f-region"))
    assert sso.type == "FEATURE" and sso.is_granted is True and sso.behavior == "Increment"
    assert sso.usage_limit is None and sso.hidden_from_widgets == []
    assert seats.usage_limit == 10 and seats.has_soft_limit is True and seats.order == 2  # type: ignore[union-attr]
    assert calls.reset_period == "MONTH"  # type: ignore[union-attr]
    assert calls.reset_period_configuration is not None  # type: ignore[union-attr]
    assert calls.reset_period_configuration.according_to == "StartOfTheMonth"  # type: ignore[union-attr]
    assert calls.hidden_from_widgets == ["PAYWALL"] and calls.description == "Calls per month"
    assert storage.has_unlimited_usage is True and storage.usage_limit is None  # type: ignore[union-attr]
    assert storage.display_name_override == "Unlimited storage"
    assert region.enum_values == ["eu", "us"]  # type: ignore[union-attr]
    exports = ents["f-exports"]
    assert exports.usage_limit == 100 and exports.reset_period == "WEEK"  # type: ignore[union-attr]
    assert exports.reset_period_configuration.according_to == "EveryMonday"  # type: ignore[union-attr]

    # Charges read back exactly.
    charges = list(plans.list_charges("plan-pro"))
    assert len(charges) == 5
    flat = [c for c in charges if c.billing_model == "FLAT_FEE"]
    by_period = {(c.billing_period, c.billing_country_code): c for c in flat}
    assert by_period[("MONTHLY", None)].price is not None
    assert by_period[("MONTHLY", None)].price.amount == 49.99  # type: ignore[union-attr]
    assert by_period[("ANNUALLY", None)].price.amount == 499  # type: ignore[union-attr]
    de = by_period[("MONTHLY", "DE")]
    assert de.price is not None and de.price.amount == 45.5 and de.price.currency == "usd"
    assert all(c.billing_cadence == "RECURRING" and c.feature_id is None for c in flat)
    (seat_charge,) = [c for c in charges if c.billing_model == "PER_UNIT"]
    assert seat_charge.feature_id == "f-seats" and seat_charge.tiers_mode == "GRADUATED"
    assert (seat_charge.min_unit_quantity, seat_charge.max_unit_quantity) == (1, 100)
    assert seat_charge.tiers is not None
    assert [t.up_to for t in seat_charge.tiers] == [10, 50, None]
    assert [t.unit_price.amount for t in seat_charge.tiers if t.unit_price] == [5, 4.25, 3]
    assert seat_charge.tiers[2].flat_price is not None and seat_charge.tiers[2].flat_price.amount == 10
    (usage,) = [c for c in charges if c.billing_model == "USAGE_BASED"]
    assert usage.feature_id == "f-calls" and usage.price is not None and usage.price.amount == 0.001
    assert usage.block_size == 100
    (overage,) = list(plans.list_overage_charges("plan-pro"))
    assert overage.feature_id == "f-exports" and overage.billing_model == "USAGE_BASED"
    assert overage.price is not None and overage.price.amount == 0.5
    assert len({c.id for c in [*charges, overage]}) == 6

    # Money is stored exactly.
    (v1_row,) = versions(server, "plan-pro")
    _, stored = rows_of(server, v1_row.pk)
    assert {c.price_amount for c in stored if c.billing_model == "FLAT_FEE"} == {
        Decimal("49.99"),
        Decimal("499"),
        Decimal("45.5"),
    }
    tiers = next(c.tiers for c in stored if c.billing_model == "PER_UNIT")
    assert tiers is not None and tiers[1]["unitPrice"]["amount"] == "4.25"

    # Publish.
    task = plans.publish("plan-pro", migration_type="NEW_CUSTOMERS").data
    assert task.task_id
    published = plans.retrieve("plan-pro").data
    assert (published.status, published.version_number, published.is_latest) == ("PUBLISHED", 1, True)
    assert client.v1.features.retrieve_feature("f-seats").data.feature_status == "ACTIVE"
    assert client.v1.features.retrieve_feature("f-exports").data.feature_status == "ACTIVE"

    # Version 2 as a draft: a copy of version 1, charges keep their ids.
    draft = plans.create_draft("plan-pro").data
    assert (draft.status, draft.version_number, draft.is_latest) == ("DRAFT", 2, False)
    assert plans.create_draft("plan-pro").data.version_number == 2  # the existing draft
    assert sorted(c.id for c in plans.list_charges("plan-pro")) == sorted(c.id for c in charges)
    plans.entitlements.update("f-seats", plan_id="plan-pro", type="FEATURE", usage_limit=20)
    plans.entitlements.delete("f-retention", plan_id="plan-pro")
    new_charges = dict(PRO_CHARGES)
    new_charges["pricing_models"] = [
        {
            "billing_model": "FLAT_FEE",
            "price_periods": [{"billing_period": "MONTHLY", "price": {"amount": 59.99, "currency": "usd"}}],
        }
    ]
    plans.update("plan-pro", charges=new_charges, display_name="Pro 2")  # type: ignore[arg-type]
    v2_charges = list(plans.list_charges("plan-pro"))
    assert len(v2_charges) == 1 and v2_charges[0].price is not None and v2_charges[0].price.amount == 59.99
    assert v2_charges[0].id == by_period[("MONTHLY", None)].id  # same price key, same id
    assert plans.publish("plan-pro", migration_type="ALL_CUSTOMERS").data.task_id

    latest = plans.retrieve("plan-pro").data
    assert (latest.status, latest.version_number, latest.is_latest, latest.display_name) == (
        "PUBLISHED",
        2,
        True,
        "Pro 2",
    )
    assert "f-retention" not in {e.id for e in latest.entitlements}

    # Version 1 is still there, unchanged.
    v1, v2 = versions(server, "plan-pro")
    assert (v1.status, v1.is_latest, v1.display_name, v1.migration_type) == ("PUBLISHED", False, "Pro", "NEW_CUSTOMERS")
    assert (v2.status, v2.is_latest, v2.migration_type) == ("PUBLISHED", True, "ALL_CUSTOMERS")
    v1_ents, v1_charges = rows_of(server, v1.pk)
    assert v1_ents["f-seats"].usage_limit == 10 and "f-retention" in v1_ents
    assert len(v1_charges) == 6
    assert {c.price_amount for c in v1_charges if c.billing_model == "FLAT_FEE"} == {
        Decimal("49.99"),
        Decimal("499"),
        Decimal("45.5"),
    }
    v2_ents, _ = rows_of(server, v2.pk)
    assert v2_ents["f-seats"].usage_limit == 20

    # Archive.
    archived = plans.archive("plan-pro").data
    assert archived.status == "ARCHIVED" and archived.version_number == 2
    assert {v.status for v in versions(server, "plan-pro")} == {"ARCHIVED"}
    assert [p.id for p in plans.list(status=["ARCHIVED"])] == ["plan-pro"]
    assert [p.id for p in plans.list(status=["PUBLISHED", "DRAFT"])] == []


def test_feature_status_and_archive_guard(server: LiveServer, client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    client.v1.plans.create(id="basic", display_name="Basic", product_id="prod")
    client.v1.plans.entitlements.create("basic", entitlements=[{"type": "FEATURE", "id": "f-sso"}])
    with server.db.read() as s:
        sso = s.scalars(select(Feature).where(Feature.ref_id == "f-sso")).one()
        assert sso.feature_status == "NEW"  # not yet published
    message = error_of(api.post("/api/v1/features/f-sso/archive"), 409, "FAILED_PRECONDITION")
    assert "plan 'basic'" in message
    assert client.v1.plans.publish("basic", migration_type="NEW_CUSTOMERS").data.task_id
    basic = client.v1.plans.retrieve("basic").data
    assert basic.pricing_type == "FREE"
    assert client.v1.features.retrieve_feature("f-sso").data.feature_status == "ACTIVE"


@pytest.mark.parametrize("kind", ["plans"])
def test_list_filters_and_pagination(client: stigg.Stigg, api: httpx.Client, kind: str) -> None:
    make_catalog(client)
    client.v1.products.create_product(id="other", display_name="Other")
    for i in range(5):
        client.v1.plans.create(id=f"p-{i}", display_name=f"P{i}", product_id="prod" if i < 4 else "other")
    client.v1.plans.publish("p-1", migration_type="NEW_CUSTOMERS")
    client.v1.plans.publish("p-2", migration_type="NEW_CUSTOMERS")
    client.v1.plans.create_draft("p-1")  # p-1 now shows its draft (version 2)
    page = client.v1.plans.list(limit=2)
    assert [p.id for p in page.data] == ["p-0", "p-1"]
    assert [p.id for p in page] == [f"p-{i}" for i in range(5)]
    assert [(p.id, p.version_number) for p in client.v1.plans.list(status=["DRAFT"])] == [
        ("p-0", 1),
        ("p-1", 2),
        ("p-3", 1),
        ("p-4", 1),
    ]
    assert [p.id for p in client.v1.plans.list(status=["PUBLISHED"])] == ["p-2"]
    assert [p.id for p in client.v1.plans.list(product_id="other")] == ["p-4"]
    assert [p.id for p in client.v1.plans.list(product_id="nope")] == []
    assert [p.id for p in client.v1.plans.list(created_at={"gte": "2000-01-01T00:00:00"})] == [
        f"p-{i}" for i in range(5)
    ]
    assert [p.id for p in client.v1.plans.list(created_at={"lt": "2000-01-01T00:00:00Z"})] == []
    error_of(api.get("/api/v1/plans", params={"status": "DRAFT,LIVE"}), 400, "INVALID_ARGUMENT")


def plan(api: httpx.Client, ref: str, product: str = "prod", **extra: Any) -> dict[str, Any]:
    resp = api.post("/api/v1/plans", json={"id": ref, "displayName": ref.title(), "productId": product, **extra})
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def publish(api: httpx.Client, ref: str, kind: str = "plans") -> None:
    resp = api.post(f"/api/v1/{kind}/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"})
    assert resp.status_code == 200, resp.text


def add(api: httpx.Client, ref: str, *entitlements: dict[str, Any], kind: str = "plans") -> httpx.Response:
    return api.post(f"/api/v1/{kind}/{ref}/entitlements", json={"entitlements": list(entitlements)})


def test_create_refusals(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    client.v1.products.create_product(id="other", display_name="Other")
    error_of(api.post("/api/v1/plans", json={"id": "x", "displayName": "X", "productId": "nope"}), 404, "NOT_FOUND")
    plan(api, "basic")
    error_of(
        api.post("/api/v1/plans", json={"id": "basic", "displayName": "B", "productId": "prod"}), 409, "ALREADY_EXISTS"
    )
    body = {"id": "x", "displayName": "X", "productId": "prod"}
    error_of(api.post("/api/v1/plans", json={**body, "status": "PUBLISHED"}), 400, "INVALID_ARGUMENT")
    error_of(api.post("/api/v1/plans", json={**body, "parentPlanId": "nope"}), 400, "INVALID_ARGUMENT")
    error_of(api.post("/api/v1/plans", json={**body, "parentPlanId": "x"}), 400, "INVALID_ARGUMENT")
    plan(api, "elsewhere", product="other")
    message = error_of(api.post("/api/v1/plans", json={**body, "parentPlanId": "elsewhere"}), 400, "INVALID_ARGUMENT")
    assert "another product" in message
    bad_trial = {"duration": -1, "units": "DAY"}
    error_of(api.post("/api/v1/plans", json={**body, "defaultTrialConfig": bad_trial}), 400, "INVALID_ARGUMENT")
    error_of(api.post("/api/v1/plans", json={**body, "pricingType": "CHEAP"}), 400, "INVALID_ARGUMENT")
    assert api.get("/api/v1/plans/x").status_code == 404  # nothing was half-written
    client.v1.products.archive_product("other")
    message = error_of(api.post("/api/v1/plans", json={**body, "productId": "other"}), 409, "FAILED_PRECONDITION")
    assert "archived" in message
    # Archiving the product archived its plan.
    assert client.v1.plans.retrieve("elsewhere").data.status == "ARCHIVED"


def test_entitlement_rules(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    client.v1.features.create_feature(id="f-old", display_name="Old", feature_type="BOOLEAN")
    client.v1.features.archive_feature("f-old")
    plan(api, "basic")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"type": "FEATURE", "id": "nope"}, 404, "NOT_FOUND"),
        ({"type": "FEATURE", "id": "f-old"}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-sso", "usageLimit": 3}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-sso", "resetPeriod": "MONTH"}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-seats"}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-seats", "usageLimit": -1}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-seats", "usageLimit": 5, "hasUnlimitedUsage": True}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-seats", "usageLimit": 5, "resetPeriod": "MONTH"}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-retention", "usageLimit": 5, "resetPeriod": "DAY"}, 400, "INVALID_ARGUMENT"),
        (
            {
                "type": "FEATURE",
                "id": "f-calls",
                "usageLimit": 5,
                "resetPeriod": "MONTH",
                "weeklyResetPeriodConfiguration": {"accordingTo": "EveryMonday"},
            },
            400,
            "INVALID_ARGUMENT",
        ),
        (
            {
                "type": "FEATURE",
                "id": "f-calls",
                "usageLimit": 5,
                "resetPeriod": "DAY",
                "monthlyResetPeriodConfiguration": {"accordingTo": "SubscriptionStart"},
            },
            400,
            "INVALID_ARGUMENT",
        ),
        (
            {
                "type": "FEATURE",
                "id": "f-calls",
                "usageLimit": 5,
                "monthlyResetPeriodConfiguration": {"accordingTo": "SubscriptionStart"},
            },
            400,
            "INVALID_ARGUMENT",
        ),
        (
            {
                "type": "FEATURE",
                "id": "f-calls",
                "usageLimit": 5,
                "resetPeriod": "YEAR",
                "yearlyResetPeriodConfiguration": {"accordingTo": "StartOfTheMonth"},
            },
            400,
            "INVALID_ARGUMENT",
        ),
        ({"type": "FEATURE", "id": "f-region", "enumValues": ["eu", "mars"]}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-region"}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-region", "enumValues": ["eu"], "usageLimit": 1}, 400, "INVALID_ARGUMENT"),
        ({"type": "FEATURE", "id": "f-seats", "usageLimit": 5, "behavior": "Replace"}, 400, "INVALID_ARGUMENT"),
        (
            {"type": "FEATURE", "id": "f-seats", "usageLimit": 5, "hiddenFromWidgets": ["NOWHERE"]},
            400,
            "INVALID_ARGUMENT",
        ),
        ({"type": "CREDIT", "id": "credits", "amount": 5}, 400, "INVALID_ARGUMENT"),  # cadence is required
        ({"type": "CREDIT", "id": "credits", "amount": -5, "cadence": "MONTH"}, 400, "INVALID_ARGUMENT"),
        (
            {"type": "CREDIT", "id": "credits", "amount": 5, "cadence": "MONTH", "dependencyFeatureId": "nope"},
            404,
            "NOT_FOUND",
        ),
        ({"type": "GADGET", "id": "f-sso"}, 400, "INVALID_ARGUMENT"),
    ]
    for body, status, code in cases:
        # Each bad entitlement travels with a good one: nothing of the request may be written.
        resp = add(api, "basic", {"type": "FEATURE", "id": "f-sso"}, body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["error"]["code"] == code, body
    assert client.v1.plans.entitlements.list("basic").data == []

    ok = add(
        api,
        "basic",
        {"type": "FEATURE", "id": "f-calls", "usageLimit": 5, "resetPeriod": "WEEK"},
        {"type": "FEATURE", "id": "f-exports", "usageLimit": 1, "resetPeriod": "DAY"},
        {"type": "FEATURE", "id": "f-storage", "usageLimit": 7, "resetPeriod": "YEAR"},
        {"type": "CREDIT", "id": "credits", "amount": 100.5, "cadence": "MONTH", "dependencyFeatureId": "f-seats"},
    )
    assert ok.status_code == 200, ok.text
    by_id = {e["id"]: e for e in ok.json()["data"]}
    assert by_id["f-calls"]["resetPeriodConfiguration"] == {"accordingTo": "SubscriptionStart"}
    assert by_id["f-exports"]["resetPeriodConfiguration"] is None
    assert by_id["f-storage"]["resetPeriodConfiguration"] == {"accordingTo": "SubscriptionStart"}
    credit = by_id["credits"]
    assert (credit["type"], credit["amount"], credit["cadence"]) == ("CREDIT", 100.5, "MONTH")
    assert credit["dependencyFeatureId"] == "f-seats" and credit["isGranted"] is True
    message = error_of(add(api, "basic", {"type": "FEATURE", "id": "f-calls", "usageLimit": 9}), 409, "ALREADY_EXISTS")
    assert "f-calls" in message
    error_of(
        add(api, "basic", {"type": "FEATURE", "id": "f-sso"}, {"type": "FEATURE", "id": "f-sso"}),
        400,
        "INVALID_ARGUMENT",
    )

    # PATCH merges and re-checks.
    ents = client.v1.plans.entitlements
    switched = ents.update("f-calls", plan_id="basic", type="FEATURE", has_unlimited_usage=True).data
    assert switched.has_unlimited_usage is True and switched.usage_limit is None  # type: ignore[union-attr]
    assert switched.reset_period == "WEEK"  # type: ignore[union-attr]
    anchored = ents.update(
        "f-calls",
        plan_id="basic",
        type="FEATURE",
        reset_period="MONTH",
        monthly_reset_period_configuration={"according_to": "StartOfTheMonth"},
    ).data
    assert anchored.reset_period_configuration.according_to == "StartOfTheMonth"  # type: ignore[union-attr]
    kept = ents.update("f-calls", plan_id="basic", type="FEATURE", usage_limit=50, behavior="Override").data
    assert kept.usage_limit == 50 and kept.has_unlimited_usage is False  # type: ignore[union-attr]
    assert kept.reset_period_configuration.according_to == "StartOfTheMonth"  # type: ignore[union-attr]
    assert kept.behavior == "Override"
    patch = "/api/v1/plans/basic/entitlements/f-calls"
    error_of(
        api.patch(
            patch,
            json={
                "type": "FEATURE",
                "resetPeriod": "HOUR",
                "weeklyResetPeriodConfiguration": {"accordingTo": "EveryFriday"},
            },
        ),
        400,
        "INVALID_ARGUMENT",
    )
    error_of(api.patch(patch, json={"type": "FEATURE", "usageLimit": None}), 400, "INVALID_ARGUMENT")
    error_of(api.patch(patch, json={"type": "CREDIT", "amount": 3}), 400, "INVALID_ARGUMENT")
    error_of(api.patch("/api/v1/plans/basic/entitlements/f-sso", json={"type": "FEATURE"}), 404, "NOT_FOUND")
    unchanged = {e.id: e for e in ents.list("basic").data}["f-calls"]
    assert unchanged.usage_limit == 50 and unchanged.reset_period == "MONTH"  # type: ignore[union-attr]
    credit_patch = ents.update("credits", plan_id="basic", type="CREDIT", amount=7, cadence="YEAR").data
    assert credit_patch.amount == 7 and credit_patch.cadence == "YEAR"  # type: ignore[union-attr]
    deleted = ents.delete("f-exports", plan_id="basic").data
    assert deleted.id == "f-exports"
    error_of(api.delete("/api/v1/plans/basic/entitlements/f-exports"), 404, "NOT_FOUND")
    assert sorted(e.id for e in ents.list("basic").data) == ["credits", "f-calls", "f-storage"]

    # Published: entitlements are frozen until a draft exists.
    publish(api, "basic")
    message = error_of(add(api, "basic", {"type": "FEATURE", "id": "f-sso"}), 409, "FAILED_PRECONDITION")
    assert "draft" in message
    error_of(api.patch(patch, json={"type": "FEATURE", "usageLimit": 1}), 409, "FAILED_PRECONDITION")
    error_of(api.delete(patch), 409, "FAILED_PRECONDITION")
    client.v1.plans.create_draft("basic")
    assert add(api, "basic", {"type": "FEATURE", "id": "f-sso"}).status_code == 200


CHARGE_CASES: list[tuple[dict[str, Any], int, str]] = [
    (
        {
            "pricingType": "FREE",
            "pricingModels": [
                {"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}]}
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {"pricingType": "CUSTOM", "minimumSpend": [{"billingPeriod": "MONTHLY", "minimum": {"amount": 1}}]},
        400,
        "INVALID_ARGUMENT",
    ),
    ({"pricingType": "PAID"}, 400, "INVALID_ARGUMENT"),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "featureId": "f-seats",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {"pricingType": "PAID", "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": []}]},
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY"}]}],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": -1}}]}
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1, "currency": "xyz"}}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {"billingModel": "PER_UNIT", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}]}
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "nope",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        404,
        "NOT_FOUND",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "f-sso",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "USAGE_BASED",
                    "featureId": "f-retention",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {"billingModel": "PER_UNIT", "featureId": "f-seats", "pricePeriods": [{"billingPeriod": "MONTHLY"}]}
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "f-seats",
                    "pricePeriods": [
                        {"billingPeriod": "MONTHLY", "price": {"amount": 1}, "tiers": [{"unitPrice": {"amount": 1}}]}
                    ],
                    "tiersMode": "VOLUME",
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "f-seats",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "tiers": [{"unitPrice": {"amount": 1}}]}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "f-seats",
                    "tiersMode": "VOLUME",
                    "pricePeriods": [
                        {
                            "billingPeriod": "MONTHLY",
                            "tiers": [
                                {"upTo": 10, "unitPrice": {"amount": 2}},
                                {"upTo": 5, "unitPrice": {"amount": 1}},
                                {"unitPrice": {"amount": 1}},
                            ],
                        }
                    ],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "f-seats",
                    "tiersMode": "VOLUME",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "tiers": [{"upTo": 10, "unitPrice": {"amount": 2}}]}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "f-seats",
                    "tiersMode": "VOLUME",
                    "pricePeriods": [
                        {"billingPeriod": "MONTHLY", "tiers": [{"upTo": 10}, {"unitPrice": {"amount": 1}}]}
                    ],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "PER_UNIT",
                    "featureId": "f-seats",
                    "minUnitQuantity": 5,
                    "maxUnitQuantity": 2,
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "pricePeriods": [
                        {"billingPeriod": "MONTHLY", "price": {"amount": 1}},
                        {"billingPeriod": "MONTHLY", "price": {"amount": 2}},
                    ],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}]},
                {"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 2}}]},
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "pricePeriods": [
                        {"billingPeriod": "MONTHLY", "price": {"amount": 1}},
                        {"billingPeriod": "ANNUALLY", "billingCountryCode": "DE", "price": {"amount": 2}},
                    ],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "pricePeriods": [
                        {"billingPeriod": "MONTHLY", "billingCountryCode": "Germany", "price": {"amount": 2}}
                    ],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "pricePeriods": [
                        {"billingPeriod": "MONTHLY", "price": {"amount": 1, "currency": "usd"}},
                        {"billingPeriod": "ANNUALLY", "price": {"amount": 2, "currency": "eur"}},
                    ],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "resetPeriod": "MONTH",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        400,
        "UNSUPPORTED_FIELD",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "USAGE_BASED",
                    "featureId": "f-seats",
                    "resetPeriod": "MONTH",
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        400,
        "UNSUPPORTED_FIELD",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {"billingModel": "CREDIT_BASED", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}]}
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "pricingModels": [
                {
                    "billingModel": "FLAT_FEE",
                    "pricePeriods": [
                        {
                            "billingPeriod": "MONTHLY",
                            "price": {"amount": 1},
                            "creditRate": {"amount": 1, "currencyId": "c"},
                        }
                    ],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "overagePricingModels": [
                {"featureId": "f-sso", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}]}
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "overagePricingModels": [
                {"featureId": "f-retention", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}]}
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "overagePricingModels": [{"pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}]}],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "overagePricingModels": [
                {
                    "featureId": "f-calls",
                    "entitlement": {"featureId": "f-exports", "usageLimit": 5},
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "overagePricingModels": [
                {
                    "featureId": "f-calls",
                    "entitlement": {"featureId": "f-calls"},
                    "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}],
                }
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    (
        {
            "pricingType": "PAID",
            "minimumSpend": [
                {"billingPeriod": "MONTHLY", "minimum": {"amount": 1}},
                {"billingPeriod": "MONTHLY", "minimum": {"amount": 2}},
            ],
            "pricingModels": [
                {"billingModel": "FLAT_FEE", "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 1}}]}
            ],
        },
        400,
        "INVALID_ARGUMENT",
    ),
    ({"pricingType": "GRATIS"}, 400, "INVALID_ARGUMENT"),
]


def test_charge_rules(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    plan(api, "pro", pricingType="PAID")
    good = {
        "pricingType": "PAID",
        "minimumSpend": [{"billingPeriod": "MONTHLY", "minimum": {"amount": 100, "currency": "usd"}}],
        "pricingModels": [
            {
                "billingModel": "FLAT_FEE",
                "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": 10}}],
            },
            {
                "billingModel": "USAGE_BASED",
                "featureId": "f-calls",
                "tiersMode": "VOLUME",
                "pricePeriods": [
                    {
                        "billingPeriod": "MONTHLY",
                        "tiers": [
                            {"upTo": 1000, "unitPrice": {"amount": 0.01}},
                            {"upTo": 10000.5, "unitPrice": {"amount": 0.005}},
                            {"unitPrice": {"amount": 0.001}},
                        ],
                    },
                    {
                        "billingPeriod": "MONTHLY",
                        "billingCountryCode": "FR",
                        "price": {"amount": 0.02, "currency": "usd"},
                    },
                ],
            },
        ],
    }
    # A country priced in its own currency must price everything it pays in that currency: in euros,
    # FR would keep the default flat fee and minimum in dollars, one subscription billing two currencies.
    in_euros = copy.deepcopy(good)
    in_euros["pricingModels"][1]["pricePeriods"][1]["price"]["currency"] = "eur"
    refused = error_of(api.patch("/api/v1/plans/pro", json={"charges": in_euros}), 400, "INVALID_ARGUMENT")
    assert "country FR (MONTHLY) is priced in eur but keeps the default FLAT_FEE price in usd" in refused
    assert api.patch("/api/v1/plans/pro", json={"charges": good}).status_code == 200
    before = api.get("/api/v1/plans/pro/charges").json()["data"]
    assert len(before) == 4
    spend = next(c for c in before if c["billingModel"] == "MINIMUM_SPEND")
    assert spend["price"] == {"amount": 100, "currency": "usd"} and spend["billingPeriod"] == "MONTHLY"
    flat = next(c for c in before if c["billingModel"] == "FLAT_FEE")
    assert flat["billingCadence"] == "RECURRING"
    tiered = next(c for c in before if c["billingModel"] == "USAGE_BASED" and c["billingCountryCode"] is None)
    assert tiered["tiers"][1] == {"upTo": 10000.5, "unitPrice": {"amount": 0.005, "currency": "usd"}, "flatPrice": None}
    assert tiered["tiersMode"] == "VOLUME"
    for body, status, code in CHARGE_CASES:
        resp = api.patch("/api/v1/plans/pro", json={"charges": body, "displayName": "Changed"})
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["error"]["code"] == code, body
    # Nothing was half-written: the pricing and the name are as before.
    assert api.get("/api/v1/plans/pro/charges").json()["data"] == before
    assert client.v1.plans.retrieve("pro").data.display_name == "Pro"

    # FREE: a full replace leaves no charges at all.
    free = api.patch("/api/v1/plans/pro", json={"charges": {"pricingType": "FREE"}})
    assert free.status_code == 200 and free.json()["data"]["pricingType"] == "FREE"
    assert api.get("/api/v1/plans/pro/charges").json()["data"] == []


def test_publish_rules(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    plan(api, "paid", pricingType="PAID")
    message = error_of(
        api.post("/api/v1/plans/paid/publish", json={"migrationType": "NEW_CUSTOMERS"}), 409, "FAILED_PRECONDITION"
    )
    assert "PAID" in message
    error_of(api.post("/api/v1/plans/paid/publish", json={"migrationType": "SOME"}), 400, "INVALID_ARGUMENT")
    error_of(api.post("/api/v1/plans/paid/publish", json={}), 400, "INVALID_ARGUMENT")
    error_of(api.post("/api/v1/plans/nope/publish", json={"migrationType": "NEW_CUSTOMERS"}), 404, "NOT_FOUND")

    # A parent must be published before its child.
    plan(api, "base")
    plan(api, "child", parentPlanId="base")
    message = error_of(
        api.post("/api/v1/plans/child/publish", json={"migrationType": "NEW_CUSTOMERS"}), 409, "FAILED_PRECONDITION"
    )
    assert "parent plan 'base'" in message
    publish(api, "base")
    publish(api, "child")
    assert client.v1.plans.retrieve("child").data.parent_plan_id == "base"
    # No cycles: base's draft cannot take child as its parent.
    client.v1.plans.create_draft("base")
    message = error_of(api.patch("/api/v1/plans/base", json={"parentPlanId": "child"}), 400, "INVALID_ARGUMENT")
    assert "cycle" in message
    # Publishing again without a draft.
    message = error_of(
        api.post("/api/v1/plans/child/publish", json={"migrationType": "NEW_CUSTOMERS"}), 409, "FAILED_PRECONDITION"
    )
    assert "no draft" in message

    # An enum value removed from the feature after it was granted blocks the publish.
    client.v1.plans.create_draft("child")
    assert add(api, "child", {"type": "FEATURE", "id": "f-region", "enumValues": ["apac"]}).status_code == 200
    client.v1.features.update_feature(
        "f-region", enum_configuration=[{"value": "eu", "display_name": "EU"}, {"value": "us", "display_name": "US"}]
    )
    message = error_of(
        api.post("/api/v1/plans/child/publish", json={"migrationType": "NEW_CUSTOMERS"}), 409, "FAILED_PRECONDITION"
    )
    assert "apac" in message
    assert client.v1.plans.retrieve("child").data.status == "DRAFT"  # nothing changed
    assert [v.status for v in client.v1.plans.list(status=["PUBLISHED"])] == []  # base and child show drafts


def test_drafts_and_display_fields(server: LiveServer, client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    plan(api, "basic")
    message = error_of(api.delete("/api/v1/plans/basic/draft"), 409, "FAILED_PRECONDITION")
    assert "never been published" in message
    publish(api, "basic")
    error_of(api.delete("/api/v1/plans/basic/draft"), 404, "NOT_FOUND")
    for body in ({"parentPlanId": None}, {"compatibleAddonIds": []}, {"defaultTrialConfig": None}):
        error_of(api.patch("/api/v1/plans/basic", json={**body, "displayName": "No"}), 409, "FAILED_PRECONDITION")
    charges = {"pricingType": "FREE"}
    error_of(api.patch("/api/v1/plans/basic", json={"charges": charges}), 409, "FAILED_PRECONDITION")
    # Display fields change in place on the published version when there is no draft.
    in_place = client.v1.plans.update("basic", display_name="Basic+", description="d", metadata={"a": "b"}).data
    assert (in_place.version_number, in_place.status, in_place.display_name) == (1, "PUBLISHED", "Basic+")
    assert (in_place.description, in_place.metadata) == ("d", {"a": "b"})
    draft = client.v1.plans.create_draft("basic").data
    assert draft.display_name == "Basic+" and draft.version_number == 2
    client.v1.plans.update("basic", display_name="Draft name")
    assert versions(server, "basic")[0].display_name == "Basic+"  # the published version is untouched
    removed = client.v1.plans.remove_draft("basic").data
    assert removed.id == "basic"
    back = client.v1.plans.retrieve("basic").data
    assert (back.version_number, back.status, back.display_name) == (1, "PUBLISHED", "Basic+")
    assert len(versions(server, "basic")) == 1
    # The next draft is version 2 again.
    assert client.v1.plans.create_draft("basic").data.version_number == 2


def test_archive_rules(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    plan(api, "free")
    plan(api, "base")
    plan(api, "child", parentPlanId="base")
    publish(api, "free")
    client.v1.products.update_product(
        "prod",
        product_settings={
            "subscription_cancellation_time": "END_OF_BILLING_PERIOD",
            "subscription_end_setup": "DOWNGRADE_TO_FREE",
            "subscription_start_setup": "PLAN_SELECTION",
            "downgrade_plan_id": "free",
        },
    )
    message = error_of(api.post("/api/v1/plans/free/archive"), 409, "FAILED_PRECONDITION")
    assert "downgradePlanId" in message
    message = error_of(api.post("/api/v1/plans/base/archive"), 409, "FAILED_PRECONDITION")
    assert "child" in message
    assert client.v1.plans.retrieve("base").data.status == "DRAFT"
    assert client.v1.plans.archive("child").data.status == "ARCHIVED"
    assert client.v1.plans.archive("child").data.status == "ARCHIVED"  # again: unchanged
    archived = client.v1.plans.archive("base").data
    assert (archived.status, archived.version_number) == ("ARCHIVED", 1)  # a never-published draft is archived
    # An archived plan cannot be edited, drafted, published or used as a product's plan.
    error_of(api.patch("/api/v1/plans/base", json={"displayName": "X"}), 409, "FAILED_PRECONDITION")
    error_of(api.post("/api/v1/plans/base/draft"), 409, "FAILED_PRECONDITION")
    error_of(
        api.post("/api/v1/plans/base/publish", json={"migrationType": "NEW_CUSTOMERS"}), 409, "FAILED_PRECONDITION"
    )
    settings = {
        "subscriptionCancellationTime": "END_OF_BILLING_PERIOD",
        "subscriptionEndSetup": "DOWNGRADE_TO_FREE",
        "subscriptionStartSetup": "PLAN_SELECTION",
        "downgradePlanId": "base",
    }
    error_of(api.patch("/api/v1/products/prod", json={"productSettings": settings}), 400, "INVALID_ARGUMENT")
    # Archiving a published plan with a draft discards the draft.
    plan(api, "team")
    publish(api, "team")
    client.v1.plans.create_draft("team")
    gone = client.v1.plans.archive("team").data
    assert (gone.status, gone.version_number) == ("ARCHIVED", 1)


def test_duplicate_product_copies_plans_as_drafts(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    plan(api, "base")
    assert add(api, "base", {"type": "FEATURE", "id": "f-seats", "usageLimit": 3}).status_code == 200
    publish(api, "base")
    plan(api, "child", parentPlanId="base")
    client.v1.products.duplicate_product("prod", target_id="prod2")
    copies = {p.id: p for p in client.v1.plans.list(product_id="prod2")}
    assert set(copies) == {"prod2-base", "prod2-child"}
    assert all(p.status == "DRAFT" and p.version_number == 1 for p in copies.values())
    assert copies["prod2-child"].parent_plan_id == "prod2-base"
    ents = client.v1.plans.entitlements.list("prod2-base").data
    assert [(e.id, e.usage_limit) for e in ents] == [("f-seats", 3)]  # type: ignore[union-attr]


def test_ids_with_slashes(client: stigg.Stigg) -> None:
    make_catalog(client)
    client.v1.plans.create(id="team/pro v2", display_name="Odd", product_id="prod")
    client.v1.plans.entitlements.create("team/pro v2", entitlements=[{"type": "FEATURE", "id": "f-sso"}])
    assert client.v1.plans.retrieve("team/pro v2").data.entitlements[0].id == "f-sso"
    client.v1.plans.publish("team/pro v2", migration_type="NEW_CUSTOMERS")
    assert client.v1.plans.create_draft("team/pro v2").data.version_number == 2


def test_a_misspelt_entitlement_field_is_refused_at_its_path(client: stigg.Stigg, api: httpx.Client) -> None:
    make_catalog(client)
    plan(api, "typo-plan")
    # `usageLimt` ignored would grant the feature without a limit.
    resp = add(api, "typo-plan", {"type": "FEATURE", "id": "calls", "usageLimt": 10})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "UNKNOWN_FIELD"
    assert resp.json()["error"]["details"][0]["field"] == "entitlements[0].usageLimt"
    assert api.get("/api/v1/plans/typo-plan").json()["data"]["entitlements"] == []
