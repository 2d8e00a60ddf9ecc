"""`entitle keys ...` and `entitle environments ...`: API keys, the customer-token signing secret and an
environment's access settings, from the command line. Bad input exits with status 2 and a message on
stderr, never a traceback; what a script wants (a key, a secret) is the only thing on stdout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, NoReturn

import typer

from entitle.config import Settings, load_settings
from entitle.db import Database
from entitle.db.migrate import upgrade
from entitle.db.pagination import PageRequest
from entitle.environments import access, service
from entitle.environments.access import EnvironmentSettings
from entitle.environments.models import KeyKind
from entitle.errors import EntitleError, FailedPrecondition
from entitle.secrets import require_key_for, secret_box

keys_app = typer.Typer(help="API keys and the customer-token signing secret.", no_args_is_help=True)
environments_app = typer.Typer(
    help="An environment's access settings: customer tokens, allowed browser origins.", no_args_is_help=True
)

Environment = Annotated[str, typer.Option(help="Environment name.")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)


@contextmanager
def _database(*, encrypts: bool = False) -> Iterator[tuple[Database, Settings]]:
    """The database of the settings; with `encrypts`, refused first on PostgreSQL with the secrets' key in
    the data dir (`secrets.require_key_for`), as `entitle serve` refuses it: a secret encrypted with that
    key is one `serve` could never read."""
    settings = load_settings()
    if encrypts:
        try:
            require_key_for(settings)
        except FailedPrecondition as exc:
            _fail(exc.message)
    if settings.is_sqlite:  # the embedded default needs no separate migrate step
        upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        yield db, settings
    except EntitleError as exc:
        _fail(exc.message)
    finally:
        db.dispose()


def _when(value: datetime | None, never: str = "never") -> str:
    return value.isoformat(timespec="seconds") if value is not None else never


@keys_app.command("create")
def keys_create(
    environment: Annotated[str, typer.Option(help="Environment name; created when missing.")],
    kind: Annotated[KeyKind, typer.Option(help="server: full access; client: read entitlements only.")] = (
        KeyKind.SERVER
    ),
) -> None:
    """Create an API key and print it (only the key, on stdout)."""
    with _database() as (db, _):
        typer.echo(service.create_key(db, environment, kind))


@keys_app.command("list")
def keys_list(
    environment: Annotated[str | None, typer.Option(help="Only this environment's keys.")] = None,
    include_revoked: Annotated[bool, typer.Option("--include-revoked/--active-only")] = True,
) -> None:
    """List keys, one a line: id, prefix, kind, environment, created, last used, revoked."""
    with _database() as (db, _):
        env_pk = None if environment is None else service.environment_pk(db, environment)
        page = PageRequest(limit=100)
        while True:
            found = service.list_keys(db, page, environment_id=env_pk, include_revoked=include_revoked)
            for view in found.items:
                key = view.key
                typer.echo(
                    "\t".join(
                        [
                            str(key.pk),
                            key.prefix + "...",
                            key.kind.value,
                            view.environment_name,
                            f"created={_when(key.created_at)}",
                            f"last-used={_when(key.last_used_at)}",
                            f"revoked={_when(key.revoked_at, 'no')}",
                        ]
                    )
                )
            if found.next is None:
                break
            page = PageRequest(limit=100, after=found.next)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id (as `entitle keys list` shows it), or the key itself.")],
) -> None:
    """Revoke a key: every server process refuses it at once (the entitlement and event routes within 1 s)."""
    with _database() as (db, _):
        view = service.revoke_key(db, key) if key.isdigit() else service.revoke_raw_key(db, key)
    typer.echo(
        f"revoked key {view.key.pk} ({view.key.prefix}...) of environment '{view.environment_name}' "
        f"at {_when(view.key.revoked_at)}",
        err=True,
    )


@keys_app.command("signing-secret")
def keys_signing_secret(
    environment: Environment,
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace the secret with a new one.")] = False,
    grace_hours: Annotated[
        float,
        typer.Option(min=0, max=720, help="With --rotate: how long tokens signed with the old secret stay valid."),
    ] = 24,
) -> None:
    """Print the secret your backend signs customer tokens with (made on first use; docs/customer-tokens.md)."""
    with _database(encrypts=True) as (db, settings):
        box = secret_box(settings.data_dir)
        if not rotate:
            typer.echo(access.signing_secret(db, box, environment))
            return
        secret, previous_until = access.rotate_signing_secret(db, box, environment, timedelta(hours=grace_hours))
    typer.echo(secret)
    if previous_until is not None:
        typer.echo(f"tokens signed with the previous secret stay valid until {_when(previous_until)}", err=True)
    else:
        typer.echo("tokens signed with a previous secret are refused from now on", err=True)


def _describe(s: EnvironmentSettings) -> list[str]:
    secret = (
        f"created {_when(s.signing_secret_created_at)}"
        if s.signing_secret_created_at is not None
        else f"none yet (entitle keys signing-secret --environment {s.name})"
    )
    previous = s.previous_signing_secret_expires_at
    return [
        f"name\t{s.name}",
        f"production\t{'yes' if s.is_production else 'no'}",
        f"customer-tokens\t{'required' if s.customer_tokens_required else 'OFF (client keys read any customer)'}",
        f"allowed-origins\t{', '.join(s.allowed_origins) or 'none'}",
        f"signing-secret\t{secret}",
        f"previous-signing-secret\t{'valid until ' + _when(previous) if previous is not None else 'none'}",
    ]


@environments_app.command("show")
def environments_show(environment: Environment) -> None:
    """Show the environment's access settings."""
    with _database() as (db, _):
        shown = access.settings_by_name(db, environment)
    typer.echo("\n".join(_describe(shown)))


@environments_app.command("update")
def environments_update(
    environment: Environment,
    customer_tokens: Annotated[
        bool | None,
        typer.Option(
            "--customer-tokens/--no-customer-tokens",
            help="Require a customer token on client-key requests about a customer (off: local development only).",
        ),
    ] = None,
    allowed_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-origin",
            help="A browser origin allowed to call (https://app.example.com); repeat it. Replaces the list.",
            show_default=False,
        ),
    ] = None,
    no_allowed_origins: Annotated[bool, typer.Option("--no-allowed-origins", help="Allow no origin.")] = False,
) -> None:
    """Change the environment's access settings; settings not given keep their values."""
    if allowed_origin and no_allowed_origins:
        _fail("pass --allowed-origin or --no-allowed-origins, not both")
    origins = [] if no_allowed_origins else allowed_origin
    with _database() as (db, _):
        shown = access.update_settings(
            db, environment, customer_tokens_required=customer_tokens, allowed_origins=origins
        )
    typer.echo("\n".join(_describe(shown)))
    if not shown.customer_tokens_required:
        typer.echo("warning: customer tokens are off: anyone with a client key reads any customer's data", err=True)
