"""Fixtures: every storage-touching test runs on SQLite and on a throwaway PostgreSQL cluster.

`make test` runs the suite in parallel processes (pytest-xdist, `-n`, `--dist worksteal`): each
worker is a separate pytest session, so every session-scoped fixture here and in the sub-folders'
conftest files (the PostgreSQL cluster, the migrated templates, the Stripe emulator, redis) exists
once per worker, started on first use, each on its own free port (tests/support/ports.py); nothing
is shared between workers but the machine. A test must therefore not rely on what another test did,
nor on which tests share its process. worksteal hands each worker a contiguous share of the suite
(whole modules, mostly), so a module's session resources start in one or two workers, not in all.

A new expensive resource (a browser for `@pytest.mark.browser` tests, say) follows the same pattern:
a session-scoped fixture, started on first use in each worker and stopped at the worker's end; its
tests then cost what they cost in one process, divided among the workers.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from tests.support.postgres import HOW_TO_ENABLE, Cluster, start_cluster

if TYPE_CHECKING:
    import httpx
    import stigg
    from sqlalchemy import Engine

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from tests.support.clock import TestClock

# The order xdist hands tests out in: the long ones first, spread over the workers.
pytest_plugins = ["tests.support.schedule", "tests.support.collector"]

# This module imports nothing of the app at its top, and installs the app's wiring only in a process that
# runs tests (`_wired`): xdist's controller process loads it too, and only hands tests out. Fixtures import
# what they start.

# Where the environment asks Python not to write bytecode (PYTHONDONTWRITEBYTECODE, set in some images),
# every process of a run (each xdist worker, each `entitle serve` or CLI subprocess a test starts) would
# compile the app's ~260 modules again, and pytest rewrite every test module again: about 0.4 s of CPU per
# process. The suite writes them (__pycache__ is ignored by git) for this process and those it starts.
if sys.dont_write_bytecode:
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

_db_counter = itertools.count()

# Scratch files (every test's SQLite copy and data dir, the PostgreSQL clusters, Chromium's profiles) go to
# memory when the machine has a tmpfs with room: on a disk every SQLite commit's fsync and every
# CREATE DATABASE's file copy is real I/O, which nothing here tests (CREATE DATABASE from the template
# measured ~0.2 s of PostgreSQL system CPU on ext4 and ~0.015 s on tmpfs). A small /dev/shm (Docker gives
# 64 MB) keeps the default. ENTITLE_TEST_TMPDIR names another directory (e.g. /tmp, to compare).
MEMORY_SCRATCH = Path("/dev/shm")
MEMORY_SCRATCH_ROOM = 2 * 2**30


def _scratch_dir() -> str | None:
    chosen = os.environ.get("ENTITLE_TEST_TMPDIR")
    if chosen:
        return chosen
    try:
        if os.access(MEMORY_SCRATCH, os.W_OK) and shutil.disk_usage(MEMORY_SCRATCH).free >= MEMORY_SCRATCH_ROOM:
            return str(MEMORY_SCRATCH)
    except OSError:
        pass
    return None


if (_scratch := _scratch_dir()) is not None:
    # Set here, before pytest picks its base temp dir (lazily, on first use) and before any server or
    # browser starts: xdist workers and the processes tests start inherit TMPDIR.
    tempfile.tempdir = _scratch
    os.environ["TMPDIR"] = _scratch

# Property tests assert behaviour, not speed: on a loaded CI machine example generation can be slow,
# and a wall-clock deadline or "too slow" health check would fail a correct test. Hypothesis still
# derandomizes under CI, so a failure there reproduces.
settings.register_profile(
    "entitle",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
    database=None if os.environ.get("CI") else settings.default.database,
)
settings.load_profile("entitle")


@pytest.fixture(scope="session", autouse=True)
def _wired() -> None:
    """Services called directly (not through the app) need the domains' reactions and adapters too."""
    from entitle import wiring

    wiring.install()


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashes() -> Iterator[None]:
    """Console passwords hashed with argon2id at the lowest cost in this process (its in-process servers
    included). The real parameters (argon2-cffi's defaults: 64 MiB, 3 passes, 4 lanes) cost ~0.2 s of CPU
    per hash and per sign-in, several hundred times a run, and no test is about how slow a guess is. A hash
    names its own parameters, so `entitle serve` and CLI processes (real parameters) verify this one's
    hashes and the other way round; tests/test_console.py checks the real parameters and the upgrade of a
    hash to the current ones at sign-in."""
    from entitle.console import accounts
    from tests.support.console import CHEAP_HASHER

    real = accounts._hasher
    accounts._hasher = CHEAP_HASHER
    yield
    accounts._hasher = real


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from entitle.db.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster | None]:
    """One cluster per xdist worker (about a second to start, and a worker's tests never wait on
    another worker's load, nor share its database names or connection limit)."""
    from sqlalchemy import create_engine, text

    from entitle.db.migrate import upgrade

    cluster = start_cluster()
    if cluster is None:
        warnings.warn(HOW_TO_ENABLE, stacklevel=1)
        yield None
        return
    engine = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("CREATE DATABASE entitle_template"))
        version = int(conn.execute(text("SHOW server_version_num")).scalar_one())
    engine.dispose()
    # PostgreSQL 15 copies a template block by block through the WAL by default; for a small template
    # on a cluster without fsync, copying its files is about twice as fast and half the CPU.
    cluster.create_options = " STRATEGY FILE_COPY" if version >= 150000 else ""
    upgrade(cluster.url("entitle_template"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_admin(pg_cluster: Cluster) -> Iterator[Engine]:
    """The worker's connection to its cluster's `postgres` database, which creates and drops the
    test databases (one for the session: a new engine and connection per test cost more than the
    CREATE DATABASE)."""
    from sqlalchemy import create_engine

    engine = create_engine(pg_cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.support.postgres import find_pg_bin

    if find_pg_bin() is None:
        terminalreporter.write_line(HOW_TO_ENABLE, yellow=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A fresh, migrated database per test: a copy of a migrated template (fast on both engines)."""
    with _fresh_database(request, request.param, tmp_path, sqlite_template) as url:
        yield url


@contextmanager
def _fresh_database(
    request: pytest.FixtureRequest, engine: str, directory: Path, sqlite_template: Path
) -> Iterator[str]:
    """A migrated database: a copy of the SQLite template, or a PostgreSQL database made from its template."""
    if engine == "sqlite":
        target = directory / "entitle.db"
        shutil.copyfile(sqlite_template, target)
        yield f"sqlite:///{target}"
        return
    from sqlalchemy import text

    cluster: Cluster | None = request.getfixturevalue("pg_cluster")
    if cluster is None:
        pytest.skip(HOW_TO_ENABLE)
    name = f"entitle_test_{next(_db_counter)}"
    admin: Engine = request.getfixturevalue("pg_admin")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE entitle_template{cluster.create_options}"))
    try:
        yield cluster.url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[LiveServer]:
    """One live server (and database) for a whole module, on each engine: for modules whose tests each
    make their own entities (unique ids) on a shared seed, where a server per test would cost more than
    the tests. A test must not rely on what another test of the module did, nor on their order."""
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key
    from tests.support.server import running_server

    directory = tmp_path_factory.mktemp("module-server")
    with (
        _fresh_database(request, request.param, directory, sqlite_template) as url,
        running_server(url, directory) as (base_url, database),
    ):
        yield LiveServer(
            base_url=base_url,
            db=database,
            server_key=create_key(database, "development", KeyKind.SERVER),
            data_dir=directory,
        )


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    from entitle.db import Database

    database = Database(database_url)
    yield database
    database.dispose()


@dataclass
class LiveServer:
    base_url: str
    db: Database
    server_key: str
    data_dir: Path

    def key(self, environment: str = "development", kind: KeyKind | None = None) -> str:
        """A new key of the environment: a server key unless `kind` says otherwise."""
        from entitle.environments.models import KeyKind
        from entitle.environments.service import create_key

        return create_key(self.db, environment, kind if kind is not None else KeyKind.SERVER)

    def http(self, key: str | None = None) -> httpx.Client:
        import httpx

        from tests.support.http import SSL_CONTEXT

        headers = {"X-API-KEY": key if key is not None else self.server_key}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, verify=SSL_CONTEXT)

    def stigg(self, key: str | None = None) -> stigg.Stigg:
        import stigg

        from tests.support.http import SSL_CONTEXT

        # The SDK's own default client, sharing the process's SSL context (see SSL_CONTEXT).
        http = stigg.DefaultHttpxClient(verify=SSL_CONTEXT)
        return stigg.Stigg(api_key=key or self.server_key, base_url=self.base_url, max_retries=0, http_client=http)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key
    from tests.support.server import running_server

    with running_server(database_url, tmp_path) as (base_url, database):
        yield LiveServer(
            base_url=base_url,
            db=database,
            server_key=create_key(database, "development", KeyKind.SERVER),
            data_dir=tmp_path,
        )


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


@pytest.fixture
def client(server: LiveServer) -> stigg.Stigg:
    return server.stigg()


@pytest.fixture
def test_clock() -> Iterator[TestClock]:
    """Freeze Entitle's clock at a known instant; the test moves it with `advance`."""
    from tests.support.clock import TestClock

    moved = TestClock()
    moved.install()
    yield moved
    moved.uninstall()


# --- browsers -------------------------------------------------------------------------------------

# Debian's `chromium` package (.ci/run installs it): Playwright drives it instead of downloading a build.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module (and xdist worker), shut at the module's end: Playwright's
    sync API keeps an event loop running in the thread that started it, so a browser outliving its module
    would break every later `asyncio.run` of that worker (the async SDK tests). Launching costs ~1 s; a
    page is cheap. Tests using it carry `@pytest.mark.browser`;
    skipped (saying why) only where /usr/bin/chromium is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A page in a fresh browser context (its own cookies and storage), closed after the test."""
    context = chromium.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()
