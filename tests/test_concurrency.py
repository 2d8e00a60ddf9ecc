"""Real parallel requests, through two server processes on one database: no usage update is lost,
and no idempotency key counts twice."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import stigg

from tests.conftest import LiveServer
from tests.support.server import serve_process


@pytest.fixture
def second_server(server: LiveServer, database_url: str, tmp_path: Path) -> Iterator[str]:
    """Another `entitle serve` process on the same database."""
    with serve_process(database_url, tmp_path / "second") as base:
        yield base


def _setup(client: stigg.Stigg) -> None:
    client.v1.features.create_feature(id="calls", display_name="Calls", feature_type="NUMBER", meter_type="INCREMENTAL")
    client.v1.products.create_product(id="p", display_name="P")
    client.v1.plans.create(id="basic", display_name="Basic", product_id="p", pricing_type="FREE")
    client.v1.plans.entitlements.create(
        "basic", entitlements=[{"type": "FEATURE", "id": "calls", "usage_limit": 10**6}]
    )
    client.v1.plans.publish("basic", migration_type="NEW_CUSTOMERS")
    client.v1.customers.provision(id="c")
    client.v1.subscriptions.provision(customer_id="c", plan_id="basic")


def _run_at_once(work: Callable[[str, str], None], calls: list[tuple[str, str]]) -> None:
    """Each call on its own thread, all at once; a call that raised fails the test with its exception,
    and one still running after 300 s fails it too (rather than leaving its share silently undone)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        for running in [pool.submit(work, *call) for call in calls]:
            running.result(timeout=300)


def test_two_processes_reporting_at_once_lose_no_update(
    server: LiveServer, client: stigg.Stigg, second_server: str
) -> None:
    _setup(client)
    per_thread, threads_per_server = 25, 3
    errors: list[str] = []

    def hammer(base: str, tag: str) -> None:
        with httpx.Client(base_url=base, headers={"X-API-KEY": server.server_key}, timeout=60) as api:
            for i in range(per_thread):
                body = {
                    "usages": [{"customerId": "c", "featureId": "calls", "value": 1, "idempotencyKey": f"{tag}-{i}"}]
                }
                response = api.post("/api/v2/usage", json=body)
                if response.status_code != 200:
                    errors.append(response.text)
                if i % 5 == 0:  # a retry of the same report, as a client would after a timeout
                    api.post("/api/v2/usage", json=body)

    _run_at_once(
        hammer,
        [
            (base, f"{name}{n}")
            for name, base in (("a", server.base_url), ("b", second_server))
            for n in range(threads_per_server)
        ],
    )
    assert errors == []
    expected = per_thread * threads_per_server * 2
    result = client.v1.customers.check_entitlement("c", feature_id="calls").data
    assert result.current_usage == expected


def test_concurrent_reports_past_a_hard_limit_are_all_recorded(
    server: LiveServer, client: stigg.Stigg, second_server: str
) -> None:
    client.v1.features.create_feature(id="calls", display_name="Calls", feature_type="NUMBER", meter_type="INCREMENTAL")
    client.v1.products.create_product(id="p", display_name="P")
    client.v1.plans.create(id="capped", display_name="Capped", product_id="p", pricing_type="FREE")
    client.v1.plans.entitlements.create("capped", entitlements=[{"type": "FEATURE", "id": "calls", "usage_limit": 100}])
    client.v1.plans.publish("capped", migration_type="NEW_CUSTOMERS")
    client.v1.customers.provision(id="c")
    client.v1.subscriptions.provision(customer_id="c", plan_id="capped")
    accepted: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def hammer(base: str, tag: str) -> None:
        with httpx.Client(base_url=base, headers={"X-API-KEY": server.server_key}, timeout=60) as api:
            for i in range(15):
                body = {
                    "usages": [{"customerId": "c", "featureId": "calls", "value": 3, "idempotencyKey": f"{tag}-{i}"}]
                }
                response = api.post("/api/v2/usage", json=body)
                with lock:
                    if response.status_code == 200:
                        accepted.append(3)
                    else:
                        refused.append(response.status_code)

    _run_at_once(
        hammer,
        [(base, f"{name}{n}") for name, base in (("a", server.base_url), ("b", second_server)) for n in range(3)],
    )
    # Usage records what happened: none is refused for the limit, and none is lost or counted twice.
    assert refused == []
    final = client.v1.customers.check_entitlement("c", feature_id="calls").data
    assert final.current_usage == sum(accepted) == 6 * 15 * 3
    assert (final.is_granted, final.access_denied_reason) == (False, "RequestedUsageExceedingLimit")
