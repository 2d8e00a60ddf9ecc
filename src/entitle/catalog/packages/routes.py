"""Plans (`/api/v1/plans`) and add-ons (`/api/v1/addons`): the same lifecycle, two routers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from entitle.catalog.packages import package_entitlements, publishing, service
from entitle.catalog.packages.models import PACKAGE_STATUSES, PackageView
from entitle.catalog.packages.schemas import (
    AddonCreate,
    AddonOut,
    AddonUpdate,
    ChargeOut,
    EntitlementOut,
    EntitlementsCreate,
    EntitlementUpdate,
    PlanCreate,
    PlanOut,
    PlanUpdate,
    PublishIn,
    entitlement_out,
)
from entitle.catalog.packages.service import PackageKind
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, IdOnly, PageEnvelope, TaskResult, WireModel, envelope, page_envelope

plans_router = APIRouter(prefix="/api/v1/plans", tags=["plans"])
addons_router = APIRouter(prefix="/api/v1/addons", tags=["addons"])


class EntitlementList(WireModel):
    data: list[EntitlementOut]


class EntitlementPage(WireModel):
    data: list[EntitlementOut]
    pagination: dict[str, str | None]


# ---------------------------------------------------------------------------------------------- plans only


@plans_router.post("", response_model=Envelope[PlanOut])
def create_plan(body: PlanCreate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(PlanOut.of(service.create_plan(db, key.environment_id, body)))


@plans_router.patch("/{plan_id}", response_model=Envelope[PlanOut])
def update_plan(plan_id: str, body: PlanUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(PlanOut.of(service.update_plan(db, key.environment_id, plan_id, body)))


@plans_router.get("/{plan_id}/overage-charges", response_model=PageEnvelope[ChargeOut])
def list_plan_overage_charges(plan_id: str, key: ServerKey, db: DB, page: Paging) -> dict[str, Any]:
    result = service.list_charges(db, key.environment_id, "PLAN", plan_id, page, overage=True)
    return page_envelope(result, ChargeOut.of)


# ---------------------------------------------------------------------------------------------- add-ons only


@addons_router.post("", response_model=Envelope[AddonOut])
def create_addon(body: AddonCreate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(AddonOut.of(service.create_addon(db, key.environment_id, body)))


@addons_router.patch("/{addon_id}", response_model=Envelope[AddonOut])
def update_addon(addon_id: str, body: AddonUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(AddonOut.of(service.update_addon(db, key.environment_id, addon_id, body)))


@addons_router.get("/{addon_id}/overage-charges", response_model=PageEnvelope[ChargeOut])
def list_addon_overage_charges(addon_id: str, key: ServerKey, db: DB, page: Paging) -> dict[str, Any]:
    """Our extension: the client lists overage charges of plans only, but add-ons can have them too."""
    result = service.list_charges(db, key.environment_id, "ADDON", addon_id, page, overage=True)
    return page_envelope(result, ChargeOut.of)


# ---------------------------------------------------------------------------------------------- shared


def _shared_routes(router: APIRouter, kind: PackageKind, out: Callable[[PackageView], WireModel], model: Any) -> None:
    """Read, list, draft, publish, archive, charges and entitlements: identical for plans and add-ons."""

    @router.get("", response_model=PageEnvelope[model])
    def list_packages(
        key: ServerKey,
        db: DB,
        page: Paging,
        created_at: CreatedAt,
        product_id: Annotated[str | None, Query(alias="productId", max_length=255)] = None,
        status: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        result = service.list_packages(
            db,
            key.environment_id,
            kind,
            page,
            product_ref=product_id or None,
            statuses=comma_list(status, PACKAGE_STATUSES, name="status"),
            created_at=created_at,
        )
        return page_envelope(result, out)

    @router.get("/{package_id}", response_model=Envelope[model])
    def get_package(package_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
        return envelope(out(service.get_package(db, key.environment_id, kind, package_id)))

    @router.post("/{package_id}/archive", response_model=Envelope[model])
    def archive_package(package_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
        return envelope(out(publishing.archive_package(db, key.environment_id, kind, package_id)))

    @router.post("/{package_id}/draft", response_model=Envelope[model])
    def create_draft(package_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
        return envelope(out(publishing.create_draft(db, key.environment_id, kind, package_id)))

    @router.delete("/{package_id}/draft", response_model=Envelope[IdOnly])
    def remove_draft(package_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
        return envelope(IdOnly(id=publishing.remove_draft(db, key.environment_id, kind, package_id)))

    @router.post("/{package_id}/publish", response_model=Envelope[TaskResult])
    def publish_package(package_id: str, body: PublishIn, key: ServerKey, db: DB) -> dict[str, Any]:
        task_id = publishing.publish_package(db, key.environment_id, kind, package_id, body.migration_type)
        return envelope(TaskResult(task_id=task_id))

    @router.get("/{package_id}/charges", response_model=PageEnvelope[ChargeOut])
    def list_charges(package_id: str, key: ServerKey, db: DB, page: Paging) -> dict[str, Any]:
        result = service.list_charges(db, key.environment_id, kind, package_id, page)
        return page_envelope(result, ChargeOut.of)

    @router.post("/{package_id}/entitlements", response_model=EntitlementList)
    def create_entitlements(package_id: str, body: EntitlementsCreate, key: ServerKey, db: DB) -> dict[str, Any]:
        rows = package_entitlements.add_entitlements(db, key.environment_id, kind, package_id, list(body.entitlements))
        return envelope([entitlement_out(r) for r in rows])

    @router.get("/{package_id}/entitlements", response_model=EntitlementPage)
    def list_entitlements(package_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
        """Every entitlement in one page: the client does not page through this list."""
        rows = package_entitlements.list_entitlements(db, key.environment_id, kind, package_id)
        return {"data": [entitlement_out(r) for r in rows], "pagination": {"next": None, "prev": None}}

    @router.patch("/{package_id}/entitlements/{entitlement_id}", response_model=Envelope[EntitlementOut])
    def update_entitlement(
        package_id: str,
        entitlement_id: str,
        body: Annotated[EntitlementUpdate, Body()],
        key: ServerKey,
        db: DB,
    ) -> dict[str, Any]:
        row = package_entitlements.update_entitlement(db, key.environment_id, kind, package_id, entitlement_id, body)
        return envelope(entitlement_out(row))

    @router.delete("/{package_id}/entitlements/{entitlement_id}", response_model=Envelope[EntitlementOut])
    def delete_entitlement(package_id: str, entitlement_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
        row = package_entitlements.remove_entitlement(db, key.environment_id, kind, package_id, entitlement_id)
        return envelope(entitlement_out(row))


_shared_routes(plans_router, "PLAN", PlanOut.of, PlanOut)
_shared_routes(addons_router, "ADDON", AddonOut.of, AddonOut)
