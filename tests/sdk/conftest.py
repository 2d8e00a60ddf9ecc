"""SDK test kit: a seeded catalog on the live server, and a transport that counts real requests."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

CALLS_LIMIT = 10
SEATS_LIMIT = 5


def seed(api: httpx.Client, customers: tuple[str, ...] = ("c1",)) -> None:
    """Features of every kind, plans `basic` and `pro`, and the customers on `basic`."""
    features = [
        {"id": "flag", "displayName": "Flag", "featureType": "BOOLEAN"},
        {"id": "seats", "displayName": "Seats", "featureType": "NUMBER"},
        {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
        {
            "id": "regions",
            "displayName": "Regions",
            "featureType": "ENUM",
            "enumConfiguration": [{"value": v, "displayName": v} for v in ("eu", "us", "apac")],
        },
        {
            "id": "api-events",
            "displayName": "API events",
            "featureType": "NUMBER",
            "meterType": "INCREMENTAL",
            "meter": {
                "aggregation": {"function": "COUNT"},
                "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "api_call"}]}],
            },
        },
    ]
    for body in features:
        api.post("/api/v1/features", json=body).raise_for_status()
    api.post("/api/v1/products", json={"id": "app", "displayName": "App"}).raise_for_status()
    grants = {
        "basic": [
            {"type": "FEATURE", "id": "flag"},
            {"type": "FEATURE", "id": "seats", "usageLimit": SEATS_LIMIT},
            {"type": "FEATURE", "id": "calls", "usageLimit": CALLS_LIMIT, "resetPeriod": "MONTH"},
            {"type": "FEATURE", "id": "regions", "enumValues": ["eu", "us"]},
            {"type": "FEATURE", "id": "api-events", "usageLimit": 10**9, "resetPeriod": "MONTH"},
        ],
        "pro": [
            {"type": "FEATURE", "id": "flag"},
            {"type": "FEATURE", "id": "calls", "hasUnlimitedUsage": True, "resetPeriod": "MONTH"},
        ],
    }
    for plan, entitlements in grants.items():
        api.post("/api/v1/plans", json={"id": plan, "displayName": plan, "productId": "app"}).raise_for_status()
        api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": entitlements}).raise_for_status()
        api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
    for customer in customers:
        body = {"id": customer, "subscriptionParams": {"planId": "basic"}}
        api.post("/api/v1/customers", json=body).raise_for_status()


class CountingTransport(httpx.BaseTransport):
    """Sends every request to the server for real (httpx's own transport) and counts them by path."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.paths: Counter[str] = Counter()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        with self._lock:
            self.paths[request.url.path] += 1
        return response

    def close(self) -> None:
        self.inner.close()

    @property
    def total(self) -> int:
        return sum(self.paths.values())


class AsyncCountingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.paths[request.url.path] += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def total(self) -> int:
        return sum(self.paths.values())


@pytest.fixture
def seeded(server: LiveServer, api: httpx.Client) -> Iterator[LiveServer]:
    seed(api)
    yield server


def closed_port_url() -> str:
    """A base URL nothing listens on (connection refused at once)."""
    from tests.support.ports import free_port

    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway `redis-server` on a free port, persisting nothing; skipped (saying why) when the
    binary is missing (`.ci/run` installs it: `apt-get install redis-server`)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); the Redis backend is untested")
    from tests.support.ports import with_free_port

    workdir: Path = tmp_path_factory.mktemp("redis")
    proc, port = with_free_port(lambda port: _start_redis(binary, port, workdir))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _start_redis(binary: str, port: int, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket_to(port) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)


def socket_to(port: int) -> Any:
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=2)
