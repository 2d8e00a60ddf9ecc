"""Outbound webhooks: endpoints, events written with the change, signed delivery, retries, the log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, get_args

import httpx
import pytest
import stigg
from cryptography.fernet import Fernet
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from entitle.environments.models import KeyKind
from entitle.jobs.service import Worker
from entitle.secrets import ENV_VAR
from entitle.webhooks.models import EVENT_TYPES
from entitle.webhooks.schemas import EventType
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.postgres import free_port

ALL_TYPES = list(EVENT_TYPES)
SECRET_KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receivers here listen on 127.0.0.1 over http: allowed only with the local-development setting.
    The server (its data dir) and the worker (this process) must share the key of the webhook secrets."""
    monkeypatch.setenv("ENTITLE_WEBHOOKS_ALLOW_PRIVATE", "true")
    monkeypatch.setenv(ENV_VAR, SECRET_KEY)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A tiny HTTP server in a thread; answers with `statuses` in turn (then 200), records every request."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [r.event for r in self.requests]

    def acknowledged(self) -> list[dict[str, Any]]:
        return [r.event for r, ok in zip(self.requests, self._answers, strict=True) if ok]

    _answers: list[bool] = field(default_factory=list)


@pytest.fixture
def receivers() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(statuses: list[int] | None = None) -> Receiver:
        port = free_port()
        receiver = Receiver(url=f"http://127.0.0.1:{port}/hook", statuses=list(statuses or []))
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver._answers.append(200 <= status < 300)
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"boom")

            def log_message(self, *args: Any) -> None:
                pass

        http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        servers.append(http)
        return receiver

    yield start
    for http in servers:
        http.shutdown()
        http.server_close()


