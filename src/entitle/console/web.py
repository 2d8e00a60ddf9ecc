"""What every console handler shares: the signed-in user (from the session cookie), the environment it
works in, the CSRF and role checks of state-changing forms, and rendering (Jinja2, HTML errors).

Only `/console` routes depend on any of this; the `/api/` routes never read the cookie.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError

from entitle import actors
from entitle.console import accounts, assets, rules
from entitle.console.accounts import Signed
from entitle.console.rules import Permission
from entitle.environments.models import Environment
from entitle.errors import EntitleError, InvalidArgument, PermissionDenied
from entitle.http.deps import DB, secret_box_of

HERE = Path(__file__).resolve().parent
COOKIE = "entitle_console"
PREFIX = "/console"
templates = Jinja2Templates(directory=str(HERE / "templates"))


def plain_number(value: object) -> str:
    """A stored amount as people write it: exact, no exponent, no trailing zeros ("1000", "2.5")."""
    if value is None:
        return ""
    number = Decimal(str(value)).normalize()
    return format(number, "f")


templates.env.filters["num"] = plain_number
templates.env.globals.update(
    HTMX_JS=assets.HTMX_JS, CONSOLE_CSS=assets.CONSOLE_CSS, PREFIX=PREFIX, dashboard_url=rules.dashboard_url
)


class LoginRequired(Exception):
    """No valid session: pages send the browser to the sign-in form."""


@dataclass(frozen=True)
class Console:
    """A console request: who, in which environment (and which ones exist)."""

    user: Signed
    environment: Environment
    environments: list[Environment]
    token: str

    @property
    def env_id(self) -> int:
        return self.environment.pk

    def may(self, permission: Permission) -> bool:
        return self.user.may(permission)


def session_token(request: Request) -> str | None:
    return accounts.token_of(secret_box_of(request), request.cookies.get(COOKIE))


def _default_environment(environments: list[Environment]) -> Environment | None:
    # Start where mistakes are cheap: a non-production environment, "development" if there is one.
    by_name = {e.name: e for e in environments}
    return (
        by_name.get("development")
        or next((e for e in environments if not e.is_production), None)
        or (environments[0] if environments else None)
    )


def console(request: Request, db: DB) -> Console:
    token = session_token(request)
    user = accounts.session_of(db, token)
    if user is None or token is None:
        raise LoginRequired()
    environments = accounts.list_environments(db)
    env = next((e for e in environments if e.pk == user.environment_id), None) or _default_environment(environments)
    if env is None:
        raise PermissionDenied("no environment exists yet: run `entitle demo` or `entitle keys create`")
    actor = actors.current()
    if actor is not None:
        actor.identify("user", user.email, env.pk)
    return Console(user, env, environments, token)


Page = Annotated[Console, Depends(console)]


def _checked(permission: Permission) -> Callable[..., Console]:
    def check(ctx: Page, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Console:
        if not secrets.compare_digest(csrf_token.encode(), ctx.user.csrf_token.encode()):
            raise CsrfRefused("this form has expired or did not come from the console: reload the page and retry")
        if not ctx.may(permission):
            raise PermissionDenied(f"your role ({ctx.user.role.value}) may not do this")
        return ctx

    return check


class CsrfRefused(PermissionDenied):
    code = "CSRF_TOKEN_INVALID"


# A state-changing form: a valid CSRF token, and the role's permission.
Edit = Annotated[Console, Depends(_checked(Permission.EDIT))]
Administer = Annotated[Console, Depends(_checked(Permission.ADMINISTER))]
# State-changing forms any signed-in user may send (switching environment, signing out).
Own = Annotated[Console, Depends(_checked(Permission.READ))]


def render(request: Request, ctx: Console | None, template: str, status_code: int = 200, **values: Any) -> Response:
    context: dict[str, Any] = {"ctx": ctx, "Permission": Permission, **values}
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(path: str) -> RedirectResponse:
    # 303: the browser follows a form's POST with a GET.
    return RedirectResponse(path, status_code=303)


def install(app: FastAPI) -> None:
    """HTML answers for console paths; every other path keeps the API's JSON error envelope."""
    api_domain = app.exception_handlers[EntitleError]
    api_validation = app.exception_handlers[RequestValidationError]

    def _in_console(request: Request) -> bool:
        return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")

    async def domain(request: Request, exc: Exception) -> Response:
        if not _in_console(request) or not isinstance(exc, EntitleError):
            return await _call(api_domain, request, exc)
        return error_page(request, exc.status_code, exc.code, exc.message)

    async def validation(request: Request, exc: Exception) -> Response:
        if not _in_console(request) or not isinstance(exc, RequestValidationError):
            return await _call(api_validation, request, exc)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'form'}: {e.get('msg', '')}" for e in exc.errors()
        )
        return error_page(request, 400, "INVALID_ARGUMENT", problems)

    async def login_required(request: Request, exc: Exception) -> Response:
        return redirect(f"{PREFIX}/login")

    app.add_exception_handler(EntitleError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(LoginRequired, login_required)


async def _call(handler: Callable[[Request, Exception], Any], request: Request, exc: Exception) -> Response:
    result = handler(request, exc)
    if isinstance(result, Awaitable):
        result = await result
    assert isinstance(result, Response)
    return result


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    """A refused action: the same code and message the API gives, on a page with the way back."""
    ctx: Console | None = None
    referer = request.headers.get("referer") or ""
    back = referer if referer.startswith(str(request.base_url)) else PREFIX
    return render(request, ctx, "error.html", status_code=status, code=code, message=message, back=back)


M = TypeVar("M", bound=BaseModel)


def parsed(model: type[M], data: dict[str, Any], *, blanks_clear: bool = False) -> M:
    """The API's request model, validated from form fields: its refusal, as the API would word it.
    Blank fields are left out (the API's default applies) unless `blanks_clear`: then an editor's
    emptied field is sent as null and clears what was stored."""
    try:
        return model.model_validate(data if blanks_clear else {k: v for k, v in data.items() if v not in (None, "")})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "form"
        raise InvalidArgument(f"{where}: {first.get('msg', 'invalid value')}") from None


def cookie_secure(request: Request) -> bool:
    """Secure cookies when the console is reached over https (directly, or behind a proxy that
    terminates TLS for the public URL the operator configured)."""
    return request.url.scheme == "https" or request.app.state.settings.console_base_url.startswith("https://")
