"""The Stripe integration's publishable key (issue 15): set through the API and the CLI, of the secret
key's mode (pk_test_ with a test key; pk_live_ only beside a live key), kept when an update leaves it
out, cleared by null; the widgets get it with the customer's SetupIntent, so a page need not carry it.
A refused key changes nothing. On SQLite and PostgreSQL, against the local Stripe."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from entitle.billing.schemas import IntegrationIn
from entitle.billing.service import check_publishable_key
from entitle.cli import app
from entitle.errors import InvalidArgument
from tests.billing.conftest import connect_stripe
from tests.conftest import LiveServer
from tests.support.console import csrf_of, make_user, signed_in
from tests.support.stripe_emulator import StripeEmulator
from tests.support.tokens import browser

KEY = "pk_test_51WidgetsPublishable0000000000"


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("ENTITLE_STRIPE_SECRET_KEY", "ENTITLE_STRIPE_WEBHOOK_SECRET", "ENTITLE_STRIPE_PUBLISHABLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENTITLE_DATABASE_URL", database_url)
    monkeypatch.setenv("ENTITLE_DATA_DIR", str(tmp_path))
    return CliRunner()


def publishable_key(api: httpx.Client) -> str | None:
    (integration,) = api.get("/api/v1/integrations").json()["data"]
    key: str | None = integration["publishableKey"]
    return key


@pytest.mark.emulator_only
def test_the_publishable_key_is_set_checked_kept_and_handed_to_the_widgets(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, cli: CliRunner
) -> None:
    integration = connect_stripe(api, stripe_emulator)
    assert integration["publishableKey"] is None
    assert api.post("/api/v1/customers", json={"id": "cust-pk", "name": "Pk"}).status_code == 200
    with browser(server, "cust-pk") as page:
        intent = page.post("/api/v1/widgets/customers/cust-pk/setup-intent")
        assert intent.status_code == 200, intent.text
        assert intent.json()["data"]["publishableKey"] == "pk_test_entitle_emulator"  # the emulator takes any

        ours = {"id": integration["id"]}
        assert connect_stripe(api, stripe_emulator, publishableKey=KEY, **ours)["publishableKey"] == KEY
        assert page.post("/api/v1/widgets/customers/cust-pk/setup-intent").json()["data"]["publishableKey"] == KEY
    assert connect_stripe(api, stripe_emulator, **ours)["publishableKey"] == KEY  # left out: kept

    body = {
        "vendorIdentifier": "STRIPE",
        "apiSecretKey": stripe_emulator.secret_key,
        "apiBase": stripe_emulator.api_base,
    }
    for refused, says in (
        ("pk_live_51WidgetsPublishable000000000", "must be pk_test_"),  # a test account's page
        ("sk_test_51NotPublishable00000000000000", "publishableKey"),  # a secret key, never
        ("pk_test_with spaces", "publishableKey"),
    ):
        answer = api.post("/api/v1/integrations", json={**body, **ours, "publishableKey": refused})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "INVALID_ARGUMENT" and says in answer.json()["error"]["message"]
        assert publishable_key(api) == KEY

    assert connect_stripe(api, stripe_emulator, publishableKey=None, **ours)["publishableKey"] is None  # cleared

    # The CLI sets it too, and lists it (it is not a secret).
    base = ["integrations", "connect", "stripe", "--environment", "development", "--id", integration["id"]]
    set_by_cli = cli.invoke(app, [*base, "--secret-key", stripe_emulator.secret_key, "--publishable-key", KEY])
    assert set_by_cli.exit_code == 0, set_by_cli.output
    assert publishable_key(api) == KEY
    listed = cli.invoke(app, ["integrations", "list", "--environment", "development"])
    assert f"publishable-key={KEY}" in listed.stdout
    wrong = cli.invoke(
        app, [*base, "--secret-key", stripe_emulator.secret_key, "--publishable-key", "pk_live_x1234567"]
    )
    assert wrong.exit_code == 2 and "must be pk_test_" in wrong.output
    assert publishable_key(api) == KEY

    # And the console's Integrations form (admins), which refuses what the API refuses.
    admin = make_user(server.db, "pk-admin@example.com", "admin")
    with signed_in(server.base_url, admin) as web:
        token = csrf_of(web, "/console/integrations")
        form = {"csrf_token": token, "api_secret_key": stripe_emulator.secret_key, "id": integration["id"]}
        refused = web.post("/console/integrations", data={**form, "publishable_key": "pk_live_51Wrong000000"})
        assert refused.status_code == 400 and "must be pk_test_" in html.unescape(refused.text)
        other = "pk_test_51FromTheConsole00000000"
        assert web.post("/console/integrations", data={**form, "publishable_key": other}).status_code == 303
        assert publishable_key(api) == other and other in web.get("/console/integrations").text
        assert web.post("/console/integrations", data=form).status_code == 303  # left blank: kept
        assert publishable_key(api) == other


@given(
    st.sampled_from(["pk_test_", "pk_live_", "sk_test_", "sk_live_", "rk_live_", "pk_", ""]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=40),
    st.booleans(),
)
def test_a_publishable_key_is_taken_only_of_the_secret_keys_mode(prefix: str, rest: str, livemode: bool) -> None:
    key = prefix + rest
    shaped = re.fullmatch(r"pk_(test|live)_[A-Za-z0-9_]+", key) is not None
    try:
        checked = IntegrationIn(vendor_identifier="STRIPE", api_secret_key="sk_test_x1234567", publishable_key=key)
    except ValidationError:
        assert not shaped  # only a publishable key's shape is taken, never a secret key
        return
    assert shaped and checked.publishable_key == key
    if key.startswith("pk_live_") == livemode:
        check_publishable_key(key, livemode)
    else:
        with pytest.raises(InvalidArgument, match="publishableKey"):
            check_publishable_key(key, livemode)
