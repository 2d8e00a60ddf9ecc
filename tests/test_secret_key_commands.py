"""The commands that store secrets — `keys signing-secret`, `webhooks create`, `integrations connect` — and
the key that encrypts them. On PostgreSQL they used to make `<data dir>/secret.key` and encrypt with it:
`entitle serve` then refused to start (it wants the key apart from the data dir), or, given the key it asks
for, could not read those secrets. They now refuse that key as `serve` does, before writing anything; with
a key kept apart they work and `serve` and the worker, given the same key, read what they stored. On SQLite
the data dir's key still serves (one machine). `integrations connect` with a key apart:
tests/billing/test_integrations.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from standardwebhooks import Webhook

from entitle.db import Database
from entitle.db.migrate import upgrade
from entitle.sdk import CUSTOMER_TOKEN_HEADER, customer_token
from entitle.secrets import ENV_VAR, FILE_ENV_VAR, KEY_FILE, SecretBox
from tests.support.cli import Ran, invoke
from tests.support.server import start_serve
from tests.test_webhooks import Receiver
from tests.test_webhooks import receivers as receivers

STORING = (
    ("keys", "signing-secret", "--environment", "development"),
    ("webhooks", "create", "--environment", "staging", "--url", "https://hooks.example.com/in"),
    (
        "integrations", "connect", "stripe", "--environment", "staging",
        "--secret-key", "sk_test_51Abcdefghijklmnopqrstuvwxyz0123", "--api-base", "http://127.0.0.1:9",
    ),
)  # fmt: skip


def _stored(database_url: str) -> dict[str, int]:
    """What the commands could have written: environments, signing secrets, webhook endpoints, integrations."""
    db = Database(database_url)
    try:
        with db.read() as s:
            return {
                "environments": s.execute(text("SELECT count(*) FROM environments")).scalar_one(),
                "signing secrets": s.execute(
                    text("SELECT count(*) FROM environments WHERE signing_secret_encrypted IS NOT NULL")
                ).scalar_one(),
                "webhook endpoints": s.execute(text("SELECT count(*) FROM webhook_endpoints")).scalar_one(),
                "integrations": s.execute(text("SELECT count(*) FROM integrations")).scalar_one(),
            }
    finally:
        db.dispose()


def test_on_postgresql_the_commands_storing_secrets_refuse_a_key_in_the_data_dir(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("the embedded SQLite default keeps its key in the data dir (local, one machine)")
    data_dir = tmp_path / "data"

    def cli(*args: str, env: dict[str, str | None]) -> Ran:
        return invoke(*args, data_dir=data_dir, database_url=database_url, env=env)

    assert cli("migrate", env={}).returncode == 0
    assert cli("keys", "create", "--environment", "development", env={}).returncode == 0  # stores no secret
    before = _stored(database_url)
    assert before == {"environments": 1, "signing secrets": 0, "webhook endpoints": 0, "integrations": 0}
    # No key at all, and a key file inside the data dir: both are the key `serve` refuses.
    for extra in ({}, {FILE_ENV_VAR: str(data_dir / "my.key")}):
        # `serve`'s refusal, as `worker` gives it (the same check, in this process: tests/test_data_files.py
        # runs `serve` itself).
        served = cli("worker", "--once", env=dict(extra))
        assert served.returncode == 2 and served.stderr.startswith("Error: ")
        assert ENV_VAR in served.stderr and "data dir" in served.stderr, served.stderr
        for args in STORING:
            result = cli(*args, env=dict(extra))
            assert (result.returncode, result.stdout, result.stderr) == (2, "", served.stderr), (args, extra)
    assert not (data_dir / KEY_FILE).exists() and not (data_dir / "my.key").exists()
    assert _stored(database_url) == before  # nothing written: no environment, secret, endpoint or integration


def test_with_the_servers_key_they_work_and_serve_and_the_worker_read_what_they_stored(
    database_url: str, tmp_path: Path, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the operator's key (ENTITLE_SECRET_KEY) for the commands, `serve` and the worker alike;
    SQLite: none, and all three read the data dir's key file."""
    monkeypatch.delenv(ENV_VAR, raising=False)  # `serve` inherits this environment: its key is what we give
    sqlite = database_url.startswith("sqlite")
    data_dir = tmp_path / "data"
    key = {} if sqlite else {ENV_VAR: Fernet.generate_key().decode()}
    env: dict[str, str | None] = {**key, "ENTITLE_WEBHOOKS_ALLOW_PRIVATE": "true"}

    def cli(*args: str) -> str:
        result = invoke(*args, data_dir=data_dir, database_url=database_url, env=env)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    cli("migrate")
    server_key = cli("keys", "create", "--environment", "development").strip()
    client_key = cli("keys", "create", "--environment", "development", "--kind", "client").strip()
    signing_secret = cli("keys", "signing-secret", "--environment", "development").strip()
    receiver = receivers()
    webhook_id, webhook_secret = cli(
        "webhooks", "create", "--environment", "development", "--url", receiver.url, "--event", "customer.created"
    ).splitlines()
    assert webhook_id.startswith("wh_") and webhook_secret.startswith("whsec_")
    assert (data_dir / KEY_FILE).exists() == sqlite  # on PostgreSQL the operator's key, none made here
    assert _stored(database_url) == {"environments": 1, "signing secrets": 1, "webhook endpoints": 1, "integrations": 0}

    proc, base = start_serve(database_url, data_dir, extra_env={**key, "ENTITLE_WEBHOOKS_ALLOW_PRIVATE": "true"})
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            created = http.post("/api/v1/customers", json={"id": "acme"}, headers={"X-API-KEY": server_key})
            assert created.status_code == 200, created.text
            check = "/api/v1/customers/acme/entitlements"
            assert http.get(check, headers={"X-API-KEY": client_key}).status_code == 401
            # `serve` decrypts the signing secret the command stored: a token signed with it opens the data.
            token = customer_token(signing_secret, "acme")
            opened = http.get(check, headers={"X-API-KEY": client_key, CUSTOMER_TOKEN_HEADER: token})
            assert opened.status_code == 200, opened.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # The worker decrypts the webhook secret the command stored: the delivery is signed with the printed one.
    assert invoke("worker", "--once", data_dir=data_dir, database_url=database_url, env=env).returncode == 0
    (request,) = receiver.requests
    assert Webhook(webhook_secret).verify(request.body, request.headers)["data"]["customerId"] == "acme"


