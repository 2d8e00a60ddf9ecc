"""The FastAPI application: one router per domain, shared error handling, the database on app.state."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

import entitle.http.ids  # noqa: F401  (installs the path-id convertor before any route is built)
from entitle import __version__, domain_events, wiring
from entitle.access.cors import EnvironmentCorsMiddleware
from entitle.access.routes import environment_router, keys_router
from entitle.actors import ActorScope
from entitle.audit.routes import router as audit_router
from entitle.billing.routes import customers_router as customer_billing_router
from entitle.billing.routes import router as integrations_router
from entitle.billing.routes import subscriptions_router as subscription_billing_router
from entitle.catalog.coupons.routes import router as coupons_router
from entitle.catalog.demo import PRODUCT_ID as DEMO_PRODUCT_ID
from entitle.catalog.features.routes import router as features_router
from entitle.catalog.packages.routes import addons_router, plans_router
from entitle.catalog.products.routes import router as products_router
from entitle.config import Settings, load_settings
from entitle.console.install import install as install_console
from entitle.contracts.routes import customers_router as customer_contracts_router
from entitle.contracts.routes import router as contracts_router
from entitle.credits.routes import estimates_router as credit_estimates_router
from entitle.credits.routes import router as credits_router
from entitle.customers.routes import router as customers_router
from entitle.db import Database
from entitle.entitlements.routes import router as entitlements_router
from entitle.entitlements.snapshot import Snapshot
from entitle.events.routes import router as events_router
from entitle.http.errors import error_response, install_error_handlers
from entitle.http.hot_dispatch import dispatch_hot_routes
from entitle.http.ids import EncodedIdsMiddleware
from entitle.http.routing import gate_included_routers
from entitle.jobs.routes import router as jobs_router
from entitle.models import import_all_models
from entitle.paywall.routes import router as paywall_router
from entitle.promotions.routes import router as promotions_router
from entitle.push.feed import SnapshotFeed
from entitle.push.hub import Hub
from entitle.push.routes import router as push_router
from entitle.salesforce.routes import router as salesforce_router
from entitle.secrets import require_key_for
from entitle.subscriptions.routes import customers_router as customer_subscriptions_router
from entitle.subscriptions.routes import router as subscriptions_router
from entitle.usage.routes import router as usage_router
from entitle.webhooks.routes import router as webhooks_router
from entitle.widgets.install import install as install_widgets

ROUTERS = [
    # First: routes are matched in this order, and the entitlement checks and lists are the hot path.
    entitlements_router,
    features_router,
    products_router,
    plans_router,
    addons_router,
    coupons_router,
    customers_router,
    customer_subscriptions_router,
    customer_billing_router,
    promotions_router,
    subscriptions_router,
    subscription_billing_router,
    contracts_router,
    customer_contracts_router,
    usage_router,
    events_router,
    credits_router,
    credit_estimates_router,
    jobs_router,
    integrations_router,
    webhooks_router,
    push_router,
    paywall_router,
    keys_router,
    environment_router,
    audit_router,
    salesforce_router,
]


# How long a thread computing keeps the GIL while another waits for it (Python's default: 5 ms). A
# request's thread gives the GIL up at each database call and waits that long to get it back whenever
# another thread computes (parsing the next batch, measuring it): a transaction of twenty statements
# could hold the SQLite write lock ~100 ms longer than its work. Measured with bench/lock_holds.py on
# 2 CPUs: 0.5 ms halves the median hold and doubles ingestion.
SWITCH_INTERVAL = 0.0005
# Net new container objects that start a collection of the young generation (Python's default: 700). A
# batch of 1,000 events allocates ~3,400 more than it frees while it runs (its events' dicts, rows,
# amounts): at 700 it started ~5 young and ~0.4 middle collections, each walking what the batch still
# held, ~1 ms of CPU per batch (`bench/event_ingest.py --breakdown`'s setup, timed by gc callbacks); at
# 10,000 a collection comes every few dozen batches, when the cycles SQLAlchemy's sessions leave behind
# add up, and walks ~10,000 young objects (a few ms, once).
GC_YOUNG_THRESHOLD = 10_000


def _tune_process() -> None:
    """What a process has loaded once it starts (modules, models, schemas: about 300,000 objects) lives
    as long as it does, yet each full garbage collection walks it all: hundreds of milliseconds, in
    whichever request allocates at the wrong moment, possibly one holding the SQLite write lock.
    Frozen, collections walk only what requests create, and start less often. And threads hand the
    GIL over sooner."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sys.setswitchinterval(SWITCH_INTERVAL)


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    if settings is None:
        # The factory `entitle serve` hands uvicorn (one call per server process): an app started that way
        # without the command refuses a data-dir key on PostgreSQL as the command does.
        settings = load_settings()
        require_key_for(settings)
    import_all_models()
    wiring.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Fed by this process's commits and, through the hub, by everyone else's; it serves nothing
        # until the hub has read the change log once.
        snapshot = app.state.entitlement_snapshot = Snapshot()
        app.state.push_hub.watch(SnapshotFeed(snapshot, app.state.db.url))
        domain_events.on_commit(snapshot.committed)
        app.state.push_hub.start()
        restore_signals = app.state.push_hub.chain_exit_signals()
        if settings.freeze_startup_objects:
            _tune_process()
        # Started after the collection above: it runs in one call that keeps the GIL for 100 ms or more,
        # and a first job claim begun meanwhile held the SQLite write lock for all of it.
        stop = threading.Event()
        thread = None
        if settings.embedded_worker:
            from entitle.jobs.service import Worker

            worker = Worker(app.state.db)
            thread = threading.Thread(target=worker.run_forever, args=(stop,), name="entitle-worker", daemon=True)
            thread.start()
        yield
        app.state.push_hub.stop()
        domain_events.remove_commit_listener(snapshot.committed)
        restore_signals()
        stop.set()
        if thread is not None:
            thread.join(timeout=30)

    app = FastAPI(
        lifespan=lifespan,
        title="Entitle",
        version=__version__,
        description="Entitlements, subscriptions and billing orchestration. Wire-compatible with Stigg REST v1.",
        # Served by the console from vendored assets instead (FastAPI's own pages load them from a CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db or Database(settings.database_url)
    app.state.push_hub = Hub(app.state.db)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            app.state.db.ping()
        except Exception as exc:
            return error_response(503, "UNAVAILABLE", f"database unreachable: {type(exc).__name__}")
        return JSONResponse({"status": "ok"})

    install_console(app)
    install_widgets(app, demo_product_id=DEMO_PRODUCT_ID)
    gate_included_routers(app)
    # The checks and lists, answered ahead of the route table (inside every middleware below).
    dispatch_hot_routes(app)

    app.add_middleware(EncodedIdsMiddleware)
    # Who acts in each request, for the audit log (filled in by the API-key and console-session checks).
    app.add_middleware(ActorScope)
    # Outermost: a preflight is answered before routing, and every response (errors too) gets its CORS headers.
    app.add_middleware(EnvironmentCorsMiddleware)
    return app
