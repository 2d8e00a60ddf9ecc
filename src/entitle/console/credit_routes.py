"""Console pages about credits: custom currencies (list, create, edit, archive) and a customer's credits
(balances, grants, ledger, balance chart; grant and void). Every write calls the credits API's own
service function with its own request model, so a rule refuses the same input with the same message."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from entitle.console import credit_pages
from entitle.console.web import PREFIX, Edit, Page, parsed, redirect, render
from entitle.credits import service as credits
from entitle.credits.schemas import CurrencyCreate, CurrencyUpdate, GrantCreate
from entitle.db.pagination import PageRequest
from entitle.http.deps import DB

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Text = Annotated[str, Form(max_length=255)]
OptionalText = Annotated[str, Form(max_length=255)]
LongField = Annotated[str, Form(max_length=5000)]
STATUS_VIEWS = {"active": ["ACTIVE"], "archived": ["ARCHIVED"], "all": ["ACTIVE", "ARCHIVED"]}


def currency_path(ref: str) -> str:
    return f"{PREFIX}/credits/currencies/{quote(ref, safe='')}"


def customer_credits_path(ref: str) -> str:
    return f"{PREFIX}/customers/{quote(ref, safe='')}/credits"


def _units(singular: str, plural: str) -> dict[str, str] | None:
    return {"singular": singular, "plural": plural} if singular or plural else None


@router.get("/credits")
def currencies_page(
    request: Request,
    ctx: Page,
    db: DB,
    status: Annotated[str, Query(max_length=16)] = "active",
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    statuses = STATUS_VIEWS.get(status, STATUS_VIEWS["active"])
    page = credits.list_currencies(db, ctx.env_id, PageRequest(limit=25, after=after, before=before), statuses)
    return render(request, ctx, "credit_currencies.html", page=page, status=status, views=list(STATUS_VIEWS))


@router.post("/credits/currencies")
def create_currency(
    ctx: Edit,
    db: DB,
    currency_id: Text,
    display_name: Text,
    symbol: OptionalText = "",
    singular: OptionalText = "",
    plural: OptionalText = "",
    description: LongField = "",
) -> Response:
    req = parsed(
        CurrencyCreate,
        {
            "id": currency_id,
            "display_name": display_name,
            "symbol": symbol,
            "description": description,
            "units": _units(singular, plural),
        },
    )
    created = credits.create_currency(db, ctx.env_id, req)
    return redirect(currency_path(created.id))


@router.get("/credits/currencies/{currency_id}")
def currency_page(request: Request, ctx: Page, db: DB, currency_id: str) -> Response:
    currency = credits.get_currency(db, ctx.env_id, currency_id)
    return render(request, ctx, "credit_currency.html", currency=currency, path=currency_path(currency_id))


@router.post("/credits/currencies/{currency_id}")
def update_currency(
    ctx: Edit,
    db: DB,
    currency_id: str,
    display_name: Text,
    symbol: OptionalText = "",
    singular: OptionalText = "",
    plural: OptionalText = "",
    description: LongField = "",
) -> Response:
    # An emptied symbol or description clears it, as the API's empty string does.
    req = parsed(
        CurrencyUpdate,
        {
            "display_name": display_name,
            "symbol": symbol,
            "description": description,
            "units": _units(singular, plural),
        },
        blanks_clear=True,
    )
    credits.update_currency(db, ctx.env_id, currency_id, req)
    return redirect(currency_path(currency_id))


@router.post("/credits/currencies/{currency_id}/archive")
def archive_currency(ctx: Edit, db: DB, currency_id: str) -> Response:
    credits.set_archived(db, ctx.env_id, currency_id, True)
    return redirect(currency_path(currency_id))


@router.post("/credits/currencies/{currency_id}/unarchive")
def unarchive_currency(ctx: Edit, db: DB, currency_id: str) -> Response:
    credits.set_archived(db, ctx.env_id, currency_id, False)
    return redirect(currency_path(currency_id))


@router.get("/customers/{customer_id}/credits")
def customer_credits_page(
    request: Request,
    ctx: Page,
    db: DB,
    customer_id: str,
    currency: Annotated[str, Query(max_length=255)] = "",
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    page = PageRequest(limit=25, after=after, before=before)
    data = credit_pages.customer_credits(db, ctx.env_id, customer_id, currency or None, page)
    return render(
        request, ctx, "customer_credits.html", c=data, path=customer_credits_path(customer_id), page=data.ledger
    )


@router.post("/customers/{customer_id}/credits/grants")
def create_grant(
    ctx: Edit,
    db: DB,
    customer_id: str,
    currency_id: Text,
    amount: Annotated[str, Form(max_length=40)],
    display_name: Text,
    grant_type: Annotated[str, Form(max_length=16)],
    priority: Annotated[str, Form(max_length=4)] = "",
    effective_at: Annotated[str, Form(max_length=40)] = "",
    expire_at: Annotated[str, Form(max_length=40)] = "",
    comment: LongField = "",
) -> Response:
    req = parsed(
        GrantCreate,
        {
            "customer_id": customer_id,
            "currency_id": currency_id,
            "amount": amount,
            "display_name": display_name,
            "grant_type": grant_type,
            "priority": int(priority) if priority.strip().isdigit() else priority,
            "effective_at": effective_at,
            "expire_at": expire_at,
            "comment": comment,
        },
    )
    credits.create_grant(db, ctx.env_id, req)
    return redirect(f"{customer_credits_path(customer_id)}?currency={quote(currency_id, safe='')}")


@router.post("/customers/{customer_id}/credits/grants/{grant_id}/void")
def void_grant(ctx: Edit, db: DB, customer_id: str, grant_id: str) -> Response:
    credits.void_grant(db, ctx.env_id, grant_id)
    return redirect(customer_credits_path(customer_id))