def test_on_postgresql_migrate_refuses_a_key_in_the_data_dir_for_a_migration_that_encrypts(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`entitle migrate` needs no key for most migrations; 0014, which encrypts the webhook secrets earlier
    versions kept in plain text, used to make `<data dir>/secret.key` on PostgreSQL and encrypt with it. It
    refuses as `serve` does, and the whole run is undone (one transaction on PostgreSQL)."""
    if database_url.startswith("sqlite"):
        pytest.skip("the embedded SQLite default keeps its key in the data dir (local, one machine)")
    admin = create_engine(request.getfixturevalue("pg_cluster").url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS entitle_migrate_key_apart WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE entitle_migrate_key_apart"))
    admin.dispose()
    url = str(request.getfixturevalue("pg_cluster").url("entitle_migrate_key_apart"))
    upgrade(url, "0013_push")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO environments (name, is_production, created_at, updated_at) "
                "VALUES ('development', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO webhook_endpoints (ref_id, url, secret, event_types, enabled, environment_id, "
                "created_at, updated_at) SELECT 'wh_0', 'https://x.test', 'whsec_AAAA', '[]', true, pk, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM environments"
            )
        )

    def state() -> tuple[str, list[str]]:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            column = "secret" if version == "0013_push" else "secret_encrypted"
            return version, list(conn.execute(text(f"SELECT {column} FROM webhook_endpoints")).scalars())

    data_dir = tmp_path / "data"
    try:
        served = invoke("worker", "--once", data_dir=data_dir, database_url=url)
        assert served.returncode == 2 and ENV_VAR in served.stderr, served.stderr
        refused = invoke("migrate", data_dir=data_dir, database_url=url)
        assert (refused.returncode, refused.stderr) == (2, served.stderr)
        assert not (data_dir / KEY_FILE).exists()
        assert state() == ("0013_push", ["whsec_AAAA"])  # not one migration applied, the secret untouched

        key = Fernet.generate_key().decode()
        assert invoke("migrate", data_dir=data_dir, database_url=url, env={ENV_VAR: key}).returncode == 0
        version, (token,) = state()
        assert version != "0013_push" and SecretBox([key.encode()]).decrypt(token) == "whsec_AAAA"
        assert not (data_dir / KEY_FILE).exists()
    finally:
        engine.dispose()
