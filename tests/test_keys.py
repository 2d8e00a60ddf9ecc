"""API keys can be listed and revoked (issue #11, defect 8): through `/api/v1/keys` (server key) and
`entitle keys list|revoke`; a revoked key is refused by every process from its next request on."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from entitle.environments.models import ApiKey, KeyKind
from entitle.environments.service import PREFIX_RANDOM_CHARS, hash_key
from entitle.sdk import CUSTOMER_TOKEN_HEADER, customer_token
from tests.conftest import LiveServer
from tests.support.cli import invoke, server_key
from tests.support.clock import TestClock
from tests.support.server import serve_process


def _ids(listing: httpx.Response) -> dict[str, dict[str, object]]:
    assert listing.status_code == 200, listing.text
    return {item["id"]: item for item in listing.json()["data"]}


def _stored(server: LiveServer, raw: str) -> ApiKey:
    with server.db.read() as s:
        return s.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(raw))).one()


def test_list_and_revoke_through_the_api(server: LiveServer) -> None:
    browser_key = server.key(kind=KeyKind.CLIENT)
    staging_key = server.key("staging")
    with server.http() as admin:
        keys = _ids(admin.get("/api/v1/keys"))
        mine, browser = str(_stored(server, server.server_key).pk), str(_stored(server, browser_key).pk)
        assert set(keys) == {mine, browser}  # staging's key is not this environment's business
        assert keys[mine]["kind"] == "SERVER" and keys[browser]["kind"] == "CLIENT"
        assert keys[mine]["environment"] == "development"
        assert keys[mine]["prefix"] == server.server_key[: len("server-development-") + PREFIX_RANDOM_CHARS]
        assert keys[browser]["prefix"] != keys[mine]["prefix"]
        assert keys[mine]["lastUsedAt"] is not None and keys[browser]["lastUsedAt"] is None
        assert keys[mine]["createdAt"] and keys[mine]["revokedAt"] is None
        text = admin.get("/api/v1/keys").text
        for raw in (server.server_key, browser_key, hash_key(server.server_key)):
            assert raw not in text

        page = admin.get("/api/v1/keys", params={"limit": 1}).json()
        assert len(page["data"]) == 1 and page["pagination"]["next"]

        revoked = admin.post(f"/api/v1/keys/{browser}/revoke")
        assert revoked.status_code == 200, revoked.text
        revoked_at = revoked.json()["data"]["revokedAt"]
        assert revoked_at is not None
        with server.http(browser_key) as page_client:
            refused = page_client.get("/api/v1/paywall")
            assert (refused.status_code, refused.json()["error"]["message"]) == (401, "unknown or revoked API key")
        again = admin.post(f"/api/v1/keys/{browser}/revoke")  # idempotent: the first time stays
        assert again.json()["data"]["revokedAt"] == revoked_at
        assert _ids(admin.get("/api/v1/keys"))[browser]["revokedAt"] == revoked_at

        itself = admin.post(f"/api/v1/keys/{mine}/revoke")
        assert (itself.status_code, itself.json()["error"]["code"]) == (409, "FAILED_PRECONDITION")
        assert admin.get("/api/v1/keys").status_code == 200

        staging_id = str(_stored(server, staging_key).pk)
        for unknown in (staging_id, "999999", "abc", "-1", staging_key):
            missing = admin.post(f"/api/v1/keys/{unknown}/revoke")
            assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND"), unknown
    with server.http(staging_key) as staging:
        assert staging.get("/api/v1/keys").status_code == 200  # another environment's key still works


# A freshly started process on a loaded machine (several xdist workers on two cores) may take longer than
# httpx's default 5 s to answer its first requests; the test is about what it answers, not how fast.
LOADED = 60.0


def test_a_revoked_key_is_refused_by_every_process_at_once(
    server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    doomed = server.key()
    cli_doomed = server.key()
    with serve_process(database_url, tmp_path / "second") as second:
        for base in (server.base_url, second):
            assert (
                httpx.get(f"{base}/api/v1/features", headers={"X-API-KEY": doomed}, timeout=LOADED).status_code == 200
            )
            assert (
                httpx.get(f"{base}/api/v1/features", headers={"X-API-KEY": cli_doomed}, timeout=LOADED).status_code
                == 200
            )
        pk = _stored(server, doomed).pk
        with server.http() as admin:
            assert admin.post(f"/api/v1/keys/{pk}/revoke").status_code == 200
        # From the command line (in this process: the console script is tests/test_cli.py's), by the key itself.
        result = invoke("keys", "revoke", cli_doomed, data_dir=server.data_dir, database_url=database_url)
        assert result.returncode == 0, result.stderr
        assert "revoked key" in result.stderr
        # The very next request, in this process and in the other one: no cache to wait out.
        for base in (server.base_url, second):
            for key in (doomed, cli_doomed):
                assert (
                    httpx.get(f"{base}/api/v1/features", headers={"X-API-KEY": key}, timeout=LOADED).status_code == 401
                )
            assert (
                httpx.get(
                    f"{base}/api/v1/features", headers={"X-API-KEY": server.server_key}, timeout=LOADED
                ).status_code
                == 200
            )


def test_last_use_is_recorded_at_most_once_a_minute(server: LiveServer, test_clock: TestClock) -> None:
    key = server.key()
    assert _stored(server, key).last_used_at is None
    with server.http(key) as http:
        first = test_clock.now()
        http.get("/api/v1/features")
        assert _stored(server, key).last_used_at == first
        test_clock.advance(timedelta(seconds=59))
        http.get("/api/v1/features")
        assert _stored(server, key).last_used_at == first
        test_clock.advance(timedelta(seconds=1))
        http.get("/api/v1/features")
        assert _stored(server, key).last_used_at == test_clock.now()


def test_keys_and_environment_settings_from_the_command_line(server: LiveServer, database_url: str) -> None:
    operator = server_key(database_url, server.data_dir)  # on PostgreSQL: the server's key, as an operator sets it

    def cli(*args: str) -> tuple[str, str]:
        result = invoke(*args, data_dir=server.data_dir, database_url=database_url, env=operator)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout, result.stderr

    browser_key = server.key(kind=KeyKind.CLIENT)
    server.key("staging")
    assert server.http().get("/api/v1/features").status_code == 200
    listing, _ = cli("keys", "list", "--environment", "development")
    rows = [line.split("\t") for line in listing.splitlines()]
    assert len(rows) == 2
    by_kind = {row[2]: row for row in rows}
    assert by_kind["client"][1] == browser_key[: len("client-development-") + PREFIX_RANDOM_CHARS] + "..."
    assert by_kind["client"][3] == "development"
    assert by_kind["client"][4].startswith("created=20")
    assert by_kind["client"][5] == "last-used=never" and by_kind["server"][5] != "last-used=never"
    assert browser_key not in listing
    assert len(cli("keys", "list")[0].splitlines()) == 3  # every environment

    # The signing secret: printed alone on stdout; a token made with it opens the customer's data.
    secret, _ = cli("keys", "signing-secret", "--environment", "development")
    secret = secret.strip()
    assert cli("keys", "signing-secret", "--environment", "development")[0].strip() == secret
    check = "/api/v1/customers/acme/entitlements"
    with server.http(browser_key) as page:
        assert page.get(check).status_code == 401
        assert page.get(check, headers={CUSTOMER_TOKEN_HEADER: customer_token(secret, "acme")}).status_code == 200
        rotated, note = cli("keys", "signing-secret", "--environment", "development", "--rotate", "--grace-hours", "0")
        assert rotated.strip() != secret and "refused from now on" in note
        assert page.get(check, headers={CUSTOMER_TOKEN_HEADER: customer_token(secret, "acme")}).status_code == 401
        fresh = customer_token(rotated.strip(), "acme")
        assert page.get(check, headers={CUSTOMER_TOKEN_HEADER: fresh}).status_code == 200

        shown, _ = cli("environments", "show", "--environment", "development")
        assert "customer-tokens\trequired" in shown and "allowed-origins\tnone" in shown
        _, warning = cli("environments", "update", "--environment", "development", "--no-customer-tokens")
        assert "anyone with a client key" in warning
        assert page.get(check).status_code == 200
        updated, _ = cli(
            "environments", "update", "--environment", "development", "--customer-tokens",
            "--allowed-origin", "https://app.example.com", "--allowed-origin", "http://localhost:3000",
        )  # fmt: skip
        assert "allowed-origins\thttps://app.example.com, http://localhost:3000" in updated
        assert page.get(check).status_code == 401

    key_id = by_kind["client"][0]
    _, note = cli("keys", "revoke", key_id)
    assert f"revoked key {key_id}" in note
    assert "revoked=20" in cli("keys", "list", "--environment", "development")[0]
    assert len(cli("keys", "list", "--environment", "development", "--active-only")[0].splitlines()) == 1

    for args in (
        ("keys", "revoke", "424242"),
        ("keys", "revoke", "not-a-key"),
        ("keys", "signing-secret", "--environment", "nope"),
        ("environments", "show", "--environment", "nope"),
        ("environments", "update", "--environment", "development", "--allowed-origin", "*"),
        ("keys", "list", "--environment", "nope"),
    ):
        result = invoke(*args, data_dir=server.data_dir, database_url=database_url, env=operator)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr, args