def create_hook(api: httpx.Client, url: str, types: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    response = api.post("/api/v1/webhooks", json={"url": url, "eventTypes": types or ALL_TYPES, **extra})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def drain(server: LiveServer) -> int:
    return Worker(server.db).drain()


def test_event_types_list_matches_the_wire_literal() -> None:
    assert set(get_args(EventType)) == set(EVENT_TYPES)


def test_signed_events_for_customer_changes(
    server: LiveServer, api: httpx.Client, receivers: Any, test_clock: TestClock
) -> None:
    receiver = receivers()
    hook = create_hook(api, receiver.url)
    assert hook["secret"].startswith("whsec_")
    assert hook["enabled"] is True and hook["eventTypes"] == ALL_TYPES

    assert api.post("/api/v1/customers", json={"id": "acme", "name": "Acme", "email": "a@acme.test"}).status_code == 200
    assert api.patch("/api/v1/customers/acme", json={"name": "Acme Inc"}).status_code == 200
    assert api.post("/api/v1/customers/acme/archive").status_code == 200
    assert receiver.requests == []  # nothing leaves before the worker runs
    drain(server)

    types = [e["type"] for e in receiver.events()]
    assert types == ["customer.created", "customer.updated", "customer.archived", "entitlements.updated"]
    verifier = Webhook(hook["secret"])
    for request in receiver.requests:
        payload = verifier.verify(request.body, request.headers)
        assert payload["version"] == 1
        assert request.headers["webhook-id"] == payload["id"]
        assert set(payload) == {"type", "version", "id", "timestamp", "data"}
    created = receiver.events()[0]
    assert created["data"]["customerId"] == "acme" and created["data"]["name"] == "Acme"
    assert created["timestamp"] == test_clock.now().isoformat().replace("+00:00", "Z")
    assert receiver.events()[1]["data"]["name"] == "Acme Inc"
    assert len({e["id"] for e in receiver.events()}) == 4

    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(receiver.requests[0].body, receiver.requests[0].headers)

    # The secret is shown on create only.
    assert "secret" not in api.get(f"/api/v1/webhooks/{hook['id']}").json()["data"]
    log = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    assert [(d["attempt"], d["succeeded"], d["statusCode"]) for d in log["data"]] == [(1, True, 200)] * 4
    assert all(d["latencyMs"] >= 0 and d["responseExcerpt"] == "ok" for d in log["data"])


def test_a_given_secret_signs(server: LiveServer, api: httpx.Client, receivers: Any) -> None:
    receiver = receivers()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    create_hook(api, receiver.url, ["customer.created"], secret=secret)
    api.post("/api/v1/customers", json={"id": "c1"})
    drain(server)
    assert Webhook(secret).verify(receiver.requests[0].body, receiver.requests[0].headers)["type"] == "customer.created"


def test_failing_receiver_is_retried_with_backoff_and_acknowledged_once(
    server: LiveServer, api: httpx.Client, receivers: Any, test_clock: TestClock
) -> None:
    receiver = receivers([500, 503, 404])
    hook = create_hook(api, receiver.url, ["customer.created"])
    api.post("/api/v1/customers", json={"id": "c1"})

    for attempt in range(1, 5):
        assert drain(server) == 1, attempt  # one try; the retry is not due yet
        assert len(receiver.requests) == attempt
        assert drain(server) == 0
        test_clock.advance(timedelta(hours=1))
    assert drain(server) == 0

    assert [e["type"] for e in receiver.acknowledged()] == ["customer.created"]
    assert len({e["id"] for e in receiver.events()}) == 1  # the same event (webhook-id) every time
    log = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert [(d["attempt"], d["statusCode"], d["succeeded"]) for d in log] == [
        (1, 500, False),
        (2, 503, False),
        (3, 404, False),
        (4, 200, True),
    ]
    assert log[0]["error"] == "endpoint answered HTTP 500" and log[0]["responseExcerpt"] == "boom"
    job = api.get("/api/v1/jobs").json()["data"][0]
    assert (job["kind"], job["status"], job["attempts"]) == ("webhooks.deliver", "SUCCEEDED", 4)


def test_unreachable_endpoint_logs_the_error(server: LiveServer, api: httpx.Client, test_clock: TestClock) -> None:
    hook = create_hook(api, f"http://127.0.0.1:{free_port()}/nobody", ["customer.created"])
    api.post("/api/v1/customers", json={"id": "c1"})
    drain(server)
    log = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert len(log) == 1 and log[0]["statusCode"] is None and "ConnectError" in log[0]["error"]
    assert api.get("/api/v1/jobs?status=PENDING").json()["data"][0]["attempts"] == 1


def test_events_for_one_endpoint_arrive_in_order(
    server: LiveServer, api: httpx.Client, receivers: Any, test_clock: TestClock
) -> None:
    receiver = receivers([500])  # the first event fails once: the later ones must wait behind it
    create_hook(api, receiver.url, ["customer.created", "customer.updated"])
    for n in range(5):
        api.post("/api/v1/customers", json={"id": f"c{n}"})
        api.patch(f"/api/v1/customers/c{n}", json={"name": f"name {n}"})
    drain(server)
    assert len(receiver.requests) == 1
    test_clock.advance(timedelta(minutes=5))
    drain(server)
    expected = [(t, f"c{n}") for n in range(5) for t in ("customer.created", "customer.updated")]
    assert [(e["type"], e["data"]["customerId"]) for e in receiver.acknowledged()] == expected


def test_subscriptions_and_promotions_emit_entitlement_changes(
    server: LiveServer, client: stigg.Stigg, api: httpx.Client, receivers: Any, test_clock: TestClock
) -> None:
    from tests.test_core_path import build_catalog

    build_catalog(client)
    receiver = receivers()
    create_hook(
        api,
        receiver.url,
        [
            "subscription.created",
            "subscription.canceled",
            "promotional_entitlement.granted",
            "promotional_entitlement.revoked",
            "entitlements.updated",
        ],
    )
    client.v1.customers.provision(id="acme")
    sub = client.v1.subscriptions.provision(customer_id="acme", plan_id="pro").data.subscription
    assert sub is not None
    client.v1.subscriptions.cancel(sub.id, cancellation_time="IMMEDIATE")
    grant = {"promotionalEntitlements": [{"featureId": "sso", "period": "1 month"}]}
    assert api.post("/api/v1/customers/acme/promotional-entitlements", json=grant).status_code == 200
    assert api.delete("/api/v1/customers/acme/promotional-entitlements/sso").status_code == 200
    drain(server)

    got = [(e["type"], e["data"].get("subscriptionId") or e["data"].get("featureId")) for e in receiver.events()]
    assert got == [
        ("subscription.created", sub.id),
        ("entitlements.updated", None),
        ("subscription.canceled", sub.id),
        ("entitlements.updated", None),
        ("promotional_entitlement.granted", "sso"),
        ("entitlements.updated", None),
        ("promotional_entitlement.revoked", "sso"),
        ("entitlements.updated", None),
    ]
    created, canceled = receiver.events()[0]["data"], receiver.events()[2]["data"]
    assert (created["customerId"], created["planId"], created["status"]) == ("acme", "pro", "ACTIVE")
    assert canceled["status"] == "CANCELED"
    assert {e["data"]["customerId"] for e in receiver.events()} == {"acme"}


def test_other_environments_and_unsubscribed_types_get_nothing(
    server: LiveServer, api: httpx.Client, receivers: Any
) -> None:
    mine, other_env, other_type, disabled = receivers(), receivers(), receivers(), receivers()
    create_hook(api, mine.url, ["customer.created"])
    create_hook(api, other_type.url, ["subscription.created"])
    create_hook(api, disabled.url, ["customer.created"], enabled=False)
    with server.http(server.key("production")) as prod:
        create_hook(prod, other_env.url, ALL_TYPES)
        assert [h["url"] for h in prod.get("/api/v1/webhooks").json()["data"]] == [other_env.url]

    api.post("/api/v1/customers", json={"id": "c1"})
    drain(server)
    assert [e["type"] for e in mine.events()] == ["customer.created"]
    assert other_env.requests == other_type.requests == disabled.requests == []


def test_a_delivery_is_skipped_when_its_endpoint_is_disabled_or_deleted(
    server: LiveServer, api: httpx.Client, receivers: Any
) -> None:
    receiver = receivers()
    first = create_hook(api, receiver.url, ["customer.created"])
    second = create_hook(api, receiver.url, ["customer.created"])
    api.post("/api/v1/customers", json={"id": "c1"})
    assert api.patch(f"/api/v1/webhooks/{first['id']}", json={"enabled": False}).json()["data"]["enabled"] is False
    assert api.delete(f"/api/v1/webhooks/{second['id']}").status_code == 200
    drain(server)
    assert receiver.requests == []
    assert api.get(f"/api/v1/webhooks/{second['id']}").status_code == 404


def test_redeliver(server: LiveServer, api: httpx.Client, receivers: Any) -> None:
    receiver = receivers()
    hook = create_hook(api, receiver.url, ["customer.created"])
    api.post("/api/v1/customers", json={"id": "c1"})
    drain(server)
    delivery = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"][0]
    again = api.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver")
    assert again.status_code == 200, again.text
    assert again.json()["data"]["eventId"] == delivery["eventId"]
    drain(server)
    assert [e["id"] for e in receiver.events()] == [delivery["eventId"]] * 2
    assert len(api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]) == 2

    assert api.post("/api/v1/webhooks/deliveries/999999/redeliver").status_code == 404
    assert api.post("/api/v1/webhooks/deliveries/x1/redeliver").status_code == 404

    # A disabled endpoint is sent nothing, so a redelivery to it is refused rather than queued to be dropped.
    assert api.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": False}).status_code == 200
    refused = api.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "FAILED_PRECONDITION" and "disabled" in refused.json()["error"]["message"]
    assert api.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": True}).status_code == 200
    drain(server)
    assert len(receiver.events()) == 2
    with server.http(server.key("production")) as prod:
        assert prod.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver").status_code == 404
        assert prod.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 404


