"""The `entitle` command."""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from entitle.config import Settings, load_settings
from entitle.db import Database
from entitle.db.migrate import upgrade
from entitle.errors import FailedPrecondition
from entitle.secrets import require_key_for

if TYPE_CHECKING:
    from entitle.billing.service import IntegrationView
from entitle import wiring
from entitle.access import cli as access_cli
from entitle.console import cli as console_cli
from entitle.salesforce import cli as salesforce_cli
from entitle.webhooks import cli as webhooks_cli

# The demo admin `entitle demo` creates: for a local try-out only (README, "The console").
DEMO_ADMIN_EMAIL = "admin@example.com"
DEMO_ADMIN_PASSWORD = "entitle-demo-admin"


class _Entitle(typer.Typer):
    """The command, answering a database it cannot reach (a wrong `ENTITLE_DATABASE_URL`, PostgreSQL not up
    yet: an operator's first run) with one line and exit status 2, as every other refusal, instead of
    several hundred lines of traceback from inside the driver."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        try:
            return super().__call__(*args, **kwargs)
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
            url = _redact(load_settings().database_url)
            typer.echo(f"Error: cannot use the database {url}: {reason[0]}", err=True)
            raise SystemExit(2) from None


app = _Entitle(help="Entitle: entitlements, subscriptions and billing orchestration.", no_args_is_help=True)
app.add_typer(access_cli.keys_app, name="keys")
app.add_typer(access_cli.environments_app, name="environments")
jobs_app = typer.Typer(
    help="The durable job queue (side effects and scheduled lifecycle events).", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")
integrations_app = typer.Typer(help="Billing provider integrations (our extension).", no_args_is_help=True)
app.add_typer(integrations_app, name="integrations")
app.add_typer(webhooks_cli.app, name="webhooks")
app.add_typer(console_cli.users_app, name="users")
app.add_typer(salesforce_cli.app, name="salesforce")


@app.callback()
def _wire() -> None:
    """Every command runs with the domains' reactions and adapters installed."""
    wiring.install()


@app.command()
def migrate() -> None:
    """Apply database migrations up to the latest revision."""
    settings = load_settings()
    try:
        upgrade(settings.database_url)
    except FailedPrecondition as exc:  # a migration that encrypts stored secrets, without the key (on PostgreSQL)
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"database at head: {_redact(settings.database_url)}", err=True)


