"""Integrations (admins): connect Stripe with the rules the API enforces, see sync errors, retry dead jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from entitle.billing import service as billing
from entitle.billing.schemas import IntegrationIn
from entitle.console import pages
from entitle.console.rules import Permission
from entitle.console.web import PREFIX, Administer, Page, parsed, redirect, render
from entitle.errors import InvalidArgument, PermissionDenied
from entitle.http.deps import DB
from entitle.jobs import service as jobs

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/integrations")
def integrations_page(request: Request, ctx: Page, db: DB) -> Response:
    if not ctx.may(Permission.ADMINISTER):
        raise PermissionDenied("integrations are for admins")
    return render(request, ctx, "integrations.html", i=pages.integrations_page(db, ctx.env_id))


@router.post("/integrations")
def connect_stripe(
    request: Request,
    ctx: Administer,
    db: DB,
    api_secret_key: Annotated[str, Form(max_length=512)],
    id: Annotated[str, Form(max_length=64)] = "",
    is_default: Annotated[str, Form(max_length=8)] = "",
    publishable_key: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    body = parsed(
        IntegrationIn,
        {
            "id": id,
            "vendor_identifier": "STRIPE",
            "api_secret_key": api_secret_key,
            "is_default": bool(is_default) or None,
            "publishable_key": publishable_key.strip(),  # blank: the stored one is kept
        },
    )
    billing.connect(db, request.app.state.settings.data_dir, ctx.env_id, body)
    return redirect(f"{PREFIX}/integrations")


@router.post("/jobs/{job_id}/retry")
def retry_job(ctx: Administer, db: DB, job_id: str) -> Response:
    if not (job_id.isascii() and job_id.isdigit() and len(job_id) <= 18):
        raise InvalidArgument("job ids are numbers")
    jobs.retry_job(db, ctx.env_id, int(job_id))
    return redirect(f"{PREFIX}/integrations")
