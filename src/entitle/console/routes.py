"""Console pages: sign-in, overview, environment switcher, audit log. Each handler parses, calls one
service function, renders (see `web` for the session, CSRF and role checks)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from entitle.audit import service as audit
from entitle.console import accounts, charts, overview
from entitle.console.web import COOKIE, PREFIX, Own, Page, cookie_secure, redirect, render, session_token
from entitle.db.pagination import PageRequest
from entitle.errors import EntitleError
from entitle.http.deps import DB, secret_box_of

router = APIRouter(prefix=PREFIX, include_in_schema=False)
LOGIN_CSRF_COOKIE = "entitle_console_login"
root_router = APIRouter(include_in_schema=False)


@root_router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse(PREFIX, status_code=307)


def _login_page(request: Request, email: str = "", message: str | None = None, status_code: int = 200) -> Response:
    # Before there is a session, the sign-in form's CSRF token is a double-submit cookie: a page on
    # another site can neither read it nor set it, so it cannot sign a browser in to its own account.
    token = secrets.token_urlsafe(32)
    response = render(
        request, None, "login.html", status_code=status_code, email=email, message=message, login_csrf=token
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path=f"{PREFIX}/login",
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request),
    )
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    db: DB,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        message = "this sign-in form has expired or did not come from the console: sign in again"
        return _login_page(request, email, message, status_code=403)
    try:
        token, _ = accounts.sign_in(db, email, password)
    except EntitleError as exc:
        return _login_page(request, email, exc.message, status_code=exc.status_code)
    response = redirect(PREFIX)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{PREFIX}/login")
    response.set_cookie(
        COOKIE,
        accounts.cookie_value(secret_box_of(request), token),
        max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
    )
    return response


@router.post("/logout")
def logout(request: Request, ctx: Own, db: DB) -> Response:
    accounts.sign_out(db, ctx.token)
    response = redirect(f"{PREFIX}/login")
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="lax", secure=cookie_secure(request))
    return response


@router.post("/environment")
def switch_environment(
    request: Request,
    ctx: Own,
    db: DB,
    environment: Annotated[str, Form(max_length=64)],
    back: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    accounts.switch_environment(db, ctx.token, environment)
    return redirect(back if back.startswith(PREFIX) and "//" not in back else PREFIX)


@router.get("")
def overview_page(request: Request, ctx: Page, db: DB) -> Response:
    figures = overview.overview(db, ctx.env_id)
    chart = charts.bar_chart(figures.new_per_day, "New subscriptions per day")
    usage_charts = {
        "reports": charts.bar_chart(figures.reports_per_day, "Usage reports per day"),
        "events": charts.bar_chart(figures.events_per_day, "Events ingested per day"),
    }
    return render(request, ctx, "overview.html", o=figures, chart=chart, usage_charts=usage_charts)


@router.get("/audit-log")
def audit_page(
    request: Request,
    ctx: Page,
    db: DB,
    after: Annotated[str | None, Query(max_length=200)] = None,
    entity_type: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
) -> Response:
    where = audit.AuditFilter(entity_type=entity_type or None, actor=actor or None)
    page = audit.list_entries(db, ctx.env_id, PageRequest(limit=50, after=after), where)
    return render(request, ctx, "audit.html", page=page, entity_type=entity_type or "", actor=actor or "")


__all__ = ["root_router", "router", "session_token"]
