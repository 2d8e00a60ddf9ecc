"""Issue 12, item 4: provisioning a customer with `subscriptionParams` costs a bounded number of SQL
statements, the same whatever the size of the plan and however many customers came before; and the
reads it skips are skipped only when what they would read cannot be there; and, over HTTP, it takes one
worker-thread hop (the use case, which reads the key as its transaction's first statement).
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from entitle import wiring
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.grants.engine import resource_key
from entitle.subscriptions import journey
from entitle.subscriptions.schemas import CustomerProvisionWithSubscription
from entitle.usage import batch_store, waiting
from entitle.usage import store as usage_store
from tests.conftest import LiveServer
from tests.support.facts import wait_until_heard
from tests.support.statements import statements

PLAIN = [f"plain-{n}" for n in range(12)]
METERED = [f"metered-{n}" for n in range(4)]
# What one provisioning sends in its transaction, the same on both engines: on SQLite BEGIN IMMEDIATE and
# the SAVEPOINT / RELEASE of its place in a group commit among them; on PostgreSQL the advisory locks of
# usage and of the push log instead. It was 19 on SQLite and 20 on PostgreSQL before the reads a new
# customer cannot need were dropped, then 15 until the customer's id was left to its unique key and a
# free plan's charges went unread, then 13 until the sync states of a customer in an environment known to
# have no billing integration went unread, then 12 until the requested plan was read with the published
# products (one statement), then 9 (7 on SQLite) once what the environment lacks (enabled webhook endpoints,
# billing integrations, a catalog granting credits) was known to the process (`entitle.environments.facts`:
# three reads replaced by one of the change log's unread rows); the HTTP request adds the API key's read
# (inside the transaction, over HTTP) and, with an actor, the audit log's one INSERT at commit.
BOUND = 9
_ids = itertools.count()


@pytest.fixture(scope="module")
def catalog(module_server: LiveServer) -> tuple[LiveServer, int]:
    with module_server.http() as api:
        for ref in METERED:
            meter = {"aggregation": {"function": "SUM", "field": "tokens"}, "filters": []}
            body = {"id": ref, "displayName": ref, "featureType": "NUMBER", "meterType": "INCREMENTAL", "meter": meter}
            api.post("/api/v1/features", json=body).raise_for_status()
        for ref in PLAIN:
            body = {"id": ref, "displayName": ref, "featureType": "BOOLEAN"}
            api.post("/api/v1/features", json=body).raise_for_status()
        metered = [{"type": "FEATURE", "id": ref, "usageLimit": 1000, "resetPeriod": "MONTH"} for ref in METERED]
        plans = {
            "small": [{"type": "FEATURE", "id": PLAIN[0]}],
            "large": [{"type": "FEATURE", "id": ref} for ref in PLAIN] + metered,
        }
        for plan, entitlements in plans.items():
            _publish(api, plan, plan, entitlements)
    wait_until_heard(module_server.db)  # what the environment lacks is trusted from the first provisioning on
    return module_server, ensure_environment(module_server.db, "development").pk


def _publish(api: httpx.Client, product: str, plan: str, entitlements: list[dict[str, Any]]) -> None:
    api.post("/api/v1/products", json={"id": product, "displayName": product}).raise_for_status()
    api.post("/api/v1/plans", json={"id": plan, "displayName": plan, "productId": product}).raise_for_status()
    api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": entitlements}).raise_for_status()
    api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()


def _provision(db: Database, env_id: int, plan: str) -> str:
    customer_id = f"customer-{next(_ids)}"
    body = {"id": customer_id, "subscriptionParams": {"planId": plan}}
    journey.provision_customer(db, env_id, CustomerProvisionWithSubscription.model_validate(body))
    return customer_id


def test_statements_are_bounded_by_neither_the_plan_nor_the_customers_before(catalog: tuple[LiveServer, int]) -> None:
    server, env_id = catalog
    db = server.db
    _provision(db, env_id, "small")  # what a process loads once (mappers, caches)
    counted: dict[str, int] = {}
    for plan in ("small", "large"):
        with statements(db) as seen:
            _provision(db, env_id, plan)
        counted[plan] = len(seen)
    for _ in range(25):
        _provision(db, env_id, "large")
    with statements(db) as seen:
        _provision(db, env_id, "large")
    counted["large after 25 more"] = len(seen)
    assert len(set(counted.values())) == 1, counted
    assert counted["large"] <= BOUND, (counted, seen)


def test_a_journey_start_plan_of_another_product_is_provisioned_beside_the_requested_one(
    catalog: tuple[LiveServer, int],
) -> None:
    """The reads skipped for a new customer (its open subscriptions, its trials) hold for every product
    the journey starts it on: each gets its own first subscription."""
    server, env_id = catalog
    with server.http() as api:
        _publish(api, "starter-product", "starter", [{"type": "FEATURE", "id": PLAIN[1]}])
        settings = {
            "subscriptionCancellationTime": "END_OF_BILLING_PERIOD",
            "subscriptionEndSetup": "CANCEL_SUBSCRIPTION",
            "subscriptionStartSetup": "FREE_PLAN",
            "subscriptionStartPlanId": "starter",
        }
        api.patch("/api/v1/products/starter-product", json={"productSettings": settings}).raise_for_status()
        try:
            customer_id = _provision(server.db, env_id, "small")
            subs = api.get("/api/v1/subscriptions", params={"customerId": customer_id}).json()["data"]
        finally:
            off = settings | {"subscriptionStartSetup": "PLAN_SELECTION", "subscriptionStartPlanId": None}
            api.patch("/api/v1/products/starter-product", json={"productSettings": off}).raise_for_status()
    assert sorted((s["planId"], s["status"]) for s in subs) == [("small", "ACTIVE"), ("starter", "ACTIVE")]


def test_a_fold_that_found_nothing_waiting_looks_again_once_usage_waits(db: Database) -> None:
    """The fold before commit is skipped for an owner an earlier fold of the transaction found nothing
    for, unless the transaction itself wrote waiting usage since; and the finding ends with the
    transaction."""
    wiring.install()
    env_id = ensure_environment(db, "development").pk
    owner = (env_id, "not-yet", resource_key(None))
    with db.transaction() as s:
        waiting.fold_waiting(s, env_id, "not-yet", None)
        assert owner in usage_store.nothing_waits(s)
        batch_store.locked_waitings(s, env_id, [("not-yet", resource_key(None), METERED[0])])
        assert owner not in usage_store.nothing_waits(s)
        waiting.fold_waiting(s, env_id, "not-yet", None)  # finds the row: the customer holds nothing yet
        assert owner not in usage_store.nothing_waits(s)
    with Session(db.write_engine) as s:
        with s.begin():
            waiting.fold_waiting(s, env_id, "someone", None)
            assert (env_id, "someone", resource_key(None)) in usage_store.nothing_waits(s)
        assert not usage_store.nothing_waits(s)


def test_a_provisioning_request_takes_one_worker_thread_hop(
    catalog: tuple[LiveServer, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The use case, which reads the key itself (`KeyRead`): FastAPI runs every plain-function dependency,
    and the validation of a plain function's return value, in a worker thread of their own (each hop
    wakes two threads); the request's dependencies are coroutines and its answer is written once
    (`enveloped_response`). The key's use was recorded by an earlier request (once a minute)."""
    import anyio.to_thread

    from entitle.environments.service import authenticate
    from entitle.subscriptions.routes import provision_customer

    server, _ = catalog
    hops: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(function)
        return await run_sync(function, *args, **kwargs)

    with server.http() as api:
        monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
        body = {"id": f"customer-{next(_ids)}", "subscriptionParams": {"planId": "small"}}
        answer = api.post("/api/v1/customers", json=body)
        monkeypatch.undo()
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["id"] == body["id"]

    def what(hop: Any) -> Any:
        # run_in_threadpool hands over a partial; FastAPI's endpoint runner gets the endpoint among its arguments.
        called = getattr(hop, "func", hop)
        given = (*getattr(hop, "args", ()), *getattr(hop, "keywords", {}).values())
        return provision_customer if any(value is provision_customer for value in given) else called

    # A background task of the server may hop meanwhile: only what runs the request's own code counts.
    mine = [what(hop) for hop in hops if getattr(what(hop), "__module__", "").startswith(("entitle", "fastapi"))]
    assert authenticate not in mine
    assert mine == [provision_customer]


