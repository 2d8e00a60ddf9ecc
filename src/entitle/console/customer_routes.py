"""Console pages about customers and subscriptions. Every write calls the API's own service function
with the API's own request model, so a rule refuses the same input with the same message here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from entitle.console import pages
from entitle.console.web import PREFIX, Edit, Page, parsed, redirect, render
from entitle.customers import service as customers
from entitle.db.pagination import PageRequest
from entitle.http.deps import DB, comma_list
from entitle.promotions import service as promotions
from entitle.promotions.schemas import PromotionIn
from entitle.subscriptions import cancellation, provisioning
from entitle.subscriptions.preview import preview_subscription
from entitle.subscriptions.schemas import (
    BILLING_PERIODS,
    PRICING_TYPES,
    SUBSCRIPTION_STATUSES,
    SubscriptionCancel,
    SubscriptionPreview,
    SubscriptionProvision,
)
from entitle.sync_states import SYNC_STATUSES

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Text = Annotated[str, Form(max_length=255)]


def customer_path(ref: str) -> str:
    return f"{PREFIX}/customers/{quote(ref, safe='')}"


@router.get("/customers")
def customers_page(
    request: Request,
    ctx: Page,
    db: DB,
    q: Annotated[str, Query(max_length=255)] = "",
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    page = pages.search_customers(db, ctx.env_id, q, PageRequest(limit=25, after=after, before=before))
    return render(request, ctx, "customers.html", page=page, q=q)


@router.get("/customers/{customer_id}")
def customer_page(request: Request, ctx: Page, db: DB, customer_id: str) -> Response:
    data = pages.customer_page(db, ctx.env_id, customer_id)
    return render(request, ctx, "customer.html", c=data, path=customer_path(customer_id))


@router.post("/customers/{customer_id}/archive")
def archive_customer(ctx: Edit, db: DB, customer_id: str) -> Response:
    customers.archive_customer(db, ctx.env_id, customer_id)
    return redirect(customer_path(customer_id))


@router.post("/customers/{customer_id}/unarchive")
def unarchive_customer(ctx: Edit, db: DB, customer_id: str) -> Response:
    customers.unarchive_customer(db, ctx.env_id, customer_id)
    return redirect(customer_path(customer_id))


@router.get("/customers/{customer_id}/provision")
def provision_preview(
    request: Request,
    ctx: Page,
    db: DB,
    customer_id: str,
    plan: Annotated[str, Query(max_length=255)],
    billing_period: Annotated[str, Query(max_length=16)] = "",
    unit_quantity: Annotated[str, Query(max_length=20)] = "",
    schedule_strategy: Annotated[str, Query(max_length=32)] = "",
    resource_id: Annotated[str, Query(max_length=255)] = "",
    change_of: Annotated[str, Query(max_length=255)] = "",
) -> Response:
    """The price preview before provisioning; with `change_of`, before changing that subscription's plan
    (the API changes a plan by provisioning another one of the same product)."""
    req = parsed(
        SubscriptionPreview,
        {
            "customer_id": customer_id,
            "plan_id": plan,
            "billing_period": billing_period,
            "unit_quantity": unit_quantity,
            "schedule_strategy": schedule_strategy,
            "resource_id": resource_id,
        },
    )
    preview = preview_subscription(db, ctx.env_id, req)
    return render(
        request, ctx, "provision.html", customer_id=customer_id, req=req, preview=preview, change_of=change_of
    )


@router.post("/customers/{customer_id}/subscriptions")
def provision(
    ctx: Edit,
    db: DB,
    customer_id: str,
    plan: Text,
    billing_period: Annotated[str, Form(max_length=16)] = "",
    unit_quantity: Annotated[str, Form(max_length=20)] = "",
    schedule_strategy: Annotated[str, Form(max_length=32)] = "",
    resource_id: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    req = parsed(
        SubscriptionProvision,
        {
            "customer_id": customer_id,
            "plan_id": plan,
            "billing_period": billing_period,
            "unit_quantity": unit_quantity,
            "schedule_strategy": schedule_strategy,
            "resource_id": resource_id,
        },
    )
    provisioning.provision(db, ctx.env_id, req)
    return redirect(customer_path(customer_id))


@router.post("/customers/{customer_id}/promotions")
def grant_promotion(
    ctx: Edit,
    db: DB,
    customer_id: str,
    feature_id: Text,
    period: Annotated[str, Form(max_length=16)],
    usage_limit: Annotated[str, Form(max_length=20)] = "",
    has_unlimited_usage: Annotated[str, Form(max_length=8)] = "",
    custom_end_date: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    item = parsed(
        PromotionIn,
        {
            "feature_id": feature_id,
            "period": period,
            "usage_limit": usage_limit,
            "has_unlimited_usage": bool(has_unlimited_usage) or None,
            "custom_end_date": custom_end_date,
        },
    )
    promotions.grant(db, ctx.env_id, customer_id, [item])
    return redirect(customer_path(customer_id))


@router.post("/customers/{customer_id}/promotions/{feature_id}/revoke")
def revoke_promotion(ctx: Edit, db: DB, customer_id: str, feature_id: str) -> Response:
    promotions.revoke(db, ctx.env_id, customer_id, feature_id)
    return redirect(customer_path(customer_id))


@router.post("/subscriptions/{subscription_id}/cancel")
def cancel(
    ctx: Edit,
    db: DB,
    subscription_id: str,
    cancellation_time: Annotated[str, Form(max_length=32)],
    end_date: Annotated[str, Form(max_length=40)] = "",
    back: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    req = parsed(SubscriptionCancel, {"cancellation_time": cancellation_time, "end_date": end_date})
    cancellation.cancel_subscription(db, ctx.env_id, subscription_id, req)
    return redirect(back if back.startswith(PREFIX + "/") and "//" not in back else f"{PREFIX}/subscriptions")


@router.get("/subscriptions")
def subscriptions_page(
    request: Request,
    ctx: Page,
    db: DB,
    status: Annotated[str, Query(max_length=200)] = "",
    plan: Annotated[str, Query(max_length=255)] = "",
    pricing_type: Annotated[str, Query(max_length=64)] = "",
    billing_period: Annotated[str, Query(max_length=64)] = "",
    sync: Annotated[str, Query(max_length=200)] = "",
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    where = pages.SubscriptionFilters(
        plan_ref=plan or None,
        statuses=comma_list(status, SUBSCRIPTION_STATUSES, name="status"),
        pricing_types=comma_list(pricing_type, PRICING_TYPES, name="pricingType"),
        billing_periods=comma_list(billing_period, BILLING_PERIODS, name="billingPeriod"),
        sync_statuses=comma_list(sync, SYNC_STATUSES, name="sync"),
    )
    found = pages.subscriptions_page(db, ctx.env_id, PageRequest(limit=25, after=after, before=before), where)
    filters = {"status": status, "plan": plan, "pricing_type": pricing_type, "billing_period": billing_period}
    return render(
        request,
        ctx,
        "subscriptions.html",
        page=found.page,
        views=found.views,
        plans=found.plans,
        livemodes=found.livemodes,
        filters=filters | {"sync": sync},
        statuses=SUBSCRIPTION_STATUSES,
        pricing_types=PRICING_TYPES,
        billing_periods=BILLING_PERIODS,
        sync_statuses=SYNC_STATUSES,
        now=datetime.now(),
    )
