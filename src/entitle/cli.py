"""The `entitle` command."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from entitle.config import load_settings
from entitle.db import Database
from entitle.db.migrate import upgrade
from entitle.environments.models import KeyKind
from entitle.environments.service import create_key

app = typer.Typer(help="Entitle: entitlements, subscriptions and billing orchestration.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command()
def migrate() -> None:
    """Apply database migrations up to the latest revision."""
    settings = load_settings()
    upgrade(settings.database_url)
    typer.echo(f"database at head: {_redact(settings.database_url)}", err=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (PostgreSQL only).")] = 1,
) -> None:
    """Serve the HTTP API and console."""
    import uvicorn

    settings = load_settings()
    if settings.is_sqlite:
        # The embedded default needs no separate step: bring the schema up to date on start.
        upgrade(settings.database_url)
        workers = 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    typer.echo(f"Entitle listening on http://{host}:{port}", err=True)
    uvicorn.run("entitle.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")


@keys_app.command("create")
def keys_create(
    environment: Annotated[str, typer.Option(help="Environment name; created when missing.")],
    kind: Annotated[KeyKind, typer.Option(help="server: full access; client: read entitlements only.")] = (
        KeyKind.SERVER
    ),
) -> None:
    """Create an API key and print it (only the key, on stdout)."""
    settings = load_settings()
    upgrade(settings.database_url) if settings.is_sqlite else None
    db = Database(settings.database_url)
    try:
        typer.echo(create_key(db, environment, kind))
    finally:
        db.dispose()


@app.command()
def demo(
    environment: Annotated[str, typer.Option(help="Environment to load the demo catalog into.")] = "development",
) -> None:
    """Load the demo catalog (idempotent) and print a server key for it."""
    from entitle.catalog.demo import load_demo

    settings = load_settings()
    if settings.is_sqlite:
        upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        key = load_demo(db, settings, environment)
    finally:
        db.dispose()
    typer.echo(f"Demo catalog loaded into environment '{environment}'.")
    typer.echo(f"Server API key: {key}")
    typer.echo("Try: curl -H 'X-API-KEY: <key>' http://127.0.0.1:8000/api/v1/plans")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
