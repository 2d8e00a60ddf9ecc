"""Console pages that change one subscription: its add-ons and its billing period (each after the price
preview), its plan (the
provision preview of `customer_routes`, as the API changes plans by provisioning in the same product),
and cancelling a scheduled change. Each write is the API's own service function with its request model."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from entitle.console import pages
from entitle.console.customer_routes import customer_path
from entitle.console.web import PREFIX, Edit, Page, parsed, redirect, render
from entitle.errors import InvalidArgument
from entitle.http.deps import DB
from entitle.subscriptions import changes
from entitle.subscriptions import service as subscriptions
from entitle.subscriptions.schemas import AddonQuantity, SubscriptionUpdate

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# One entry per add-on of the form: its id and its quantity (0 removes it), in the same order.
AddonIds = Annotated[list[str], Query(max_length=100)]
AddonQuantities = Annotated[list[str], Query(max_length=100)]


def subscription_path(ref: str) -> str:
    return f"{PREFIX}/subscriptions/{quote(ref, safe='')}"


def _addons(ids: list[str], quantities: list[str]) -> list[dict[str, str]]:
    if len(ids) != len(quantities):
        # Both lists come from one form; a mismatch is a hand-made request, not a typo.
        raise InvalidArgument("addon_id and addon_quantity must come in pairs")
    return [{"id": ref, "quantity": quantity or "0"} for ref, quantity in zip(ids, quantities, strict=True)]


@router.get("/subscriptions/{subscription_id}")
def subscription_link(ctx: Page, db: DB, subscription_id: str) -> Response:
    """A subscription's own address (the `entitleEntityUrl` the billing provider holds): its row on its
    customer's page."""
    view = subscriptions.get_subscription(db, ctx.env_id, subscription_id)
    return redirect(f"{customer_path(view.customer_ref)}#subscription-{quote(view.sub.ref_id, safe='')}")


@router.get("/subscriptions/{subscription_id}/change")
def change_page(request: Request, ctx: Page, db: DB, subscription_id: str) -> Response:
    data = pages.change_page(db, ctx.env_id, subscription_id)
    return render(request, ctx, "change.html", c=data, path=subscription_path(subscription_id))


@router.get("/subscriptions/{subscription_id}/addons")
def addons_preview(
    request: Request,
    ctx: Page,
    db: DB,
    subscription_id: str,
    addon_id: AddonIds = [],  # noqa: B006 - FastAPI copies a parameter's default
    addon_quantity: AddonQuantities = [],  # noqa: B006
) -> Response:
    wanted = [parsed(AddonQuantity, item) for item in _addons(addon_id, addon_quantity)]
    view, preview = pages.addons_preview(db, ctx.env_id, subscription_id, wanted)
    return render(
        request,
        ctx,
        "addons_preview.html",
        v=view,
        wanted=wanted,
        preview=preview,
        path=subscription_path(subscription_id),
    )


@router.post("/subscriptions/{subscription_id}/addons")
def change_addons(
    ctx: Edit,
    db: DB,
    subscription_id: str,
    addon_id: Annotated[list[str], Form(max_length=100)] = [],  # noqa: B006
    addon_quantity: Annotated[list[str], Form(max_length=100)] = [],  # noqa: B006
) -> Response:
    req = parsed(SubscriptionUpdate, {"addons": _addons(addon_id, addon_quantity)})
    view = changes.update_subscription(db, ctx.env_id, subscription_id, req)
    return redirect(customer_path(view.customer_ref))


@router.get("/subscriptions/{subscription_id}/period")
def period_preview(
    request: Request,
    ctx: Page,
    db: DB,
    subscription_id: str,
    billing_period: Annotated[str, Query(max_length=16)],
    schedule_strategy: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """The price preview before switching the subscription's billing period on the same plan."""
    req = parsed(SubscriptionUpdate, {"billing_period": billing_period, "schedule_strategy": schedule_strategy})
    assert req.billing_period is not None  # required by the query
    when = req.schedule_strategy
    data = pages.period_preview(db, ctx.env_id, subscription_id, req.billing_period, when)
    return render(
        request,
        ctx,
        "period_preview.html",
        v=data.subscription,
        req=req,
        preview=data.preview,
        hide_due_now=data.deferred,
        path=subscription_path(subscription_id),
    )


@router.post("/subscriptions/{subscription_id}/period")
def change_period(
    ctx: Edit,
    db: DB,
    subscription_id: str,
    billing_period: Annotated[str, Form(max_length=16)],
    schedule_strategy: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    req = parsed(SubscriptionUpdate, {"billing_period": billing_period, "schedule_strategy": schedule_strategy})
    view = changes.update_subscription(db, ctx.env_id, subscription_id, req)
    return redirect(customer_path(view.customer_ref))


@router.post("/subscriptions/{subscription_id}/scheduled-update/cancel")
def cancel_scheduled_update(
    ctx: Edit, db: DB, subscription_id: str, back: Annotated[str, Form(max_length=500)] = ""
) -> Response:
    changes.cancel_future_update(db, ctx.env_id, subscription_id)
    return redirect(back if back.startswith(PREFIX + "/") and "//" not in back else f"{PREFIX}/subscriptions")
