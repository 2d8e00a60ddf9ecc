"""Files and addresses (issue #11, defect 9): the data dir is 0700 and SQLite files 0600; on PostgreSQL
`entitle serve` wants the secret key apart from the data dir; a webhook URL's port must be a real port."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import text

from entitle.db import Database
from entitle.db.migrate import upgrade
from entitle.secrets import ENV_VAR, FILE_ENV_VAR, secret_box
from entitle.webhooks.schemas import WebhookCreate
from tests.conftest import LiveServer
from tests.support.cli import invoke
from tests.support.server import start_serve


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems run with (022): files are world-readable unless Entitle says otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("usual_umask")
def test_sqlite_database_files_are_private(tmp_path: Path) -> None:
    """SQLite only: on PostgreSQL the server keeps the files (see the serve test below)."""
    data_dir = tmp_path / "fresh" / "data"
    url = f"sqlite:///{data_dir / 'entitle.db'}"
    upgrade(url)  # what `entitle migrate` and `entitle serve` do first
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "entitle.db") == 0o600
    db = Database(url)
    try:
        with db.transaction() as s:
            s.connection().exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
            s.connection().exec_driver_sql("INSERT INTO scratch VALUES (1)")
        companions = [p for p in data_dir.iterdir() if p.name.startswith("entitle.db-")]
        assert companions, "WAL mode leaves -wal/-shm files beside the database"
        for path in companions:
            assert _mode(path) == 0o600, path
    finally:
        db.dispose()

    # A database an older version left world-readable is tightened when opened.
    (data_dir / "entitle.db").chmod(0o644)
    Database(url).dispose()
    assert _mode(data_dir / "entitle.db") == 0o600


@pytest.mark.usefixtures("usual_umask")
def test_the_command_line_makes_a_private_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "entitle-data"
    # In this process, under its umask (tests/test_demo.py runs `entitle demo` as the real console script).
    result = invoke("demo", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "entitle keys signing-secret --environment development" in result.stdout
    assert _mode(data_dir) == 0o700
    for name in ("entitle.db", "demo-development-server-key"):
        assert _mode(data_dir / name) == 0o600, name


@pytest.mark.usefixtures("usual_umask")
def test_a_key_file_apart_from_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    key_file = tmp_path / "keys" / "entitle.key"
    monkeypatch.setenv(FILE_ENV_VAR, str(key_file))
    box = secret_box(tmp_path / "data")
    assert _mode(key_file.parent) == 0o700 and _mode(key_file) == 0o600
    assert not (tmp_path / "data" / "secret.key").exists()
    assert secret_box(tmp_path / "elsewhere").decrypt(box.encrypt("s3cret")) == "s3cret"  # the file decides


def test_serve_on_postgresql_wants_the_key_apart_from_the_data(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("the embedded SQLite default keeps its key in the data dir (local, one machine)")
    data_dir = tmp_path / "data"
    for extra in ({}, {FILE_ENV_VAR: str(data_dir / "my.key")}):
        # `serve` as the real process (without the check it would start serving: this process would hang);
        # `worker` in this process (tests/support/cli.py: same command and environment, no process start).
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLE_")}
        env.update({"ENTITLE_DATA_DIR": str(data_dir), "ENTITLE_DATABASE_URL": database_url, **extra})
        served = subprocess.run(
            [str(Path(sys.executable).parent / "entitle"), "serve", "--port", "9"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        worked = invoke("worker", "--once", data_dir=data_dir, database_url=database_url, env=dict(extra))
        for command, result in (("serve", served), ("worker", worked)):
            assert result.returncode == 2, (command, extra, result.stderr)
            assert ENV_VAR in result.stderr and "data dir" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr

    outside = tmp_path / "secrets" / "entitle.key"
    proc, base = start_serve(database_url, data_dir, extra_env={FILE_ENV_VAR: str(outside)})
    try:
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_demo_on_postgresql_wants_the_key_apart_too(database_url: str, tmp_path: Path) -> None:
    """`make run`'s order on PostgreSQL (README: `entitle migrate`, then `demo`, then `serve`): `demo` used to
    make `<data dir>/secret.key` and encrypt the demo's signing secret with it, a key `serve` then refuses;
    with the key `serve` asks for set, that secret could not be read (customer tokens and /demo failed).
    `demo` refuses as `serve` does, before writing anything."""
    if database_url.startswith("sqlite"):
        pytest.skip("the embedded SQLite default keeps its key in the data dir (local, one machine)")
    data_dir = tmp_path / "data"
    assert invoke("migrate", data_dir=data_dir, database_url=database_url).returncode == 0
    result = invoke("demo", data_dir=data_dir, database_url=database_url)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert ENV_VAR in result.stderr and "data dir" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (data_dir / "secret.key").exists()
    db = Database(database_url)
    try:
        with db.read() as s:
            assert s.execute(text("SELECT count(*) FROM environments")).scalar_one() == 0  # nothing written
    finally:
        db.dispose()
    with_key: dict[str, str | None] = {ENV_VAR: Fernet.generate_key().decode()}
    assert invoke("demo", data_dir=data_dir, database_url=database_url, env=with_key).returncode == 0
    assert not (data_dir / "secret.key").exists()


BAD_PORTS = ["https://hooks.example.com:99999/in", "https://hooks.example.com:0/in", "https://hooks.example.com:/in"]


def test_a_webhook_url_with_an_invalid_port_is_refused(server: LiveServer) -> None:
    with server.http() as api:
        for url in [*BAD_PORTS, "https://hooks.example.com:http/in", "https://hooks.example.com:-1/in"]:
            response = api.post("/api/v1/webhooks", json={"url": url, "eventTypes": ["customer.created"]})
            assert (response.status_code, response.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), url
            assert "port" in response.json()["error"]["message"], url
        assert api.get("/api/v1/webhooks").json()["data"] == []
        created = api.post(
            "/api/v1/webhooks", json={"url": "https://hooks.example.com:8443/in", "eventTypes": ["customer.created"]}
        )
        assert created.status_code == 200, created.text
        hook_id = created.json()["data"]["id"]
        for url in BAD_PORTS:
            response = api.patch(f"/api/v1/webhooks/{hook_id}", json={"url": url})
            assert response.status_code == 400, url
        assert api.get(f"/api/v1/webhooks/{hook_id}").json()["data"]["url"] == "https://hooks.example.com:8443/in"


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_webhook_ports_are_1_to_65535(port: int) -> None:
    url = f"https://hooks.example.com:{port}/in"
    if 1 <= port <= 65535:
        assert WebhookCreate.model_validate({"url": url, "eventTypes": ["customer.created"]}).url == url
    else:
        with pytest.raises(ValidationError):
            WebhookCreate.model_validate({"url": url, "eventTypes": ["customer.created"]})
