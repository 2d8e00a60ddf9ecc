"""Connecting an environment to Stripe: POST /api/v1/integrations and `entitle integrations connect`.

Connecting checks the key with Stripe (the emulator's stand-in answers `GET /v1/account` for any key it
was not told to refuse; see tests/billing/test_stripe_fail_fast.py for refusals); the CLI test reaches
the emulator through the catalog sync it enqueues too: Products at localstripe, Prices at the stand-in.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from entitle.billing.models import Integration
from entitle.billing.secrets import ENV_VAR, KEY_FILE, secret_box
from entitle.environments.models import KeyKind
from entitle.errors import FailedPrecondition
from entitle.jobs.service import Worker
from tests.billing.test_stripe_catalog_sync import make_plan, product_of
from tests.billing.test_stripe_webhooks import signed_post, stripe_event
from tests.conftest import LiveServer
from tests.support.cli import invoke, server_key
from tests.support.server import start_serve
from tests.support.stripe_emulator import StripeEmulator
from tests.test_cli import run

TEST_KEY = "sk_test_51Abcdefghijklmnopqrstuvwxyz0123"
LIVE_KEY = "sk_live_51Abcdefghijklmnopqrstuvwxyz0123"


def connect(api: httpx.Client, key: str, **extra: object) -> httpx.Response:
    return api.post("/api/v1/integrations", json={"vendorIdentifier": "STRIPE", "apiSecretKey": key, **extra})


def stored(server: LiveServer) -> list[Integration]:
    with server.db.read() as s:
        return list(s.scalars(select(Integration).order_by(Integration.pk)))


def test_the_secret_key_is_stored_encrypted_and_never_shown(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    base = stripe_emulator.api_base
    resp = connect(api, TEST_KEY, webhookSecret="whsec_abcdefgh12345678", apiBase=f"{base}/")
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert TEST_KEY not in resp.text and "whsec_abcdefgh12345678" not in resp.text
    assert data["secretKeyHint"] == "sk_test_...0123"
    assert (data["vendorIdentifier"], data["livemode"], data["hasWebhookSecret"]) == ("STRIPE", False, True)
    assert (data["apiBase"], data["syncCustomers"], data["syncSubscriptions"], data["taxEnabled"]) == (
        base,
        True,
        True,
        False,
    )
    (row,) = stored(server)
    assert TEST_KEY not in row.secret_key_encrypted
    box = secret_box(Path("/nonexistent"))  # the key comes from ENTITLE_SECRET_KEY here
    assert box.decrypt(row.secret_key_encrypted) == TEST_KEY
    assert row.webhook_secret_encrypted is not None and box.decrypt(row.webhook_secret_encrypted).startswith("whsec_")
    # Connecting again with its id replaces the key of the same integration; what is left out (the webhook
    # secret, the API base, the other toggles) keeps its stored value.
    again = connect(api, "sk_test_51Another0000000000000009999", id=data["id"], syncCustomers=False)
    assert again.status_code == 200
    assert again.json()["data"]["id"] == data["id"] and again.json()["data"]["syncCustomers"] is False
    assert again.json()["data"]["hasWebhookSecret"] is True and again.json()["data"]["taxEnabled"] is False
    (row,) = stored(server)
    assert (box.decrypt(row.secret_key_encrypted), row.api_base) == ("sk_test_51Another0000000000000009999", base)
    assert row.webhook_secret_encrypted is not None
    assert box.decrypt(row.webhook_secret_encrypted) == "whsec_abcdefgh12345678"
    # The same key again, without an id, is the same integration too.
    same = connect(api, "sk_test_51Another0000000000000009999", taxEnabled=True)
    assert same.json()["data"]["id"] == data["id"] and same.json()["data"]["syncCustomers"] is False
    assert same.json()["data"]["taxEnabled"] is True and same.json()["data"]["hasWebhookSecret"] is True
    # An id the environment does not have is not found (connect without one to add an integration).
    unknown = connect(api, TEST_KEY, id="no-such-integration")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    assert len(stored(server)) == 1


def test_keys_must_match_the_kind_of_environment(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    def refused(client: httpx.Client, key: str, status: int = 400, **extra: object) -> str:
        resp = connect(client, key, **extra)
        assert resp.status_code == status, resp.text
        message: str = resp.json()["error"]["message"]
        return message

    assert "refuses live Stripe keys" in refused(api, LIVE_KEY)
    assert "refuses live Stripe keys" in refused(api, "rk_live_51Abcdefghijklmnop")
    assert "not a Stripe secret key" in refused(api, "pk_test_51Abcdefghijklmnop")
    assert "whsec_" in refused(api, TEST_KEY, webhookSecret="not-a-secret", apiBase=stripe_emulator.api_base)
    refused(api, TEST_KEY, apiBase="ftp://example.com")
    with server.http(server.key(kind=KeyKind.CLIENT)) as client_key:
        assert connect(client_key, TEST_KEY, apiBase=stripe_emulator.api_base).status_code == 403
    with server.http(server.key("production")) as production:
        assert "refuses Stripe test keys" in refused(production, TEST_KEY)
        assert "must be https" in refused(production, LIVE_KEY, apiBase="http://127.0.0.1:9")
        # A live key passes every local check; Stripe (here: nothing listening) must then confirm it.
        unreachable = connect(production, LIVE_KEY, apiBase="https://127.0.0.1:9")
        assert unreachable.status_code == 503, unreachable.text
        assert unreachable.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert stored(server) == []


def test_the_key_file_is_generated_once_private_and_used_to_decrypt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR)
    box = secret_box(tmp_path)
    token = box.encrypt("sk_test_secret")
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert secret_box(tmp_path).decrypt(token) == "sk_test_secret"  # the same file, not a new key
    assert list(tmp_path.iterdir()) == [key_file]
    # Rotation: the new key first, the old one still decrypts.
    monkeypatch.setenv(ENV_VAR, f"{Fernet.generate_key().decode()},{key_file.read_text().strip()}")
    assert secret_box(tmp_path).decrypt(token) == "sk_test_secret"
    monkeypatch.setenv(ENV_VAR, Fernet.generate_key().decode())
    with pytest.raises(FailedPrecondition, match="cannot be decrypted"):
        secret_box(tmp_path).decrypt(token)
    monkeypatch.setenv(ENV_VAR, "not-a-fernet-key")
    with pytest.raises(FailedPrecondition, match="Fernet"):
        secret_box(tmp_path)


def test_the_cli_connects_and_the_published_catalog_is_synced(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_plan(api)
    operator = server_key(database_url, tmp_path)  # on PostgreSQL: the server's key, as an operator sets it
    refused = invoke(
        "integrations", "connect", "stripe", "--environment", "development", "--secret-key", LIVE_KEY,
        data_dir=tmp_path, database_url=database_url, env=operator,
    )  # fmt: skip
    assert refused.returncode == 2 and "refuses live Stripe keys" in refused.stderr
    done = run(
        "integrations", "connect", "stripe", "--environment", "development",
        "--secret-key", stripe_emulator.secret_key, "--api-base", stripe_emulator.api_base,
        data_dir=tmp_path, database_url=database_url, env=operator,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == api.get("/api/v1/integrations").json()["data"][0]["id"]
    if database_url.startswith("sqlite"):
        assert (tmp_path / KEY_FILE).exists()  # the CLI ran without ENTITLE_SECRET_KEY: a key file in its data dir
        # The worker must decrypt with the same key: use that file's key here.
        monkeypatch.setenv(ENV_VAR, (tmp_path / KEY_FILE).read_text().strip())
    else:  # the CLI encrypted with the operator's key (this process's too), and made none in the data dir
        assert not (tmp_path / KEY_FILE).exists()
    Worker(server.db).drain()
    assert product_of(server, stripe_emulator, "plan-pro").name == "Acme Pro Plan"  # found by id: real Stripe
    if isinstance(stripe_emulator, StripeEmulator):  # is never emptied
        assert [p.name for p in stripe_emulator.products()] == ["Acme Pro Plan"]


def test_serve_given_the_key_connect_had_reads_what_connect_stored(
    stripe_emulator: StripeEmulator, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL `integrations connect` given the operator's key (without one it refuses:
    tests/test_secret_key_commands.py) stores secrets that `serve`, given the same key, opens: it checks a
    Stripe event's signature with the stored webhook secret (and opens the stored API key beside it). On
    SQLite the command and `serve` both read the data dir's key file."""
    monkeypatch.delenv(ENV_VAR)  # `serve` inherits this environment (billing's key): its key is what we give
    sqlite = database_url.startswith("sqlite")
    data_dir = tmp_path / "data"
    key = {} if sqlite else {ENV_VAR: Fernet.generate_key().decode()}
    webhook_secret = f"whsec_{secrets.token_hex(16)}"
    assert invoke("migrate", data_dir=data_dir, database_url=database_url).returncode == 0
    connected = invoke(
        "integrations", "connect", "stripe", "--environment", "development",
        "--secret-key", stripe_emulator.secret_key, "--api-base", stripe_emulator.api_base,
        "--webhook-secret", webhook_secret,
        data_dir=data_dir, database_url=database_url, env=dict(key),
    )  # fmt: skip
    assert connected.returncode == 0, connected.stderr
    integration = connected.stdout.strip()
    assert (data_dir / KEY_FILE).exists() == sqlite  # on PostgreSQL the operator's key, none made here
    proc, base = start_serve(database_url, data_dir, extra_env=key)
    try:
        with httpx.Client(base_url=base, timeout=30) as anonymous:  # the signature is the key
            event = stripe_event("invoice.paid", {"object": "invoice", "id": "in_x", "subscription": "sub_x"})
            wrong = signed_post(anonymous, integration, event, "whsec_not_the_secret")
            assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "INVALID_SIGNATURE"
            good = signed_post(anonymous, integration, event, webhook_secret)
            assert good.status_code == 200, good.text
            receipt = {"id": event["id"], "type": "invoice.paid", "handled": True, "duplicate": False}
            assert good.json()["data"] == receipt
    finally:
        proc.terminate()
        proc.wait(timeout=30)
