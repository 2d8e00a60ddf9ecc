"""Plans and add-ons lists, and creating one (a draft); their pages and draft editor are in
`package_routes`. Each write is the API's own service call with the API's own request model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from entitle.catalog.packages import service as packages
from entitle.catalog.packages.models import PACKAGE_STATUSES
from entitle.catalog.packages.schemas import AddonCreate, PlanCreate
from entitle.catalog.packages.service import PackageKind
from entitle.console import catalog_pages
from entitle.console.package_routes import package_path
from entitle.console.web import PREFIX, Console, Edit, Page, parsed, redirect, render
from entitle.db import Database
from entitle.db.pagination import PageRequest
from entitle.http.deps import DB, comma_list

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Short = Annotated[str, Form(max_length=255)]
Tiny = Annotated[str, Form(max_length=32)]
Cursor = Annotated[str | None, Query(max_length=200)]


def _packages_page(
    request: Request,
    ctx: Console,
    db: Database,
    kind: PackageKind,
    product: str,
    status: str,
    after: str | None,
    before: str | None,
) -> Response:
    """The plans or add-ons list, filtered by product and status."""
    data = catalog_pages.packages_page(
        db,
        ctx.env_id,
        kind,
        PageRequest(limit=50, after=after, before=before),
        product or None,
        comma_list(status, PACKAGE_STATUSES, name="status"),
    )
    return render(
        request,
        ctx,
        "plans.html" if kind == "PLAN" else "addons.html",
        page=data.packages,
        products=data.products,
        product=product,
        status=status,
        statuses=PACKAGE_STATUSES,
    )


@router.get("/plans")
def plans_page(
    request: Request,
    ctx: Page,
    db: DB,
    product: Annotated[str, Query(max_length=255, pattern=r"^[^\x00]*$")] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    after: Cursor = None,
    before: Cursor = None,
) -> Response:
    return _packages_page(request, ctx, db, "PLAN", product, status, after, before)


@router.post("/plans")
def create_plan(ctx: Edit, db: DB, id: Short, display_name: Short, product_id: Short) -> Response:
    req = parsed(PlanCreate, {"id": id, "display_name": display_name, "product_id": product_id})
    packages.create_plan(db, ctx.env_id, req)
    return redirect(package_path("PLAN", id))


@router.get("/addons")
def addons_page(
    request: Request,
    ctx: Page,
    db: DB,
    product: Annotated[str, Query(max_length=255, pattern=r"^[^\x00]*$")] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    after: Cursor = None,
    before: Cursor = None,
) -> Response:
    return _packages_page(request, ctx, db, "ADDON", product, status, after, before)


@router.post("/addons")
def create_addon(
    ctx: Edit, db: DB, id: Short, display_name: Short, product_id: Short, max_quantity: Tiny = ""
) -> Response:
    body = {"id": id, "display_name": display_name, "product_id": product_id, "max_quantity": max_quantity}
    packages.create_addon(db, ctx.env_id, parsed(AddonCreate, body))
    return redirect(package_path("ADDON", id))
