"""Plans through the official client: versions, draft/publish, entitlements, charges, archive."""

from __future__ import annotations

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
    "overage_billing_period": "MONTHLY",
    "pricing_models": [
        {
            "billing_model": "FLAT_FEE",
            "price_periods": [
                {"billing_period": "MONTHLY", "price": {"amount": 49.99, "currency": "usd"}},
                {"billing_period": "ANNUALLY", "price": {"amount": 499, "currency": "usd"}},
                {
                    "billing_period": "MONTHLY",
                    "billing_country_code": "DE",
                    "price": {"amount": 45.5, "currency": "eur"},
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
            "reset_period": "MONTH",
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
    assert de.price is not None and de.price.amount == 45.5 and de.price.currency == "eur"
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
