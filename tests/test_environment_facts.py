"""Issue 12: what a process knows an environment lacks (`entitle.environments.facts`: no enabled webhook
endpoint, no billing integration, no credit-granting catalog) spares a warm provisioning those reads, and
each fact follows the writes that break it from the next request on: in the process that wrote, and in
another `entitle serve` process (through the change log, read by its hub, or by the request itself when
its hub has not read it yet); a process whose hub may have missed changes keeps none.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from entitle.billing.models import STRIPE, Integration
from entitle.billing.store import NO_INTEGRATION
from entitle.credits.store import NO_CREDIT_CATALOG
from entitle.db import Database
from entitle.environments import facts
from entitle.environments.service import ensure_environment
from entitle.jobs.models import Job
from entitle.push import service as push_service
from entitle.webhooks.models import JOB_DELIVER
from entitle.webhooks.store import NO_ENABLED_ENDPOINT
from tests.conftest import LiveServer
from tests.support.facts import wait_until_heard
from tests.support.server import serve_process
from tests.support.statements import statements

_ids = itertools.count()
# Where each fact's rows live: a warm provisioning names none of these tables.
FACT_TABLES = ("webhook_endpoints", "integrations", "package_entitlements", "package_charges", "credit_grants")


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json()["data"]


def _publish(api: httpx.Client, product: str, plan: str, entitlements: list[dict[str, Any]]) -> None:
    _ok(api.post("/api/v1/plans", json={"id": plan, "displayName": plan, "productId": product}))
    if entitlements:
        _ok(api.post(f"/api/v1/plans/{plan}/entitlements", json={"entitlements": entitlements}))
    _ok(api.post(f"/api/v1/plans/{plan}/publish", json={"migrationType": "NEW_CUSTOMERS"}))


def _catalog(api: httpx.Client) -> None:
    _ok(api.post("/api/v1/products", json={"id": "app", "displayName": "App"}))
    _publish(api, "app", "free", [])


def _credit_catalog(api: httpx.Client) -> None:
    """A currency and a plan granting 10 of it a month: the environment's catalog grants credits now."""
    _ok(api.post("/api/v1/credits/custom-currencies", json={"id": "ai", "displayName": "AI credits"}))
    _publish(api, "app", "credited", [{"type": "CREDIT", "id": "ai", "amount": 10, "cadence": "MONTH"}])


def _provision(api: httpx.Client, plan: str = "free", *, billed: bool = False) -> tuple[str, httpx.Response]:
    """`billed`: with billing information for Stripe, which needs an integration (400 without one)."""
    customer = f"facts-{next(_ids)}"
    body: dict[str, Any] = {"id": customer, "subscriptionParams": {"planId": plan}}
    if billed:
        body["passthrough"] = {"stripe": {"customerName": "Ada"}}
    return customer, api.post("/api/v1/customers", json=body)


def _integrate(db: Database, env_id: int) -> None:
    """A Stripe integration's row, as connecting one writes it (the provider is never called here)."""
    with db.transaction() as s:
        s.add(
            Integration(
                environment_id=env_id,
                ref_id=str(uuid.uuid4()),
                vendor=STRIPE,
                secret_key_encrypted="unused",
                secret_key_hint="sk_test_...",
            )
        )


def _deliveries(db: Database, customer: str) -> int:
    with db.read() as s:
        jobs = s.scalars(select(Job.payload).where(Job.kind == JOB_DELIVER)).all()
    return sum(1 for payload in jobs if payload["event"]["data"].get("customerId") == customer)


def _grants(api: httpx.Client, customer: str) -> int:
    found = api.get("/api/v1/credits/grants", params={"customerId": customer, "currencyId": "ai"})
    if found.status_code == 404:  # the currency is not there yet
        return 0
    return len(_ok(found))


def _effects(server: LiveServer, api: httpx.Client, customer: str, answer: httpx.Response) -> dict[str, bool]:
    """What each broken fact changes in a provisioning: a delivery queued for the new endpoint, billing
    information taken for the integration (and its sync shown), the plan's credits granted."""
    if answer.status_code == 400:
        assert answer.json()["error"]["code"] == "BILLING_INTEGRATION_REQUIRED", answer.text
        return {"webhook delivery": False, "sync state": False, "credits granted": False}
    return {
        "webhook delivery": _deliveries(server.db, customer) > 0,
        "sync state": bool(_ok(answer)["syncStates"]),
        "credits granted": _grants(api, customer) > 0,
    }


def _break_every_fact(server: LiveServer, api: httpx.Client, env_id: int) -> None:
    _ok(api.post("/api/v1/webhooks", json={"url": "https://example.com/hook", "eventTypes": ["customer.created"]}))
    _credit_catalog(api)
    _integrate(server.db, env_id)  # last: another process's hub has most likely not read it before its next request


