"""CPU per entitlement check and list in one process, beside the constant route: the figure the machine's
load changes least.

    .venv/bin/python bench/check_cpu.py [--database sqlite|postgresql] [--requests N] [--rounds R]

bench/entitlement_checks.py measures through wrk and the kernel: on a shared machine its req/s, and even
its ratios, swing with the other processes. This one counts the event-loop thread's CPU
(`time.thread_time`) per request, two ways, in the process that serves:

- asgi: the app called with each request's scope (middleware, dispatch or routing, the answer);
- http: uvicorn's own httptools protocol fed each request's bytes over an in-memory transport, so its
  parsing, the task it starts per request and its response writing count too (no socket, no wrk).

The same seeding as entitlement_checks.py (20 features x 50 customers, rotating customers, features and
requestedUsage), the app started with its lifespan (snapshot fed, key cache) on uvloop, the constant
async route first in the route table. Rounds alternate between the scenarios; each prints its minimum
and median, and the constant route's minimum over its own (the ratio the issue's targets are about).
Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from entitlement_checks import CONSTANT_ASYNC_PATH, CUSTOMERS, FEATURES, seed_with
from in_process import feed, served_app

KINDS = ("constant", "check", "list")


def paths(kind: str, ids: list[str], count: int) -> list[tuple[str, str]]:
    """(path, query) of each request, rotating as the wrk script does."""
    found = []
    for n in range(count):
        customer = n % CUSTOMERS
        if kind == "check":
            feature = ids[(n // CUSTOMERS) % FEATURES]
            query = f"featureId={feature}&requestedUsage={n % 7 + 1}"
            found.append((f"/api/v1/customers/c{customer}/entitlements/check", query))
        elif kind == "list":
            found.append((f"/api/v1/customers/c{customer}/entitlements", ""))
        else:
            found.append((CONSTANT_ASYNC_PATH, ""))
    return found


def scope_of(path: str, query: str, key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"x-api-key", key.encode())],
        "state": {},
    }


async def through_asgi(app: Any, requests: list[tuple[str, str]], key: str) -> float:
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scopes = [scope_of(path, query, key) for path, query in requests]
    started = time.thread_time()
    for scope in scopes:
        await app(scope, receive, send)
    spent = time.thread_time() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"answers other than 200: {set(statuses)}")
    return spent / len(scopes)


async def through_http(app: Any, requests: list[tuple[str, str]], key: str) -> float:
    head = f"HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-API-KEY: {key}\r\n\r\n"
    raw = [f"GET {path}{'?' + query if query else ''} {head}".encode() for path, query in requests]
    return await feed(app, raw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round and scenario (2000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, alternating the scenarios (7)")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    with served_app(args.database, CONSTANT_ASYNC_PATH) as served:  # constant first, as in entitlement_checks.py
        app, key = served.app, served.key
        options = {"use_uvloop": True}
        with TestClient(app, headers={"X-API-KEY": key}, backend_options=options) as client:
            ids = seed_with(client)
            requests = {kind: paths(kind, ids, args.requests) for kind in KINDS}
            ways: dict[str, Callable[..., Any]] = {"asgi": through_asgi, "http": through_http}
            for way in ways.values():  # warm-up: every customer read once
                for kind in KINDS:
                    client.portal.call(way, app, requests[kind][: 2 * CUSTOMERS], key)
            spent: dict[tuple[str, str], list[float]] = {(w, k): [] for w in ways for k in KINDS}
            for _ in range(args.rounds):
                for way_name, way in ways.items():
                    for kind in KINDS:
                        spent[way_name, kind].append(client.portal.call(way, app, requests[kind], key) * 1e6)

    print(
        f"Entitle check CPU in process: {args.database}; {FEATURES} features x {CUSTOMERS} customers; "
        f"{args.rounds} rounds of {args.requests} requests each; load average {_load():.2f}"
    )
    print(f"\n{'way':<5} {'scenario':<10} {'min us':>8} {'median us':>10} {'vs constant':>12}")
    for way_name in ways:
        floor = min(spent[way_name, "constant"])
        for kind in KINDS:
            samples = spent[way_name, kind]
            ratio = floor / min(samples)
            print(f"{way_name:<5} {kind:<10} {min(samples):>8.1f} {statistics.median(samples):>10.1f} {ratio:>11.0%}")
    return 0


def _load() -> float:
    import os

    return os.getloadavg()[0]


if __name__ == "__main__":
    sys.exit(main())