# How long an idle client connection stays open. uvicorn's default (5 s) equals httpx's own pool expiry
# (5 s), which the SDKs, the official client among them, use: a request sent on a connection idle for
# just under 5 s could meet the server closing it and fail with "Server disconnected". Longer than the
# clients' and than the 60 s idle timeout of common load balancers, so the client side lets go first.
KEEP_ALIVE_SECONDS = 65


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (PostgreSQL only).")] = 1,
) -> None:
    """Serve the HTTP API and console."""
    import uvicorn

    settings = load_settings()
    _require_key_apart(settings)
    if settings.is_sqlite:
        # The embedded default needs no separate step: bring the schema up to date on start.
        upgrade(settings.database_url)
        if workers > 1:  # said, not silently dropped: the operator asked for more processes
            note = f"Note: --workers {workers} ignored: SQLite is served by one process (PostgreSQL for more)"
            typer.echo(note, err=True)
        workers = 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    typer.echo(f"Entitle listening on http://{host}:{port}", err=True)
    typer.echo(f"Console: http://{host}:{port}/console  (API docs: http://{host}:{port}/docs)", err=True)
    if settings.demo_page:
        typer.echo(
            f"Widgets demo: http://{host}:{port}/demo  (pricing table, checkout, portal: docs/widgets.md)", err=True
        )
    uvicorn.run(
        "entitle.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


@app.command()
def demo(
    environment: Annotated[str, typer.Option(help="Environment to load the demo catalog into.")] = "development",
) -> None:
    """Load the demo catalog (idempotent) and print a server key for it."""
    from entitle.catalog.demo import PRODUCT_ID, load_demo
    from entitle.console.accounts import ensure_user
    from entitle.secrets import secret_box
    from entitle.widgets import demo as widgets_demo

    settings = load_settings()
    _require_key_apart(settings)  # before anything is written: `serve` must be able to read the signing secret
    if settings.is_sqlite:
        upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        key = load_demo(db, settings, environment)
        created = ensure_user(db, DEMO_ADMIN_EMAIL, "admin", DEMO_ADMIN_PASSWORD)
        if environment == widgets_demo.ENVIRONMENT:  # what /demo shows: its GET makes nothing
            widgets_demo.prepare(db, secret_box(settings.data_dir), settings.data_dir, PRODUCT_ID)
    finally:
        db.dispose()
    typer.echo(f"Demo catalog loaded into environment '{environment}'.")
    typer.echo(
        f"Console: {settings.console_base_url}/console  sign in as {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD}"
        + ("" if created else " (the demo admin existed already: its password is as you left it)")
    )
    typer.echo(f"Server API key: {key}")
    typer.echo(f"Try: curl -H 'X-API-KEY: <key>' {settings.console_base_url}/api/v1/plans")
    typer.echo(
        "Browser (client) keys read a customer's entitlements only with a customer token your backend signs\n"
        f"  (docs/customer-tokens.md): entitle keys create --environment {environment} --kind client\n"
        f"  and the signing secret: entitle keys signing-secret --environment {environment}"
    )


def _require_key_apart(settings: Settings) -> None:
    """On PostgreSQL, the commands that encrypt or decrypt stored secrets refuse a key in the data dir
    (`secrets.require_key_for`), before they write anything."""
    try:
        require_key_for(settings)
    except FailedPrecondition as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from None


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run every due job, then exit.")] = False,
    lease_seconds: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="ENTITLE_WORKER_LEASE_SECONDS",
            help="How long a claimed job is held: a worker that dies holding it frees it after this long.",
        ),
    ] = 300,
) -> None:
    """Run jobs: provider calls, webhooks, scheduled lifecycle events. Several may run at once on PostgreSQL."""
    import signal
    import threading
    from datetime import timedelta

    from entitle.jobs.service import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    _require_key_apart(settings)
    db = Database(settings.database_url)
    runner = Worker(db, lease=timedelta(seconds=lease_seconds))
    try:
        if once:
            typer.echo(f"ran {runner.drain()} job(s)", err=True)
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        typer.echo(f"worker {runner.worker_id} started", err=True)
        runner.run_forever(stop)
    finally:
        db.dispose()


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Comma list: PENDING,RUNNING,SUCCEEDED,DEAD,DISCARDED.")] = "DEAD",
    limit: Annotated[int, typer.Option(min=1, max=100)] = 50,
) -> None:
    """List jobs (dead ones by default) with their last error."""
    from entitle.db.pagination import PageRequest
    from entitle.jobs.models import JOB_STATUSES
    from entitle.jobs.service import list_jobs

    statuses = [s.strip().upper() for s in status.split(",") if s.strip()] if status else None
    unknown = [s for s in statuses or () if s not in JOB_STATUSES]
    if unknown:  # an empty list would read as "no such jobs": FAILED is a natural guess for DEAD
        typer.echo(f"Error: unknown status {', '.join(unknown)}; expected {', '.join(JOB_STATUSES)}", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    db = Database(settings.database_url)
    try:
        for job in list_jobs(db, None, PageRequest(limit=limit), statuses).items:
            error = (job.last_error or "").splitlines()[0:1]
            typer.echo(f"{job.pk}\t{job.status}\t{job.kind}\tattempts={job.attempts}\t{error[0] if error else ''}")
    finally:
        db.dispose()


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[int, typer.Argument(help="The job's id, as `entitle jobs list` shows it.")]) -> None:
    """Give a dead job a fresh set of attempts."""
    from entitle.errors import EntitleError
    from entitle.jobs.service import retry_job

    settings = load_settings()
    db = Database(settings.database_url)
    try:
        job = retry_job(db, None, job_id)
    except EntitleError as exc:  # an unknown job, or one that is not dead: a usage error, not a crash
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"job {job.pk} is {job.status} again")


@jobs_app.command("discard")
def jobs_discard(job_id: Annotated[int, typer.Argument(help="The job's id, as `entitle jobs list` shows it.")]) -> None:
    """Give up on a pending or dead job: it never runs, and the billing information it carried is erased."""
    from entitle.errors import EntitleError
    from entitle.jobs.service import discard_job

    settings = load_settings()
    db = Database(settings.database_url)
    try:
        job = discard_job(db, None, job_id)
    except EntitleError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"job {job.pk} is {job.status}")


class Vendor(enum.StrEnum):
    stripe = "stripe"


def _environment_pk(db: Database, name: str) -> int:
    """The existing environment of that name (a usage error when there is none)."""
    from entitle.environments.store import environment_by_name

    with db.read() as s:
        env = environment_by_name(s, name)
        if env is None:
            typer.echo(f"Error: environment '{name}' does not exist", err=True)
            raise typer.Exit(2)
        return env.pk


def _describe(view: IntegrationView) -> str:
    row = view.row
    flags = [
        f"default={'yes' if view.is_default else 'no'}",
        f"sync-customers={'on' if row.sync_customers else 'off'}",
        f"sync-subscriptions={'on' if row.sync_subscriptions else 'off'}",
        f"tax={'on' if row.tax_enabled else 'off'}",
        f"webhook-secret={'set' if row.webhook_secret_encrypted else 'missing'}",
        f"settlement-hours={row.payment_settlement_hours}",
        f"publishable-key={row.publishable_key or 'missing'}",
    ]
    return "\t".join([row.ref_id, row.vendor, row.secret_key_hint, "live" if row.livemode else "test", *flags])


