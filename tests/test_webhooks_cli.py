"""`entitle webhooks ...` through typer's CliRunner, against the test's database (SQLite and
PostgreSQL): what each command stores (read back through the HTTP API) and what it prints.

Receivers are the local HTTP servers of `tests/test_webhooks.py` (plain http to loopback, allowed by
its `webhook_env` fixture, which also sets the key of the webhook secrets for the CLI and the worker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from standardwebhooks import Webhook
from typer.testing import CliRunner

from entitle.cli import app
from entitle.jobs.service import Worker
from entitle.webhooks.models import EVENT_TYPES
from tests.conftest import LiveServer
from tests.test_webhooks import Receiver
from tests.test_webhooks import receivers as receivers
from tests.test_webhooks import webhook_env as webhook_env


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Any:
    runner = CliRunner()
    env = {"ENTITLE_DATABASE_URL": database_url, "ENTITLE_DATA_DIR": str(tmp_path / "cli")}

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["webhooks", *args], env=env)

    return invoke


def ok(result: Result) -> list[str]:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout.splitlines()


def refused(result: Result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr and result.stderr.startswith("Error: ")
    return result.stderr


def stored(api: httpx.Client, webhook_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/webhooks/{webhook_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_create_list_update_delete(cli: Any, server: LiveServer, api: httpx.Client, receivers: Any) -> None:
    receiver: Receiver = receivers()
    lines = ok(cli("create", "--environment", "development", "--url", receiver.url, "--event", "customer.created"))
    assert len(lines) == 2
    webhook_id, secret = lines
    assert webhook_id.startswith("wh_") and secret.startswith("whsec_")
    assert stored(api, webhook_id) | {"createdAt": None, "updatedAt": None} == {
        "id": webhook_id,
        "url": receiver.url,
        "description": None,
        "eventTypes": ["customer.created"],
        "enabled": True,
        "createdAt": None,
        "updatedAt": None,
    }
    assert "secret" not in api.get(f"/api/v1/webhooks/{webhook_id}").json()["data"]

    # The printed secret is the one that signs.
    assert api.post("/api/v1/customers", json={"id": "acme"}).status_code == 200
    Worker(server.db).drain()
    (request,) = receiver.requests
    assert Webhook(secret).verify(request.body, request.headers)["data"]["customerId"] == "acme"

    # Without --event: every type. A given secret is used as given.
    given = "whsec_" + "A" * 44
    second = ok(cli("create", "--url", receiver.url, "--secret", given, "--description", "all of it", "--disabled"))
    assert second[1] == given
    assert stored(api, second[0])["eventTypes"] == list(EVENT_TYPES)
    assert (stored(api, second[0])["enabled"], stored(api, second[0])["description"]) == (False, "all of it")

    listed = ok(cli("list", "--environment", "development"))
    assert listed == [
        f"{webhook_id}\tenabled\t{receiver.url}\tcustomer.created",
        f"{second[0]}\tdisabled\t{receiver.url}\t{','.join(EVENT_TYPES)}",
    ]

    ok(cli("update", webhook_id, "--disable"))
    assert stored(api, webhook_id)["enabled"] is False
    line = ok(cli("update", webhook_id, "--enable", "--event", "customer.updated", "--event", "customer.archived"))
    assert line == [f"{webhook_id}\tenabled\t{receiver.url}\tcustomer.updated,customer.archived"]
    after = stored(api, webhook_id)
    assert (after["enabled"], after["eventTypes"]) == (True, ["customer.updated", "customer.archived"])
    other_url = receiver.url.replace("/hook", "/other")
    ok(cli("update", webhook_id, "--url", other_url))
    assert stored(api, webhook_id)["url"] == other_url
    assert stored(api, webhook_id)["eventTypes"] == ["customer.updated", "customer.archived"]  # untouched

    assert ok(cli("delete", second[0])) == [f"deleted {second[0]}"]
    assert api.get(f"/api/v1/webhooks/{second[0]}").status_code == 404
    assert ok(cli("list")) == [f"{webhook_id}\tenabled\t{other_url}\tcustomer.updated,customer.archived"]


def test_deliveries_and_redeliver(cli: Any, server: LiveServer, api: httpx.Client, receivers: Any) -> None:
    receiver: Receiver = receivers([500])  # the first attempt fails, the retry succeeds
    webhook_id, _ = ok(cli("create", "--url", receiver.url, "--event", "customer.created"))
    other: Receiver = receivers()
    other_id, _ = ok(cli("create", "--url", other.url, "--event", "customer.created"))
    assert api.post("/api/v1/customers", json={"id": "acme"}).status_code == 200
    worker = Worker(server.db)
    worker.drain()
    with server.db.transaction() as s:  # the retry is due later: make it due now
        from sqlalchemy import update

        from entitle.jobs.models import PENDING, Job

        s.execute(update(Job).where(Job.status == PENDING).values(run_at=Job.created_at))
    worker.drain()
    assert [r.event["data"]["customerId"] for r in receiver.requests] == ["acme", "acme"]
    event_id = receiver.requests[0].event["id"]

    log = ok(cli("deliveries", webhook_id))
    assert len(log) == 2
    failed, succeeded = (line.split("\t") for line in log)
    assert failed[2:8] == ["customer.created", event_id, "attempt=1", "failed", "status=500", failed[7]]
    assert failed[7].startswith("latency=") and failed[7].endswith("ms")
    assert failed[8] == "boom"  # the response's excerpt
    assert succeeded[2:7] == ["customer.created", event_id, "attempt=2", "ok", "status=200"]
    assert succeeded[8] == "ok"
    assert ok(cli("deliveries", webhook_id, "--limit", "1")) == [log[1]]

    # Redeliver one attempt: to its endpoint only, with the same event id.
    (line,) = ok(cli("redeliver", failed[0]))
    assert line.split("\t")[1:] == [webhook_id, event_id]
    worker.drain()
    assert [r.event["id"] for r in receiver.requests] == [event_id] * 3
    assert len(other.requests) == 1

    # Redeliver an event id: to every endpoint that logged it.
    lines = ok(cli("redeliver", event_id))
    assert sorted(x.split("\t")[1] for x in lines) == sorted([webhook_id, other_id])
    worker.drain()
    assert [r.event["id"] for r in receiver.requests] == [event_id] * 4
    assert [r.event["id"] for r in other.requests] == [event_id] * 2
    assert len(ok(cli("deliveries", webhook_id))) == 4

    # A disabled endpoint is sent nothing: an event id goes again to the enabled ones only, and to none
    # (refused) once every endpoint that logged it is disabled.
    ok(cli("update", other_id, "--disable"))
    (line,) = ok(cli("redeliver", event_id))
    assert line.split("\t")[1] == webhook_id
    ok(cli("update", webhook_id, "--disable"))
    assert "is disabled" in refused(cli("redeliver", event_id))
    assert "is disabled" in refused(cli("redeliver", failed[0]))


def test_bad_input_exits_2_without_a_traceback(cli: Any, server: LiveServer, api: httpx.Client) -> None:
    assert "must be an absolute http or https URL" in refused(cli("create", "--url", "ftp://example.com/x"))
    assert "eventTypes" in refused(cli("create", "--url", "https://example.com/x", "--event", "nope.nope"))
    assert "webhook url refused" in refused(cli("create", "--url", "https://224.0.0.1/x"))  # multicast: never
    assert "secret" in refused(cli("create", "--url", "https://example.com/x", "--secret", "plain"))
    assert api.get("/api/v1/webhooks").json()["data"] == []  # nothing was written

    assert "was not found" in refused(cli("update", "wh_missing", "--disable"))
    assert "nothing to change" in refused(cli("update", "wh_missing"))
    assert "was not found" in refused(cli("delete", "wh_missing"))
    assert "was not found" in refused(cli("deliveries", "wh_missing"))
    assert "was not found" in refused(cli("redeliver", "12345"))
    assert "was not found" in refused(cli("redeliver", "evt_missing"))
    assert "neither a delivery id" in refused(cli("redeliver", "what"))
    assert "no environment named 'staging'" in refused(cli("list", "--environment", "staging"))