def test_a_warm_provisioning_reads_none_and_each_fact_follows_this_process_writes(
    server: LiveServer, api: httpx.Client
) -> None:
    env_id = ensure_environment(server.db, "development").pk
    _catalog(api)
    _ok(_provision(api)[1])  # learns every fact
    wait_until_heard(server.db)
    with statements(server.db, this_thread_only=False) as seen:
        customer, answer = _provision(api)
    read = " ".join(seen)
    assert [table for table in FACT_TABLES if table in read] == []
    assert _ok(answer)["syncStates"] == [] and _deliveries(server.db, customer) == 0

    _break_every_fact(server, api, env_id)
    customer, answer = _provision(api, "credited", billed=True)  # the very next request of this process
    assert _effects(server, api, customer, answer) == {
        "webhook delivery": True,
        "sync state": True,
        "credits granted": True,
    }


def test_another_process_follows_each_fact_from_its_next_request(
    server: LiveServer, api: httpx.Client, database_url: str, tmp_path: Any
) -> None:
    env_id = ensure_environment(server.db, "development").pk
    _catalog(api)
    with (
        serve_process(database_url, tmp_path / "second") as second,
        httpx.Client(base_url=second, headers={"X-API-KEY": server.server_key}, timeout=30) as there,
    ):
        customer, answer = _provision(there)  # the other process learns every fact
        assert _effects(server, api, customer, answer) == dict.fromkeys(
            ("webhook delivery", "sync state", "credits granted"), False
        )
        _break_every_fact(server, api, env_id)
        # At once, whether or not the other process's hub has read the change yet: it finds it in the log.
        customer, answer = _provision(there, "credited", billed=True)
        assert _effects(server, api, customer, answer) == {
            "webhook delivery": True,
            "sync state": True,
            "credits granted": True,
        }


def test_a_fact_is_kept_only_while_the_log_is_heard_and_no_drop_came_after_the_read_began(db: Database) -> None:
    """And it holds only while the change log has no unread change of it: what another process committed
    a moment ago is found there, before this process's hub reads it."""
    env_id = ensure_environment(db, "development").pk
    database = facts.database_key(db.url)
    feed = object()
    try:
        with db.transaction() as s:
            s.scalar(select(func.count()).select_from(Job))
            NO_ENABLED_ENDPOINT.learned(s, env_id)  # no hub caught up on this database: not kept
            assert not NO_ENABLED_ENDPOINT.holds(s, env_id)
        facts.caught_up(database, feed)
        with db.transaction() as s:
            s.scalar(select(func.count()).select_from(Job))
            NO_ENABLED_ENDPOINT.learned(s, env_id)
            assert not NO_ENABLED_ENDPOINT.holds(s, env_id)  # kept, but no row of the log was heard yet
        with db.transaction() as s:  # a row of the log, then heard
            push_service.entitlements_updated(s, env_id, "someone")
        facts.heard_up_to(database, push_service.newest_id(db))
        with db.transaction() as s:
            s.scalar(select(func.count()).select_from(Job))  # what learned it was read in this transaction
            NO_ENABLED_ENDPOINT.learned(s, env_id)
            NO_INTEGRATION.learned(s, env_id, STRIPE)
            assert NO_ENABLED_ENDPOINT.holds(s, env_id) and NO_INTEGRATION.holds(s, env_id, STRIPE)
            assert not NO_INTEGRATION.holds(s, env_id, "OTHER") and not NO_ENABLED_ENDPOINT.holds(s, env_id + 1)
        with db.transaction() as s:
            s.scalar(select(func.count()).select_from(Job))  # the transaction has begun (its snapshot)
            facts.dropped(database, env_id, NO_CREDIT_CATALOG.name)  # another process's change, heard meanwhile
            NO_CREDIT_CATALOG.learned(s, env_id)  # read before that change committed, maybe: not kept
            assert not NO_CREDIT_CATALOG.holds(s, env_id)
            assert NO_ENABLED_ENDPOINT.holds(s, env_id)  # another fact's drop leaves it
        facts.dropped(database, env_id, NO_ENABLED_ENDPOINT.name)
        with db.transaction() as s:
            assert not NO_ENABLED_ENDPOINT.holds(s, env_id) and NO_INTEGRATION.holds(s, env_id, STRIPE)
        with db.transaction() as s:  # another process's change, committed before its row was heard here
            push_service.settings_changed(s, env_id, NO_INTEGRATION.name)
        with db.transaction() as s:
            assert not NO_INTEGRATION.holds(s, env_id, STRIPE)  # found in the log itself
        facts.heard_up_to(database, push_service.newest_id(db))  # heard (and dropped, were a hub reading)
        with db.transaction() as s:
            assert NO_INTEGRATION.holds(s, env_id, STRIPE)
        facts.lost(database, feed)  # the hub may miss changes from now on: nothing known, nothing kept
        with db.transaction() as s:
            assert not NO_INTEGRATION.holds(s, env_id, STRIPE)
            s.scalar(select(func.count()).select_from(Job))
            NO_INTEGRATION.learned(s, env_id, STRIPE)
            assert not NO_INTEGRATION.holds(s, env_id, STRIPE)
    finally:
        facts.lost(database, feed)