@integrations_app.command("connect")
def integrations_connect(
    vendor: Annotated[Vendor, typer.Argument(help="The billing provider.")],
    environment: Annotated[str, typer.Option(help="Environment name; created when missing.")],
    secret_key: Annotated[
        str, typer.Option(envvar="ENTITLE_STRIPE_SECRET_KEY", help="sk_test_... (live keys on production only).")
    ],
    webhook_secret: Annotated[
        str | None, typer.Option(envvar="ENTITLE_STRIPE_WEBHOOK_SECRET", help="whsec_... of the webhook endpoint.")
    ] = None,
    api_base: Annotated[str | None, typer.Option(help="The provider API's address (tests and proxies only).")] = None,
    integration_id: Annotated[
        str | None,
        typer.Option(
            "--id", help="Update (or revive) this integration. Without: the one with the same key, else a new one."
        ),
    ] = None,
    default: Annotated[
        bool | None,
        typer.Option("--default/--no-default", help="Make it the environment's default integration (or not)."),
    ] = None,
    sync_customers: Annotated[
        bool | None, typer.Option("--sync-customers/--no-sync-customers", help="Create customers at the provider.")
    ] = None,
    sync_subscriptions: Annotated[
        bool | None,
        typer.Option("--sync-subscriptions/--no-sync-subscriptions", help="Create subscriptions at the provider."),
    ] = None,
    tax: Annotated[bool | None, typer.Option("--tax/--no-tax", help="Stripe Tax (automatic tax).")] = None,
    payment_settlement_hours: Annotated[
        int | None, typer.Option(help="Hours a new paid subscription may wait for its first payment (1-720).")
    ] = None,
    publishable_key: Annotated[
        str | None,
        typer.Option(
            envvar="ENTITLE_STRIPE_PUBLISHABLE_KEY", help="pk_test_... / pk_live_... for the widgets' Stripe.js."
        ),
    ] = None,
) -> None:
    """Connect an integration (again: update it; settings not given keep their values); prints its id."""
    from pydantic import ValidationError

    from entitle.billing.schemas import IntegrationIn
    from entitle.billing.service import connect
    from entitle.environments.service import ensure_environment
    from entitle.errors import EntitleError

    settings = load_settings()
    _require_key_apart(settings)  # the keys are stored encrypted: `serve` must be able to read them
    if settings.is_sqlite:
        upgrade(settings.database_url)
    db = Database(settings.database_url)
    given = {
        "id": integration_id,
        "webhook_secret": webhook_secret,
        "api_base": api_base,
        "is_default": default,
        "sync_customers": sync_customers,
        "sync_subscriptions": sync_subscriptions,
        "tax_enabled": tax,
        "payment_settlement_hours": payment_settlement_hours,
        "publishable_key": publishable_key,
    }
    try:
        body = IntegrationIn(
            vendor_identifier=vendor.value.upper(),
            api_secret_key=secret_key,
            **{name: value for name, value in given.items() if value is not None},
        )
        view = connect(db, settings.data_dir, ensure_environment(db, environment).pk, body)
    except ValidationError as exc:  # named by the option given, not the field ("String should have ...": which?)
        problems = (f"{_CONNECT_OPTIONS.get(str(e['loc'][0]), str(e['loc'][0]))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"Error: {'; '.join(problems)}", err=True)
        raise typer.Exit(2) from None
    except EntitleError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(view.row.ref_id)
    typer.echo(f"connected {_describe(view)} to environment '{environment}'", err=True)


# `IntegrationIn`'s fields by the `integrations connect` option that sets each.
_CONNECT_OPTIONS = {
    "id": "--id",
    "api_secret_key": "--secret-key",
    "webhook_secret": "--webhook-secret",
    "api_base": "--api-base",
    "payment_settlement_hours": "--payment-settlement-hours",
    "publishable_key": "--publishable-key",
}


@integrations_app.command("list")
def integrations_list(
    environment: Annotated[str, typer.Option(help="Environment name.")],
) -> None:
    """List the environment's connected integrations, one a line: id, vendor, key hint, mode, settings."""
    from entitle.billing.service import list_integrations

    settings = load_settings()
    db = Database(settings.database_url)
    try:
        for view in list_integrations(db, _environment_pk(db, environment)):
            typer.echo(_describe(view))
    finally:
        db.dispose()


@integrations_app.command("remove")
def integrations_remove(
    integration_id: Annotated[str, typer.Argument(help="The integration's id, as `entitle integrations list` shows.")],
    environment: Annotated[str, typer.Option(help="Environment name.")],
) -> None:
    """Disconnect one integration: its sync stops; links and the provider's objects stay (docs/stripe.md)."""
    from entitle.billing.service import remove
    from entitle.errors import EntitleError

    settings = load_settings()
    db = Database(settings.database_url)
    try:
        view = remove(db, _environment_pk(db, environment), integration_id)
    except EntitleError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"removed {view.row.ref_id}")
