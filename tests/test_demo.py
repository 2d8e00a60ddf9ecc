from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from argon2 import extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY

from entitle.catalog.demo import load_demo
from entitle.cli import DEMO_ADMIN_EMAIL
from entitle.config import Settings
from tests.conftest import LiveServer


def test_demo_catalog_loads_idempotently_and_works_end_to_end(server: LiveServer, tmp_path: Path) -> None:
    settings = Settings(database_url=server.db.url, data_dir=tmp_path, console_base_url="http://x")
    key = load_demo(server.db, settings, "demo")
    assert load_demo(server.db, settings, "demo") == key  # same key, nothing duplicated
    client = server.stigg(key)

    plans = {p.id: p for p in client.v1.plans.list(product_id="demo-saas")}
    assert {(p.id, p.status, p.version_number) for p in plans.values()} == {
        ("free", "PUBLISHED", 1),
        ("pro", "PUBLISHED", 1),
        ("enterprise", "PUBLISHED", 1),
    }
    assert plans["enterprise"].parent_plan_id == "pro"
    charges = {
        (c.billing_period, c.billing_country_code, c.price.amount if c.price else None)
        for c in client.v1.plans.list_charges("pro")
    }
    assert charges == {("MONTHLY", None, 29), ("ANNUALLY", None, 290), ("MONTHLY", "DE", 27)}
    assert [a.id for a in client.v1.addons.list(product_id="demo-saas")] == ["extra-seats"]
    assert client.v1.coupons.retrieve("launch-20").data.percent_off == 20
    assert {f.id for f in client.v1.features.list_features()} >= {"seats", "api-calls", "ai-tokens", "sso"}

    client.v1.customers.provision(id="visitor")  # the journey starts everyone on Free
    assert client.v1.customers.check_entitlement("visitor", feature_id="seats").data.usage_limit == 2
    client.v1.subscriptions.provision(
        customer_id="visitor", plan_id="pro", addons=[{"id": "extra-seats", "quantity": 2}]
    )
    assert client.v1.customers.check_entitlement("visitor", feature_id="seats").data.usage_limit == 20
    region = client.v1.customers.check_entitlement("visitor", feature_id="support-tier", requested_values=["email"])
    assert region.data.is_granted


def test_make_run_prints_a_working_key(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # `make run PORT=8011` serves there and says so (the Makefile passes the address as the public URL).
    env = {**os.environ, "ENTITLE_DATA_DIR": str(tmp_path), "ENTITLE_PUBLIC_URL": "http://127.0.0.1:8011"}
    env.pop("ENTITLE_DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "entitle", "demo"], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    key_line = next(line for line in out.splitlines() if line.startswith("Server API key: "))
    assert key_line.removeprefix("Server API key: ") == (tmp_path / "demo-development-server-key").read_text().strip()
    assert "Console: http://127.0.0.1:8011/console  sign in as" in out
    assert "Try: curl -H 'X-API-KEY: <key>' http://127.0.0.1:8011/api/v1/plans" in out
    assert (tmp_path / "entitle.db").exists()
    # What the widgets' /demo page hands out is made here, so the page's GET makes nothing.
    assert (tmp_path / "demo-development-client-key").read_text().startswith("client-development-")
    # The demo admin's password, hashed in a process of its own: with the real argon2id parameters
    # (argon2-cffi's defaults), not the cheap ones this test session hashes with (tests/conftest.py).
    with closing(sqlite3.connect(tmp_path / "entitle.db")) as conn:
        query = "SELECT password_hash FROM console_users WHERE email = ?"
        (stored,) = conn.execute(query, (DEMO_ADMIN_EMAIL,)).fetchone()
    assert extract_parameters(stored) == RFC_9106_LOW_MEMORY, stored


def test_entitle_demo_replaces_a_kept_key_that_no_longer_opens_the_environment(tmp_path: Path) -> None:
    """`make run` prints the kept demo key and the /demo page hands out the kept client key: once either
    is revoked (README: `entitle keys revoke`), or the database is made anew beside the kept files, the
    next `entitle demo` makes a working one instead of handing out a key every request refuses."""
    import hashlib
    import os
    import subprocess
    import sys

    env = {**os.environ, "ENTITLE_DATA_DIR": str(tmp_path)}
    env.pop("ENTITLE_DATABASE_URL", None)

    def entitle(*args: str) -> str:
        command = [sys.executable, "-m", "entitle", *args]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout

    def printed_key(out: str) -> str:
        return next(line for line in out.splitlines() if line.startswith("Server API key: ")).split(": ", 1)[1]

    def live(raw: str) -> bool:
        with closing(sqlite3.connect(tmp_path / "entitle.db")) as conn:
            digest = hashlib.sha256(raw.encode()).hexdigest()
            query = "SELECT count(*) FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
            return bool(conn.execute(query, (digest,)).fetchone()[0])

    client_file = tmp_path / "demo-development-client-key"
    server = printed_key(entitle("demo"))
    client = client_file.read_text().strip()
    assert live(server) and live(client)
    assert printed_key(entitle("demo")) == server and client_file.read_text().strip() == client  # kept

    entitle("keys", "revoke", server)
    entitle("keys", "revoke", client)
    renewed = printed_key(entitle("demo"))
    assert renewed != server and live(renewed)
    assert (tmp_path / "demo-development-server-key").read_text().strip() == renewed
    assert client_file.read_text().strip() != client and live(client_file.read_text().strip())

    for name in ("entitle.db", "entitle.db-wal", "entitle.db-shm"):  # a fresh database, the files kept
        (tmp_path / name).unlink(missing_ok=True)
    fresh = printed_key(entitle("demo"))
    assert fresh != renewed and live(fresh) and live(client_file.read_text().strip())
