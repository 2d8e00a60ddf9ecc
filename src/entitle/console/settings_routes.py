"""Settings: the environment's API keys (a new key is shown once) and the console's users (admins only)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from entitle.console import accounts
from entitle.console.rules import Permission, Role
from entitle.console.web import PREFIX, Administer, Page, redirect, render
from entitle.db.pagination import PageRequest
from entitle.environments import service as environments
from entitle.environments.models import KeyKind
from entitle.errors import InvalidArgument, PermissionDenied
from entitle.http.deps import DB

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _settings(request: Request, ctx: Page, db: DB, new_key: str | None = None) -> Response:
    if not ctx.may(Permission.ADMINISTER):
        raise PermissionDenied("settings (API keys and users) are for admins")
    keys = environments.list_keys(db, PageRequest(limit=100), environment_id=ctx.env_id).items
    users = accounts.list_users(db)
    return render(request, ctx, "settings.html", keys=keys, users=users, roles=list(Role), new_key=new_key)


@router.get("/settings")
def settings_page(request: Request, ctx: Page, db: DB) -> Response:
    return _settings(request, ctx, db)


@router.post("/settings/keys")
def create_key(request: Request, ctx: Administer, db: DB, kind: Annotated[str, Form(max_length=16)]) -> Response:
    try:
        chosen = KeyKind(kind)
    except ValueError:
        raise InvalidArgument("kind must be server or client") from None
    raw = environments.create_key(db, ctx.environment.name, chosen)
    # Shown in this response only: only its hash is stored.
    return _settings(request, ctx, db, new_key=raw)


@router.post("/settings/keys/{key_id}/revoke")
def revoke_key(ctx: Administer, db: DB, key_id: str) -> Response:
    environments.revoke_key(db, key_id, environment_id=ctx.env_id)
    return redirect(f"{PREFIX}/settings")


@router.post("/settings/users")
def create_user(
    ctx: Administer,
    db: DB,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form(max_length=16)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    accounts.create_user(db, email, role, password)
    return redirect(f"{PREFIX}/settings")


@router.post("/settings/users/role")
def change_role(
    ctx: Administer,
    db: DB,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form(max_length=16)],
) -> Response:
    accounts.change_role(db, email, role, by_user_pk=ctx.user.user_pk)
    return redirect(f"{PREFIX}/settings")


@router.post("/settings/users/disabled")
def set_disabled(
    ctx: Administer,
    db: DB,
    email: Annotated[str, Form(max_length=320)],
    disabled: Annotated[Literal["true", "false"], Form()],
) -> Response:
    accounts.set_disabled(db, email, disabled == "true", by_user_pk=ctx.user.user_pk)
    return redirect(f"{PREFIX}/settings")
