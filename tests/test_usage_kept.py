"""What ingestion (`usage.counting`) and usage reports (`usage.ahead`) keep per process for an environment's
next writes holds plain values: no ORM row outlives the session that read it, and once a full collection
has passed, the collector no longer tracks the kept entries (up to 10,000 owners per environment, which
every full collection would otherwise traverse)."""

from __future__ import annotations

import gc
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from entitle.clock import utcnow
from entitle.customers import service as customer_service
from entitle.customers import store as customers
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.errors import NotFound
from entitle.events.ingested import NewEvent
from entitle.push.service import RETENTION
from entitle.usage import ahead, counting, ports, service
from entitle.usage.kept import KEPT_AGE, changed_since_kept
from entitle.usage.models import UsageCounter
from entitle.usage.schemas import UsageIn, UsageOut
from tests.conftest import LiveServer
from tests.test_ingest_bulk import _build as _build_meters
from tests.test_ingest_bulk import _provision
from tests.test_ingest_prepared import _counted

ATOMS = (bool, int, str, Decimal, datetime, type(None))


def _plain(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return isinstance(value, ATOMS)


def _untracked(value: object) -> bool:
    """Whether the collector no longer tracks it, nor anything in it, once full collections passed: one per
    level of nesting. A collection untracks a tuple only when all it holds is untracked already, and it may
    look at a tuple before its members; the young collections that happened to run before (as many as the
    GC's thresholds make) must not decide the answer. Anything the collector must track stays tracked
    however many pass."""
    for _ in range(_depth(value)):
        gc.collect()
    return _untracked_now(value)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, tuple):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _untracked_now(value: object) -> bool:
    if isinstance(value, dict):
        return not gc.is_tracked(value) and all(_untracked_now(v) for v in value.values())
    if isinstance(value, tuple):
        return not gc.is_tracked(value) and all(_untracked_now(v) for v in value)
    return not gc.is_tracked(value)


@pytest.fixture
def built(server: LiveServer, api: httpx.Client) -> tuple[Database, int]:
    _build_meters(api)
    body = {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"}
    api.post("/api/v1/features", json=body).raise_for_status()
    api.post("/api/v1/plans", json={"id": "basic", "displayName": "Basic", "productId": "app"}).raise_for_status()
    entitlements = [{"type": "FEATURE", "id": "calls", "usageLimit": 100, "resetPeriod": "MONTH"}]
    api.post("/api/v1/plans/basic/entitlements", json={"entitlements": entitlements}).raise_for_status()
    api.post("/api/v1/plans/basic/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
    return server.db, ensure_environment(server.db, "development").pk


def _events(customer_refs: list[str], tag: int) -> list[NewEvent]:
    return [
        NewEvent(ref, None, "completion", {"tokens": 2, "cost": 5}, utcnow(), 10 * tag + i)
        for i, ref in enumerate(customer_refs)
    ]


def test_ingestion_keeps_plain_untracked_values_and_counts_with_them(built: tuple[Database, int]) -> None:
    db, env_id = built
    for ref in ("kept-a", "kept-b"):
        _provision(db, env_id, ref, "metered")
    refs = ["kept-a", "kept-b", "nobody-yet"]
    for tag in range(2):  # the second batch rests on what the first kept
        batch = _events(refs, tag)
        prepared = counting.prepare(db, env_id, batch)
        assert prepared.plan is None  # one owner's events wait: counted in the transaction
        with db.transaction() as s:
            counting.apply_events(s, env_id, batch, prepared)
    kept = counting._known.kept(db, env_id)
    assert kept is not None
    assert set(kept.holders) == {(ref, None) for ref in refs}
    assert kept.holders[("nobody-yet", None)] is None
    held = kept.holders[("kept-a", None)]
    assert held is not None and held[1] == "kept-a" and "m-count" in {grant[0] for grant in held[2]}
    assert _plain(kept.holders), kept.holders
    assert _untracked(kept.holders)
    assert _counted(db, env_id, "kept-a")["m-count"] == Decimal(2)


def test_an_archived_customer_kept_is_not_counted_as_live(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "archived-later", "metered")
    batch = _events(["archived-later"], 0)
    with db.transaction() as s:
        counting.apply_events(s, env_id, batch, counting.prepare(db, env_id, batch))
    customer_service.archive_customer(db, env_id, "archived-later")
    batch = _events(["archived-later"], 1)
    prepared = counting.prepare(db, env_id, batch)
    assert prepared.holders is not None and prepared.holders[("archived-later", None)] == (None, {})
    with db.transaction() as s:
        counting.apply_events(s, env_id, batch, prepared)
    assert _counted(db, env_id, "archived-later")["m-count"] == Decimal(1)


def test_usage_reports_keep_plain_untracked_values_and_count_with_them(built: tuple[Database, int]) -> None:
    db, env_id = built
    for ref in ("reporter-a", "reporter-b"):
        _provision(db, env_id, ref, "basic")
    for n in range(2):  # the second report rests on what the first kept
        items = [
            UsageIn.model_validate({"customerId": ref, "featureId": "calls", "value": 1, "idempotencyKey": f"{ref}{n}"})
            for ref in ("reporter-a", "reporter-b")
        ]
        answers = service.report_usage(db, env_id, items)
        assert [a.current_usage for a in answers] == [Decimal(n + 1)] * 2
    kept = ahead._kept.kept(db, env_id)
    assert kept is not None
    assert set(kept.customers) == {"reporter-a", "reporter-b"}
    assert all([grant[0] for grant in grants] == ["calls"] for grants in kept.grants.values()) and len(kept.grants) == 2
    assert _plain(kept.customers) and _plain(kept.grants), (kept.customers, kept.grants)
    assert _untracked(kept.customers) and _untracked(kept.grants)


def test_a_usage_report_of_a_customer_archived_since_it_was_kept_is_refused(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "reporter-archived", "basic")

    def report(key: str) -> list[UsageOut]:
        item = {"customerId": "reporter-archived", "featureId": "calls", "value": 1, "idempotencyKey": key}
        return service.report_usage(db, env_id, [UsageIn.model_validate(item)])

    report("kept")
    kept = ahead._kept.kept(db, env_id)
    assert kept is not None and "reporter-archived" in kept.customers
    customer_service.archive_customer(db, env_id, "reporter-archived")
    with pytest.raises(NotFound):
        report("archived")
    with db.read() as s:
        customer = customers.find(s, env_id, "reporter-archived")
        assert customer is not None
        counted = list(s.scalars(select(UsageCounter.value).where(UsageCounter.customer_pk == customer.pk)))
    assert counted == [Decimal(1)]


def test_what_was_kept_longer_ago_than_the_change_log_is_trusted_for_is_read_again(built: tuple[Database, int]) -> None:
    db, env_id = built
    now = utcnow()
    with db.read() as s:
        mark = ports.grant_changes.impl.mark(s, env_id)

        def changed(kept_at: datetime) -> frozenset[str] | None:
            return changed_since_kept(s, env_id, kept_mark=mark, kept_at=kept_at, valid_until=None, mark=mark, now=now)

        assert changed(now - KEPT_AGE) == frozenset()
        assert changed(now - KEPT_AGE - timedelta(microseconds=1)) is None
    # The change log's rows are pruned after RETENTION: a change older than that may be gone from it.
    assert RETENTION >= 2 * KEPT_AGE
