"""Products: list and search, create, edit (name, description, multiple subscriptions, the customer
journey), archive and unarchive, duplicate. Each write is the API's own service call with the API's
own request model."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import Response

from entitle.catalog.products import service as products
from entitle.catalog.products.schemas import PRODUCT_STATUSES, ProductCreate, ProductDuplicate, ProductUpdate
from entitle.console import catalog_pages
from entitle.console.catalog_rules import NEW_METADATA_ROWS, metadata_of, moved
from entitle.console.web import PREFIX, Edit, Page, parsed, redirect, render, templates
from entitle.db.pagination import PageRequest
from entitle.http.deps import DB, comma_list

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Short = Annotated[str, Form(max_length=255)]
Tiny = Annotated[str, Form(max_length=32)]
Text = Annotated[str, Form(max_length=5000)]
Cursor = Annotated[str | None, Query(max_length=200)]
# PostgreSQL text holds no NUL: refused here, as a form error, rather than by the database.
Ref = Annotated[str, Path(max_length=255, pattern=r"^[^\x00]*$")]
CANCELLATION_TIMES = ("END_OF_BILLING_PERIOD", "IMMEDIATE")
END_SETUPS = ("CANCEL_SUBSCRIPTION", "DOWNGRADE_TO_FREE")
START_SETUPS = ("PLAN_SELECTION", "FREE_PLAN", "TRIAL_PERIOD")
Refs = Annotated[list[str] | None, Form(max_length=500)]
# One row of the metadata editor: the API's Metadata type checks the lengths again, with its own words.
MetaKeys = Annotated[list[str] | None, Form(max_length=300)]
MetaValues = Annotated[list[str] | None, Form(max_length=300)]
templates.env.globals["moved"] = moved


def product_path(ref: str) -> str:
    return f"{PREFIX}/products/{quote(ref, safe='')}"


@router.get("/products")
def products_page(
    request: Request,
    ctx: Page,
    db: DB,
    q: Annotated[str, Query(max_length=255, pattern=r"^[^\x00]*$")] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    after: Cursor = None,
    before: Cursor = None,
) -> Response:
    statuses = comma_list(status, PRODUCT_STATUSES, name="status")
    data = catalog_pages.products_page(db, ctx.env_id, q, statuses, PageRequest(limit=50, after=after, before=before))
    return render(request, ctx, "products.html", data=data, page=data.products, statuses=PRODUCT_STATUSES)


@router.post("/products")
def create_product(
    ctx: Edit, db: DB, id: Short, display_name: Short, description: Text = "", multiple_subscriptions: Tiny = ""
) -> Response:
    body = {
        "id": id,
        "display_name": display_name,
        "description": description.strip(),
        "multiple_subscriptions": bool(multiple_subscriptions),
    }
    products.create_product(db, ctx.env_id, parsed(ProductCreate, body))
    return redirect(product_path(id))


@router.get("/products/{ref}")
def product_page(request: Request, ctx: Page, db: DB, ref: Ref) -> Response:
    data = catalog_pages.product_page(db, ctx.env_id, ref)
    return render(
        request,
        ctx,
        "product.html",
        p=data,
        path=product_path(ref),
        cancellation_times=CANCELLATION_TIMES,
        end_setups=END_SETUPS,
        start_setups=START_SETUPS,
        order_editable=True,
        metadata=sorted_metadata(data.product.metadata_),
        new_metadata_rows=NEW_METADATA_ROWS,
    )


def sorted_metadata(stored: dict[str, str] | None) -> dict[str, str]:
    return dict(sorted((stored or {}).items()))


@router.post("/products/{ref}")
def edit_product(
    ctx: Edit,
    db: DB,
    ref: Ref,
    display_name: Short,
    description: Text = "",
    multiple_subscriptions: Tiny = "",
) -> Response:
    body = {
        "display_name": display_name,
        "description": description.strip() or None,
        "multiple_subscriptions": bool(multiple_subscriptions),
    }
    products.update_product(db, ctx.env_id, ref, parsed(ProductUpdate, body, blanks_clear=True))
    return redirect(product_path(ref))


@router.post("/products/{ref}/journey")
def edit_journey(
    ctx: Edit,
    db: DB,
    ref: Ref,
    subscription_cancellation_time: Tiny,
    subscription_end_setup: Tiny,
    subscription_start_setup: Tiny,
    downgrade_plan_id: Short = "",
    subscription_start_plan_id: Short = "",
) -> Response:
    settings = {
        "subscription_cancellation_time": subscription_cancellation_time,
        "subscription_end_setup": subscription_end_setup,
        "subscription_start_setup": subscription_start_setup,
        "downgrade_plan_id": downgrade_plan_id or None,
        "subscription_start_plan_id": subscription_start_plan_id or None,
    }
    products.update_product(
        db, ctx.env_id, ref, parsed(ProductUpdate, {"product_settings": settings}, blanks_clear=True)
    )
    return redirect(product_path(ref))


@router.post("/products/{ref}/plan-order")
def order_plans(ctx: Edit, db: DB, ref: Ref, plan_ids: Refs = None) -> Response:
    """Each move button sends the whole new order (works without JavaScript); none clears the order."""
    products.update_product(db, ctx.env_id, ref, parsed(ProductUpdate, {"plan_order": plan_ids or []}))
    return redirect(product_path(ref) + "#pw-h")


@router.post("/products/{ref}/metadata")
def edit_product_metadata(
    ctx: Edit, db: DB, ref: Ref, meta_key: MetaKeys = None, meta_value: MetaValues = None
) -> Response:
    metadata = metadata_of(meta_key or [], meta_value or [])
    products.update_product(db, ctx.env_id, ref, parsed(ProductUpdate, {"metadata": metadata}))
    return redirect(product_path(ref) + "#md-h")


@router.post("/products/{ref}/archive")
def archive_product(ctx: Edit, db: DB, ref: Ref) -> Response:
    products.archive_product(db, ctx.env_id, ref)
    return redirect(product_path(ref))


@router.post("/products/{ref}/unarchive")
def unarchive_product(ctx: Edit, db: DB, ref: Ref) -> Response:
    products.unarchive_product(db, ctx.env_id, ref)
    return redirect(product_path(ref))


@router.post("/products/{ref}/duplicate")
def duplicate_product(
    ctx: Edit, db: DB, ref: Ref, target_id: Short, display_name: Short = "", description: Text = ""
) -> Response:
    body = {"target_id": target_id, "display_name": display_name, "description": description.strip()}
    products.duplicate_product(db, ctx.env_id, ref, parsed(ProductDuplicate, body))
    return redirect(product_path(target_id))
