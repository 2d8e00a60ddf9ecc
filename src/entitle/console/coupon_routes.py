"""Coupons: list (by status and type), create (a percentage, or fixed amounts per currency, for a number
of months or for ever), archive. Each write is the coupons service with the API's own request model."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from entitle.catalog.coupons import service as coupons
from entitle.catalog.coupons.schemas import COUPON_STATUSES, COUPON_TYPES, CouponCreate, CouponUpdate
from entitle.console import catalog_pages
from entitle.console.catalog_rules import NEW_METADATA_ROWS, amounts_off_of, metadata_of
from entitle.console.product_routes import MetaKeys, MetaValues, Ref, sorted_metadata
from entitle.console.web import PREFIX, Edit, Page, parsed, redirect, render
from entitle.db.pagination import PageRequest
from entitle.errors import InvalidArgument
from entitle.http.deps import DB, comma_list

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Short = Annotated[str, Form(max_length=255)]
Tiny = Annotated[str, Form(max_length=32)]
Text = Annotated[str, Form(max_length=5000)]
Cursor = Annotated[str | None, Query(max_length=200)]


@router.get("/coupons")
def coupons_page(
    request: Request,
    ctx: Page,
    db: DB,
    status: Annotated[str, Query(max_length=16)] = "",
    type: Annotated[str, Query(max_length=16)] = "",
    after: Cursor = None,
    before: Cursor = None,
) -> Response:
    statuses = comma_list(status, COUPON_STATUSES, name="status")
    if type and type not in COUPON_TYPES:
        raise InvalidArgument(f"type: expected one of {', '.join(COUPON_TYPES)}")
    data = catalog_pages.coupons_page(
        db, ctx.env_id, statuses, type or None, PageRequest(limit=50, after=after, before=before)
    )
    return render(
        request, ctx, "coupons.html", data=data, page=data.coupons, statuses=COUPON_STATUSES, types=COUPON_TYPES
    )


@router.post("/coupons")
def create_coupon(
    ctx: Edit,
    db: DB,
    id: Short,
    name: Short,
    discount: Tiny,
    description: Text = "",
    percent_off: Tiny = "",
    amounts_off: Text = "",
    duration_in_months: Tiny = "",
) -> Response:
    body: dict[str, Any] = {"id": id, "name": name, "description": description.strip()}
    if discount == "PERCENTAGE":
        body["percent_off"] = percent_off or None
        if body["percent_off"] is None:
            raise InvalidArgument("percentOff: a percentage coupon needs the percentage off")
    elif discount == "FIXED":
        body["amounts_off"] = amounts_off_of(amounts_off)
    else:
        raise InvalidArgument("discount: choose a percentage or fixed amounts")
    if duration_in_months:
        if not duration_in_months.isdigit():
            raise InvalidArgument("durationInMonths: a whole number of months (blank for ever)")
        body["duration_in_months"] = int(duration_in_months)
    coupons.create_coupon(db, ctx.env_id, parsed(CouponCreate, body))
    return redirect(f"{PREFIX}/coupons")


def coupon_path(ref: str) -> str:
    return f"{PREFIX}/coupons/{quote(ref, safe='')}"


@router.get("/coupons/{ref}")
def coupon_page(request: Request, ctx: Page, db: DB, ref: Ref) -> Response:
    coupon = coupons.get_coupon(db, ctx.env_id, ref)
    return render(
        request,
        ctx,
        "coupon.html",
        c=coupon,
        path=coupon_path(ref),
        metadata=sorted_metadata(coupon.metadata_),
        new_metadata_rows=NEW_METADATA_ROWS,
    )


@router.post("/coupons/{ref}/metadata")
def edit_coupon_metadata(
    ctx: Edit, db: DB, ref: Ref, meta_key: MetaKeys = None, meta_value: MetaValues = None
) -> Response:
    metadata = metadata_of(meta_key or [], meta_value or [])
    coupons.update_coupon(db, ctx.env_id, ref, parsed(CouponUpdate, {"metadata": metadata}))
    return redirect(coupon_path(ref) + "#md-h")


@router.post("/coupons/{ref}/archive")
def archive_coupon(ctx: Edit, db: DB, ref: Ref) -> Response:
    coupons.archive_coupon(db, ctx.env_id, ref)
    return redirect(f"{PREFIX}/coupons")
