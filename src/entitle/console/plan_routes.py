"""Plans: list and create, a plan's draft (entitlements, its price with a tier editor, its trial), publish
with the migration type. Each write is the API's own service call with the API's own request model."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from entitle.catalog.packages import package_entitlements, publishing
from entitle.catalog.packages import service as packages
from entitle.catalog.packages.schemas import EntitlementsCreate, PlanCreate, PlanUpdate, PublishIn
from entitle.console import pages
from entitle.console.web import PREFIX, Edit, Page, parsed, redirect, render
from entitle.db.pagination import PageRequest
from entitle.errors import InvalidArgument
from entitle.http.deps import DB

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Short = Annotated[str, Form(max_length=255)]
Tiny = Annotated[str, Form(max_length=32)]


def plan_path(ref: str) -> str:
    return f"{PREFIX}/plans/{quote(ref, safe='')}"


@router.get("/plans")
def plans_page(
    request: Request,
    ctx: Page,
    db: DB,
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    data = pages.plans_page(db, ctx.env_id, PageRequest(limit=50, after=after, before=before))
    return render(request, ctx, "plans.html", page=data.plans, products=data.products)


@router.post("/plans")
def create_plan(ctx: Edit, db: DB, id: Short, display_name: Short, product_id: Short) -> Response:
    req = parsed(PlanCreate, {"id": id, "display_name": display_name, "product_id": product_id})
    packages.create_plan(db, ctx.env_id, req)
    return redirect(plan_path(id))


@router.get("/plans/{plan_id}")
def plan_page(request: Request, ctx: Page, db: DB, plan_id: str) -> Response:
    data = pages.plan_page(db, ctx.env_id, plan_id)
    return render(request, ctx, "plan.html", p=data, path=plan_path(plan_id))


@router.post("/plans/{plan_id}/draft")
def create_draft(ctx: Edit, db: DB, plan_id: str) -> Response:
    publishing.create_draft(db, ctx.env_id, "PLAN", plan_id)
    return redirect(plan_path(plan_id))


@router.post("/plans/{plan_id}/entitlements")
def add_entitlement(
    ctx: Edit,
    db: DB,
    plan_id: str,
    feature_id: Short,
    usage_limit: Tiny = "",
    has_unlimited_usage: Tiny = "",
    has_soft_limit: Tiny = "",
    reset_period: Tiny = "",
) -> Response:
    item: dict[str, Any] = {
        "type": "FEATURE",
        "id": feature_id,
        "usage_limit": usage_limit,
        "has_unlimited_usage": bool(has_unlimited_usage) or None,
        "has_soft_limit": bool(has_soft_limit) or None,
        "reset_period": reset_period,
    }
    req = parsed(EntitlementsCreate, {"entitlements": [{k: v for k, v in item.items() if v not in ("", None)}]})
    package_entitlements.add_entitlements(db, ctx.env_id, "PLAN", plan_id, req.entitlements)
    return redirect(plan_path(plan_id))


def tiers_of(text: str, currency: str) -> list[dict[str, Any]]:
    """The tier editor's lines, `UP_TO UNIT_PRICE [FLAT_PRICE]` each, the last one's UP_TO `*` (no end)."""
    tiers: list[dict[str, Any]] = []
    for number, line in enumerate(text.strip().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise InvalidArgument(f"tier line {number}: write 'UP_TO UNIT_PRICE [FLAT_PRICE]' ('*' for no end)")
        try:
            amounts = [Decimal(p) for p in parts[1:]]
            up_to = None if parts[0] == "*" else Decimal(parts[0])
        except InvalidOperation:
            raise InvalidArgument(f"tier line {number}: amounts must be numbers") from None
        tier: dict[str, Any] = {"up_to": up_to, "unit_price": {"amount": amounts[0], "currency": currency}}
        if len(amounts) == 2:
            tier["flat_price"] = {"amount": amounts[1], "currency": currency}
        tiers.append(tier)
    return tiers


@router.post("/plans/{plan_id}/price")
def set_price(
    ctx: Edit,
    db: DB,
    plan_id: str,
    billing_model: Tiny,
    billing_period: Tiny,
    currency: Tiny = "usd",
    amount: Tiny = "",
    feature_id: Short = "",
    tiers_mode: Tiny = "",
    tiers: Annotated[str, Form(max_length=5000)] = "",
    trial_days: Tiny = "",
) -> Response:
    period: dict[str, Any] = {"billing_period": billing_period}
    if tiers.strip():
        period["tiers"] = tiers_of(tiers, currency)
    elif amount:
        period["price"] = {"amount": amount, "currency": currency}
    model: dict[str, Any] = {"billing_model": billing_model, "price_periods": [period]}
    if feature_id:
        model["feature_id"] = feature_id
    if tiers_mode and tiers.strip():
        model["tiers_mode"] = tiers_mode
    body: dict[str, Any] = {"charges": {"pricing_type": "PAID", "pricing_models": [model]}}
    if trial_days:
        body["default_trial_config"] = {"duration": trial_days, "units": "DAY"}
    packages.update_plan(db, ctx.env_id, plan_id, parsed(PlanUpdate, body))
    return redirect(plan_path(plan_id))


@router.post("/plans/{plan_id}/publish")
def publish(ctx: Edit, db: DB, plan_id: str, migration_type: Tiny) -> Response:
    req = parsed(PublishIn, {"migration_type": migration_type})
    publishing.publish_package(db, ctx.env_id, "PLAN", plan_id, req.migration_type)
    return redirect(plan_path(plan_id))
