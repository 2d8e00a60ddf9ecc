"""`entitle webhooks ...`: the outbound webhook endpoints of an environment, from the command line.

Each command calls the service function its HTTP route calls (`entitle.webhooks.service`), so the
rules (URL policy, event types, the secret shown once) are the same. Bad input exits with status 2
and a message on stderr, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from entitle.config import Settings, load_settings
from entitle.db import Database
from entitle.db.migrate import upgrade
from entitle.db.pagination import PageRequest, encode_cursor
from entitle.errors import EntitleError, FailedPrecondition
from entitle.secrets import require_key_for
from entitle.webhooks import service
from entitle.webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from entitle.webhooks.schemas import WebhookCreate, WebhookUpdate

app = typer.Typer(help="Outbound webhook endpoints and their delivery log (our extension).", no_args_is_help=True)

Environment = Annotated[
    str, typer.Option(envvar="ENTITLE_ENVIRONMENT", help="Environment name (created when missing by `create`).")
]
Events = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        help="An event type to send (repeat the option); `create` without it sends every type.",
        show_default=False,
    ),
]

DEFAULT_ENVIRONMENT = "development"
EXCERPT = 60
NEWEST = 2**62  # a cursor above every row id


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)


@contextmanager
def _database(*, migrate: bool = False, encrypts: bool = False) -> Iterator[tuple[Database, Settings]]:
    """The database of the settings (brought to the latest revision first on SQLite with `migrate`); with
    `encrypts`, refused first on PostgreSQL with the secrets' key in the data dir
    (`secrets.require_key_for`), as `entitle serve` refuses it: a secret encrypted with that key is one
    `serve` and the worker could never read."""
    settings = load_settings()
    if encrypts:
        try:
            require_key_for(settings)
        except FailedPrecondition as exc:
            _fail(exc.message)
    if migrate and settings.is_sqlite:
        upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        yield db, settings
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()))
    except EntitleError as exc:
        _fail(exc.message)
    finally:
        db.dispose()


def _environment_id(db: Database, name: str) -> int:
    from entitle.environments.store import environment_by_name

    with db.read() as s:
        env = environment_by_name(s, name)
        if env is None:
            _fail(f"there is no environment named '{name}'")
        return env.pk


def _line(endpoint: WebhookEndpoint) -> str:
    state = "enabled" if endpoint.enabled else "disabled"
    return f"{endpoint.ref_id}\t{state}\t{endpoint.url}\t{','.join(endpoint.event_types or [])}"


@app.command("create")
def create(
    url: Annotated[str, typer.Option(help="Where to POST events (https; see docs/webhooks.md).")],
    environment: Environment = DEFAULT_ENVIRONMENT,
    event: Events = None,
    secret: Annotated[
        str | None, typer.Option(help="The signing secret (whsec_ + base64); generated when absent.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
) -> None:
    """Create an endpoint; prints its id, then its signing secret (shown this once only)."""
    from entitle.environments.service import ensure_environment
    from entitle.secrets import secret_box

    body: dict[str, Any] = {"url": url, "eventTypes": list(event) if event else list(EVENT_TYPES)}
    if secret is not None:
        body["secret"] = secret
    if description is not None:
        body["description"] = description
    body["enabled"] = not disabled
    with _database(migrate=True, encrypts=True) as (db, settings):
        request = WebhookCreate.model_validate(body)
        env_id = ensure_environment(db, environment).pk
        endpoint, signing_secret = service.create_webhook(
            db, env_id, request, box=secret_box(settings.data_dir), allow_private=settings.webhooks_allow_private
        )
    typer.echo(endpoint.ref_id)
    typer.echo(signing_secret)
    typer.echo("the signing secret is shown this once: store it now", err=True)


@app.command("list")
def list_(environment: Environment = DEFAULT_ENVIRONMENT) -> None:
    """List the environment's endpoints: id, enabled/disabled, url, event types (tab-separated)."""
    with _database() as (db, _):
        env_id = _environment_id(db, environment)
        page = PageRequest(limit=100)
        while True:
            result = service.list_webhooks(db, env_id, page)
            for endpoint in result.items:
                typer.echo(_line(endpoint))
            if result.next is None:
                break
            page = PageRequest(limit=100, after=result.next)


