"""Parallel consumptions and reservations from two `entitle serve` processes on one database never spend
the same credit twice: the wallet's row lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite) serializes them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import stigg

from tests.conftest import LiveServer
from tests.support.server import serve_process


@pytest.fixture
def second_server(server: LiveServer, database_url: str, tmp_path: Path) -> Iterator[str]:
    with serve_process(database_url, tmp_path / "second") as base:
        yield base


def _in_parallel(server: LiveServer, bases: list[str], work: Callable[[httpx.Client, str], None]) -> None:
    """`work` in three threads per server; what a thread raised (a failed assertion, a transport error)
    fails the test with it, rather than leaving a thread's share of the work silently undone."""
    raised: list[BaseException] = []

    def run(base: str, tag: str) -> None:
        try:
            with httpx.Client(base_url=base, headers={"X-API-KEY": server.server_key}, timeout=60) as api:
                work(api, tag)
        except BaseException as exc:
            raised.append(exc)

    threads = [threading.Thread(target=run, args=(base, f"{i}{n}")) for i, base in enumerate(bases) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not [t for t in threads if t.is_alive()], "a thread was still at work after 300 s"
    if raised:
        raise raised[0]


def test_two_processes_never_spend_a_credit_twice(server: LiveServer, client: stigg.Stigg, second_server: str) -> None:
    client.v1.customers.provision(id="c")
    client.v1.credits.custom_currencies.create(id="credits", display_name="Credits")
    for amount, priority in ((30, 1), (30, 2), (20, 3)):
        client.v1.credits.grants.create(
            customer_id="c",
            currency_id="credits",
            amount=amount,
            display_name="g",
            grant_type="PAID",
            priority=priority,
        )
    errors: list[str] = []
    per_thread = 20

    def consume(api: httpx.Client, tag: str) -> None:
        for i in range(per_thread):
            body = {"customerId": "c", "currencyId": "credits", "amount": 1, "idempotencyKey": f"{tag}-{i}"}
            for _ in range(2 if i % 4 == 0 else 1):  # some retried, as a client would after a timeout
                answer = api.post("/api/v1/credits/consumption", json=body)
                if answer.status_code != 200:
                    errors.append(f"{body['idempotencyKey']}: {answer.status_code} {answer.text}")

    _in_parallel(server, [server.base_url, second_server], consume)
    assert errors == []
    spent = per_thread * 6  # 120 distinct keys against 80 credits: 40 overdrawn
    grants = list(client.v1.credits.grants.list(customer_id="c"))
    regular = [g for g in grants if g.grant_type != "OVERDRAFT"]
    assert all(g.consumed_amount == g.amount for g in regular)
    assert [g.consumed_amount for g in grants if g.grant_type == "OVERDRAFT"] == [spent - 80]
    check = client.v1.customers.check_entitlement("c", currency_id="credits").data
    assert (check.usage_limit, check.current_usage) == (80, spent)
    ledger = list(client.v1.credits.list_ledger(customer_id="c", limit=100))
    consumed = [e for e in ledger if e.event_type == "CREDITS_CONSUMED"]
    assert sum(Decimal(str(e.amount)) for e in consumed) == -spent
    assert len({e.event_id for e in consumed}) == spent  # every key once, none twice
    assert sum(Decimal(str(e.amount)) for e in ledger) == 80 - spent


def test_parallel_reservations_hold_no_credit_twice(
    server: LiveServer, client: stigg.Stigg, second_server: str
) -> None:
    client.v1.customers.provision(id="c")
    client.v1.credits.custom_currencies.create(id="credits", display_name="Credits")
    client.v1.credits.grants.create(
        customer_id="c", currency_id="credits", amount=60, display_name="g", grant_type="PAID"
    )
    granted: list[str] = []
    lock = threading.Lock()

    def reserve(api: httpx.Client, tag: str) -> None:
        for i in range(5):
            params = {"currencyId": "credits", "reserveAmount": "5", "reservationId": f"{tag}-{i}"}
            answer = api.get("/api/v1/customers/c/entitlements/check", params=params)
            assert answer.status_code == 200, answer.text
            if answer.json()["data"]["isGranted"]:
                with lock:
                    granted.append(f"{tag}-{i}")

    _in_parallel(server, [server.base_url, second_server], reserve)
    assert len(granted) == 12  # 30 asked for 5 each, 60 credits: exactly 12 holds fit
    check = client.v1.customers.check_entitlement("c", currency_id="credits").data
    assert (check.reserved, check.current_usage, check.usage_limit) == (60, 60, 60)
