"""The `entitle` command, the way an operator runs it. `run` starts the real console script; the tests of
what a command does beyond its first run use `invoke` (tests/support/cli.py: the same command, environment
and answer in this process, without paying the interpreter and the app's import again)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
import stigg
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from entitle.db import Database
from entitle.db.migrate import alembic_config
from entitle.environments.models import KeyKind
from entitle.environments.service import authenticate
from tests.conftest import LiveServer
from tests.support.cli import invoke
from tests.support.server import running_server

ENTITLE = Path(sys.executable).parent / "entitle"


def run(
    *args: str, data_dir: Path, database_url: str | None = None, env: Mapping[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script with only ENTITLE_DATA_DIR (and ENTITLE_DATABASE_URL, when given) of this
    process's ENTITLE_/STIGG_ settings, and what `env` adds (a value) or removes (None)."""
    if not ENTITLE.exists():
        pytest.skip(f"{ENTITLE} is not installed (pip install -e .)")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ENTITLE_", "STIGG_"))}
    environ["ENTITLE_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        environ["ENTITLE_DATABASE_URL"] = database_url
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.run([str(ENTITLE), *args], env=environ, capture_output=True, text=True, timeout=120, check=False)


def _heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def _schema(url: str) -> tuple[set[str], set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            versions = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    return versions, tables


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run("--help", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "keys", "demo"):
        assert re.search(rf"\b{command}\b", result.stdout), (command, result.stdout)


def test_keys_create_prints_only_the_key_and_it_has_client_rights(tmp_path: Path) -> None:
    result = run("keys", "create", "--environment", "staging", "--kind", "client", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    key = lines[0]
    assert result.stdout == key + "\n"
    assert key and key == key.strip() and " " not in key

    url = f"sqlite:///{tmp_path / 'entitle.db'}"  # the default database under ENTITLE_DATA_DIR
    with running_server(url, tmp_path) as (base_url, db):
        principal = authenticate(db, key)
        assert principal.environment_name == "staging"
        assert principal.kind is KeyKind.CLIENT
        with httpx.Client(base_url=base_url, headers={"X-API-KEY": key}, timeout=30) as http:
            denied = http.get("/api/v1/features")
            assert denied.status_code == 403, denied.text  # authenticated, but a client key
            assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
        with httpx.Client(base_url=base_url, headers={"X-API-KEY": key + "x"}, timeout=30) as http:
            assert http.get("/api/v1/features").status_code == 401

    # A second key is a different key, for the same environment; the default kind is server.
    second = invoke("keys", "create", "--environment", "staging", data_dir=tmp_path)
    assert second.returncode == 0, second.stderr
    server_key = second.stdout.strip()
    assert server_key != key
    database = Database(url)
    try:
        assert authenticate(database, server_key).kind is KeyKind.SERVER
        assert authenticate(database, server_key).environment_id == authenticate(database, key).environment_id
    finally:
        database.dispose()


def test_keys_create_against_the_configured_database(server: LiveServer, database_url: str, tmp_path: Path) -> None:
    """ENTITLE_DATABASE_URL wins over the data dir, on SQLite and PostgreSQL alike."""
    result = invoke(
        "keys",
        "create",
        "--environment",
        "development",
        "--kind",
        "server",
        data_dir=tmp_path / "unused",
        database_url=database_url,
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    client = server.stigg(key)
    client.v1.features.create_feature(id="from-cli-key", display_name="CLI", feature_type="BOOLEAN")
    # Same environment as the fixture's server key.
    assert [f.id for f in server.stigg().v1.features.list_features()] == ["from-cli-key"]

    args = ("keys", "create", "--environment", "development", "--kind", "client")
    browser = invoke(*args, data_dir=tmp_path / "unused", database_url=database_url)
    assert browser.returncode == 0, browser.stderr
    with pytest.raises(stigg.PermissionDeniedError):
        server.stigg(browser.stdout.strip()).v1.features.list_features()


def test_keys_create_refuses_bad_input_without_a_traceback(tmp_path: Path) -> None:
    bad_name = run("keys", "create", "--environment", "Not Valid", data_dir=tmp_path)  # the real process's stderr
    assert bad_name.returncode == 2
    assert bad_name.stdout == ""
    assert "environment names" in bad_name.stderr
    assert "Traceback" not in bad_name.stderr

    bad_kind = invoke("keys", "create", "--environment", "staging", "--kind", "admin", data_dir=tmp_path)
    assert bad_kind.returncode == 2
    assert bad_kind.stdout == ""


def test_migrate_is_idempotent_from_scratch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'entitle.db'}"
    first = run("migrate", data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    versions, tables = _schema(url)
    assert versions == _heads()
    assert {"environments", "api_keys", "features", "products", "coupons"} <= tables

    key = invoke("keys", "create", "--environment", "development", data_dir=tmp_path).stdout.strip()
    second = invoke("migrate", data_dir=tmp_path)
    assert second.returncode == 0, second.stderr
    assert _schema(url) == (versions, tables)
    database = Database(url)
    try:
        assert authenticate(database, key).environment_name == "development"  # data survives a re-run
    finally:
        database.dispose()


def test_migrate_is_idempotent_on_a_migrated_database(database_url: str, tmp_path: Path) -> None:
    before = _schema(database_url)
    assert before[0] == _heads()
    for _ in range(2):
        result = invoke("migrate", data_dir=tmp_path, database_url=database_url)
        assert result.returncode == 0, result.stderr
        assert _schema(database_url) == before


def test_serve_keeps_idle_connections_longer_than_the_clients_pools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx._config
    import uvicorn

    served: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options, app=app))
    result = invoke("serve", "--port", "8123", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert served["app"] == "entitle.app:create_app" and served["port"] == 8123
    # The server must never be the one to close a connection a client may be reusing right then.
    keep_alive = served["timeout_keep_alive"]
    assert isinstance(keep_alive, int | float)
    assert keep_alive > httpx._config.DEFAULT_LIMITS.keepalive_expiry
    assert keep_alive > 60


def test_a_database_that_cannot_be_reached_is_one_line_and_status_2(tmp_path: Path) -> None:
    """An operator's first `entitle migrate` against PostgreSQL that is not up (or a mistyped URL) printed
    several hundred lines of the driver's traceback; every other refusal is one `Error:` line and status 2."""
    url = "postgresql+psycopg://entitle:hunter2-secret@127.0.0.1:1/entitle"
    for command in (("migrate",), ("jobs", "list")):
        refused = run(*command, data_dir=tmp_path, database_url=url)
        assert refused.returncode == 2, (command, refused.stderr)
        assert refused.stderr.startswith(
            "Error: cannot use the database postgresql+psycopg://***@127.0.0.1:1/entitle: "
        )
        assert "Traceback" not in refused.stderr and "hunter2" not in refused.stderr
        assert len(refused.stderr.splitlines()) == 1 and refused.stdout == ""


def test_serve_says_when_it_ignores_workers_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--workers 3` on SQLite served with one process and said nothing: the operator believed they had three."""
    import uvicorn

    served: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options, app=app))
    result = invoke("serve", "--port", "8124", "--workers", "3", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert served["workers"] == 1
    assert "--workers 3 ignored: SQLite is served by one process" in result.stderr
    quiet = invoke("serve", "--port", "8124", data_dir=tmp_path)
    assert quiet.returncode == 0 and "ignored" not in quiet.stderr
    assert invoke("serve", "--workers", "0", data_dir=tmp_path).returncode == 2