@app.command("update")
def update(
    webhook_id: Annotated[str, typer.Argument(help="The endpoint's id (wh_...).")],
    environment: Environment = DEFAULT_ENVIRONMENT,
    url: Annotated[str | None, typer.Option(help="A new URL.")] = None,
    event: Events = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Send events to it, or stop.", show_default=False)
    ] = None,
    description: Annotated[str | None, typer.Option(help="A new note.")] = None,
) -> None:
    """Change an endpoint's URL, event types (the given set replaces the old), description or state."""
    body: dict[str, Any] = {}
    if url is not None:
        body["url"] = url
    if event:
        body["eventTypes"] = list(event)
    if enable is not None:
        body["enabled"] = enable
    if description is not None:
        body["description"] = description
    if not body:
        _fail("nothing to change: pass --url, --event, --enable/--disable or --description")
    with _database() as (db, settings):
        request = WebhookUpdate.model_validate(body)
        env_id = _environment_id(db, environment)
        endpoint = service.update_webhook(
            db, env_id, webhook_id, request, allow_private=settings.webhooks_allow_private
        )
    typer.echo(_line(endpoint))


@app.command("delete")
def delete(
    webhook_id: Annotated[str, typer.Argument(help="The endpoint's id (wh_...).")],
    environment: Environment = DEFAULT_ENVIRONMENT,
) -> None:
    """Delete an endpoint and its delivery log; its pending deliveries are dropped."""
    with _database() as (db, _):
        endpoint = service.delete_webhook(db, _environment_id(db, environment), webhook_id)
    typer.echo(f"deleted {endpoint.ref_id}")


def _delivery_line(row: WebhookDelivery) -> str:
    outcome = "ok" if row.succeeded else "failed"
    status = str(row.status_code) if row.status_code is not None else "-"
    text = row.response_excerpt or row.error or ""  # what the endpoint answered, else why nothing was
    text = " ".join(text.split())
    excerpt = text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"
    return (
        f"{row.pk}\t{row.created_at.isoformat().replace('+00:00', 'Z')}\t{row.event_type}\t{row.event_id}\t"
        f"attempt={row.attempt}\t{outcome}\tstatus={status}\tlatency={row.latency_ms}ms\t{excerpt}"
    )


@app.command("deliveries")
def deliveries(
    webhook_id: Annotated[str, typer.Argument(help="The endpoint's id (wh_...).")],
    environment: Environment = DEFAULT_ENVIRONMENT,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many attempts, newest last.")] = 50,
) -> None:
    """The delivery log, one attempt a line: delivery id, time, event type, event id, attempt,
    ok/failed, status code, latency, and the response excerpt (or the error)."""
    with _database() as (db, _):
        env_id = _environment_id(db, environment)
        newest = PageRequest(limit=limit, before=encode_cursor(NEWEST))  # the last `limit`, oldest first
        rows = service.list_deliveries(db, env_id, webhook_id, newest).items
    for row in rows:
        typer.echo(_delivery_line(row))


@app.command("redeliver")
def redeliver(
    delivery_or_event_id: Annotated[
        str, typer.Argument(help="A delivery id (a number, from `deliveries`) or an event id (evt_...).")
    ],
    environment: Environment = DEFAULT_ENVIRONMENT,
) -> None:
    """Send an event again (same event id), behind the endpoint's pending events: the event of one
    logged attempt, or an event id, to every enabled endpoint whose log holds it (a disabled one is sent
    nothing: refused). Prints the new job ids."""
    with _database() as (db, _):
        env_id = _environment_id(db, environment)
        target = delivery_or_event_id.strip()
        if target.isascii() and target.isdigit() and len(target) <= 18:
            sent = [service.redeliver(db, env_id, int(target))]
        elif target.startswith("evt_"):
            sent = service.redeliver_event(db, env_id, target)
        else:
            _fail(f"'{target}' is neither a delivery id (a number) nor an event id (evt_...)")
    for job, endpoint, event_id in sent:
        typer.echo(f"job {job.pk}\t{endpoint.ref_id}\t{event_id}")