def test_crud_and_pagination(server: LiveServer, api: httpx.Client) -> None:
    ids = [create_hook(api, f"https://example.test/{n}", ["customer.created"])["id"] for n in range(3)]
    assert len(set(ids)) == 3
    page = api.get("/api/v1/webhooks", params={"limit": 2}).json()
    assert [h["id"] for h in page["data"]] == ids[:2]
    rest = api.get("/api/v1/webhooks", params={"after": page["pagination"]["next"]}).json()
    assert [h["id"] for h in rest["data"]] == ids[2:]

    patched = api.patch(
        f"/api/v1/webhooks/{ids[0]}",
        json={"url": "https://example.test/new", "eventTypes": ["subscription.created"], "description": "d"},
    ).json()["data"]
    assert (patched["url"], patched["eventTypes"], patched["description"], patched["enabled"]) == (
        "https://example.test/new",
        ["subscription.created"],
        "d",
        True,
    )
    assert api.get(f"/api/v1/webhooks/{ids[0]}").json()["data"] == patched
    deleted = api.delete(f"/api/v1/webhooks/{ids[0]}")
    assert deleted.status_code == 200 and deleted.json()["data"]["id"] == ids[0]
    for method in ("GET", "PATCH", "DELETE"):
        missing = api.request(method, f"/api/v1/webhooks/{ids[0]}", json={} if method == "PATCH" else None)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")


def test_validation_errors(server: LiveServer, api: httpx.Client) -> None:
    bad_bodies: list[dict[str, Any]] = [
        {"eventTypes": ["customer.created"]},  # no url
        {"url": "ftp://example.test", "eventTypes": ["customer.created"]},
        {"url": "example.test/hook", "eventTypes": ["customer.created"]},
        {"url": "http://", "eventTypes": ["customer.created"]},
        {"url": "https://example.test"},  # no event types
        {"url": "https://example.test", "eventTypes": []},
        {"url": "https://example.test", "eventTypes": ["customer.exploded"]},
        {"url": "https://example.test", "eventTypes": ["customer.created", "customer.created"]},
        {"url": "https://example.test", "eventTypes": ["customer.created"], "secret": "hunter2"},
        {"url": "https://example.test", "eventTypes": ["customer.created"], "secret": "whsec_not*base64"},
        {"url": "https://example.test", "eventTypes": ["customer.created"], "secret": "whsec_c2hvcnQ="},
        {"url": "https://example.test", "eventTypes": ["customer.created"], "enabled": "maybe"},
    ]
    for body in bad_bodies:
        response = api.post("/api/v1/webhooks", json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), body
    hook = create_hook(api, "https://example.test", ["customer.created"])
    for patch in ({"url": None}, {"eventTypes": None}, {"enabled": None}, {"eventTypes": []}, {"url": "nope"}):
        response = api.patch(f"/api/v1/webhooks/{hook['id']}", json=patch)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "INVALID_ARGUMENT"), patch
    assert api.get("/api/v1/webhooks").json()["data"][0]["url"] == "https://example.test"


def test_server_key_required(server: LiveServer) -> None:
    with server.http(server.key(kind=KeyKind.CLIENT)) as browser:
        response = browser.get("/api/v1/webhooks")
        assert (response.status_code, response.json()["error"]["code"]) == (403, "PERMISSION_DENIED")
    with server.http("") as nobody:
        assert nobody.post("/api/v1/webhooks", json={}).status_code == 401