def test_a_taken_id_is_refused_by_the_unique_key_with_the_lookups_answer(catalog: tuple[LiveServer, int]) -> None:
    """The customer's id is not read before its insert: the unique key refuses a taken one, and the answer
    is the 409 the read gave (CUSTOMER_ARCHIVED for an archived id), with nothing of the refused attempt
    kept: no second subscription, no audit entry, no change to the customer."""
    server, _ = catalog
    live, gone = f"customer-{next(_ids)}", f"customer-{next(_ids)}"
    with server.http() as api:
        for customer_id in (live, gone):
            body = {"id": customer_id, "name": "First", "subscriptionParams": {"planId": "small"}}
            api.post("/api/v1/customers", json=body).raise_for_status()
        api.post(f"/api/v1/customers/{gone}/archive").raise_for_status()

        def kept() -> dict[str, Any]:
            audit = api.get("/api/v1/audit-log", params={"limit": 100}).json()["data"]
            return {
                "subscriptions": {
                    ref: [
                        s["planId"] for s in api.get("/api/v1/subscriptions", params={"customerId": ref}).json()["data"]
                    ]
                    for ref in (live, gone)
                },
                "audit": [(e["entityType"], e["entityId"], e["action"]) for e in audit],
                "customer": api.get(f"/api/v1/customers/{live}").json()["data"]["name"],
            }

        before = kept()
        refused = {}
        for customer_id in (live, gone):
            for body in (
                {"id": customer_id, "name": "Second", "subscriptionParams": {"planId": "large"}},
                {"id": customer_id, "name": "Second"},
            ):
                answer = api.post("/api/v1/customers", json=body)
                refused[(customer_id, "subscriptionParams" in body)] = (
                    answer.status_code,
                    answer.json()["error"]["code"],
                )
        after = kept()
    assert refused == {
        (live, True): (409, "ALREADY_EXISTS"),
        (live, False): (409, "ALREADY_EXISTS"),
        (gone, True): (409, "CUSTOMER_ARCHIVED"),
        (gone, False): (409, "CUSTOMER_ARCHIVED"),
    }
    assert after == before
    assert before["subscriptions"][live] == ["small"] and before["customer"] == "First"
