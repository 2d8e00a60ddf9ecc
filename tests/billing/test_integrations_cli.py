"""`entitle integrations connect|list|remove`, run in-process through typer's CliRunner against the test
server's database (SQLite and PostgreSQL). Connecting checks each key at the emulator (`--api-base`; an
update by id without it keeps the stored one); removing touches only the database (the catalog sync the
connection enqueues is not run here).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from entitle.billing.secrets import secret_box
from entitle.cli import app
from tests.billing.test_integrations import stored
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

FIRST = "sk_test_51CliFirstAccount000000000000001111"
SECOND = "sk_test_51CliSecondAccount00000000000002222"


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("ENTITLE_STRIPE_SECRET_KEY", "ENTITLE_STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENTITLE_DATABASE_URL", database_url)
    monkeypatch.setenv("ENTITLE_DATA_DIR", str(tmp_path))
    return CliRunner()


def test_connect_with_toggles_update_by_id_list_and_remove(
    server: LiveServer, api: httpx.Client, cli: CliRunner, stripe_emulator: StripeEmulator
) -> None:
    base = ["integrations", "connect", "stripe", "--environment", "development"]
    at = ["--api-base", stripe_emulator.api_base]
    toggles = ["--webhook-secret", "whsec_cli0000000000001", "--no-sync-customers", "--tax"]
    first = cli.invoke(app, [*base, *at, "--secret-key", FIRST, *toggles])
    assert first.exit_code == 0, first.output
    first_id = first.stdout.strip().splitlines()[-1]
    second = cli.invoke(app, [*base, *at, "--secret-key", SECOND, "--no-sync-subscriptions", "--default"])
    assert second.exit_code == 0, second.output
    second_id = second.stdout.strip().splitlines()[-1]
    assert first_id != second_id

    listed = {i["id"]: i for i in api.get("/api/v1/integrations").json()["data"]}
    assert set(listed) == {first_id, second_id}
    assert (listed[first_id]["syncCustomers"], listed[first_id]["taxEnabled"]) == (False, True)
    assert listed[first_id]["syncSubscriptions"] is True and listed[first_id]["hasWebhookSecret"] is True
    assert (listed[second_id]["syncSubscriptions"], listed[second_id]["isDefault"]) == (False, True)
    assert listed[first_id]["isDefault"] is False

    # Connecting again by id: a new key; the webhook secret and the toggles not given are kept.
    rotated = "sk_test_51CliFirstRotated000000000003333"
    again = cli.invoke(app, [*base, "--id", first_id, "--secret-key", rotated, "--sync-customers"])
    assert again.exit_code == 0, again.output
    assert again.stdout.strip().splitlines()[-1] == first_id
    row = next(r for r in stored(server) if r.ref_id == first_id)
    box = secret_box(Path("/nonexistent"))  # ENTITLE_SECRET_KEY is set by the billing fixtures
    assert box.decrypt(row.secret_key_encrypted) == rotated
    assert row.webhook_secret_encrypted is not None
    assert box.decrypt(row.webhook_secret_encrypted) == "whsec_cli0000000000001"
    assert (row.sync_customers, row.sync_subscriptions, row.tax_enabled) == (True, True, True)

    shown = cli.invoke(app, ["integrations", "list", "--environment", "development"])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [first_id, second_id]
    assert "default=no" in lines[0] and "default=yes" in lines[1]
    assert "sync-customers=on" in lines[0] and "tax=on" in lines[0] and "webhook-secret=set" in lines[0]
    assert "sync-subscriptions=off" in lines[1] and "webhook-secret=missing" in lines[1]
    assert rotated not in shown.stdout and SECOND not in shown.stdout  # only hints

    removed = cli.invoke(app, ["integrations", "remove", second_id, "--environment", "development"])
    assert removed.exit_code == 0, removed.output
    assert [i["id"] for i in api.get("/api/v1/integrations").json()["data"]] == [first_id]
    assert api.get("/api/v1/integrations").json()["data"][0]["isDefault"] is True  # the one left

    # Usage errors: exit code 2 with the reason, nothing changed.
    again_removed = cli.invoke(app, ["integrations", "remove", second_id, "--environment", "development"])
    assert again_removed.exit_code == 2 and "was not found" in again_removed.output
    unknown_env = cli.invoke(app, ["integrations", "list", "--environment", "nowhere"])
    assert unknown_env.exit_code == 2 and "does not exist" in unknown_env.output
    unknown_id = cli.invoke(app, [*base, "--id", "no-such-id", "--secret-key", FIRST])
    assert unknown_id.exit_code == 2 and "was not found" in unknown_id.output
    bad_hours = cli.invoke(app, [*base, *at, "--secret-key", FIRST, "--payment-settlement-hours", "0"])
    assert bad_hours.exit_code == 2
    assert [i["id"] for i in api.get("/api/v1/integrations").json()["data"]] == [first_id]


def test_a_refused_option_is_named_by_its_flag(server: LiveServer, api: httpx.Client, cli: CliRunner) -> None:
    """`--secret-key bogus` answered "Error: String should have at least 8 characters": which string?"""
    base = ["integrations", "connect", "stripe", "--environment", "development"]
    short = cli.invoke(app, [*base, "--secret-key", "bogus"])
    assert short.exit_code == 2, short.output
    assert "Error: --secret-key: " in short.output and "at least 8 characters" in short.output
    hours = cli.invoke(app, [*base, "--secret-key", FIRST, "--payment-settlement-hours", "0"])
    assert hours.exit_code == 2 and "Error: --payment-settlement-hours: " in hours.output, hours.output
    assert api.get("/api/v1/integrations").json()["data"] == []  # nothing was written
