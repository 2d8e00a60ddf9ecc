"""`entitle users ...`: console users from the command line (the first admin, or a forgotten role)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from entitle import actors
from entitle.config import load_settings
from entitle.console import accounts
from entitle.db import Database
from entitle.db.migrate import upgrade
from entitle.errors import EntitleError

users_app = typer.Typer(help="Console users (people who sign in to the admin console).", no_args_is_help=True)


@users_app.command("create")
def create(
    email: Annotated[str, typer.Option(help="The user's email (their sign-in name).")],
    role: Annotated[str, typer.Option(help="admin, editor or viewer.")] = "viewer",
    password: Annotated[
        str | None,
        typer.Option(envvar="ENTITLE_USER_PASSWORD", help="At least 12 characters; asked for when not given."),
    ] = None,
) -> None:
    """Create a console user."""
    if password is None:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            typer.echo("Error: the passwords differ", err=True)
            raise typer.Exit(2)
    settings = load_settings()
    if settings.is_sqlite:
        upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        with actors.acting_as("cli", f"cli:{getpass.getuser()}"):
            user = accounts.create_user(db, email, role, password)
    except EntitleError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"created console user {user.email} ({user.role})")


@users_app.command("list")
def list_users() -> None:
    """List console users and their roles."""
    settings = load_settings()
    db = Database(settings.database_url)
    try:
        for user in accounts.list_users(db):
            typer.echo(f"{user.email}\t{user.role}" + ("\tdisabled" if user.disabled_at else ""))
    finally:
        db.dispose()


def _set_disabled(email: str, disabled: bool) -> None:
    settings = load_settings()
    db = Database(settings.database_url)
    try:
        with actors.acting_as("cli", f"cli:{getpass.getuser()}"):
            user = accounts.set_disabled(db, email, disabled)
    except EntitleError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"{'disabled' if disabled else 'enabled'} console user {user.email}")


@users_app.command("disable")
def disable(email: Annotated[str, typer.Option(help="The user's email.")]) -> None:
    """Disable a console user: their sessions end and they can no longer sign in (never the last admin)."""
    _set_disabled(email, True)


@users_app.command("enable")
def enable(email: Annotated[str, typer.Option(help="The user's email.")]) -> None:
    """Let a disabled console user sign in again."""
    _set_disabled(email, False)
