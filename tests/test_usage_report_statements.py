"""Issue 12: a usage report's write transaction (on SQLite it holds the database's write lock while
another environment ingests) sends a few statements: the customer and its grants are resolved before it,
as an ingestion batch's are, and trusted inside only while nothing they rest on changed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.customers import service as customer_service
from entitle.customers import store as customers
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.errors import NotFound
from entitle.usage import owners, service
from entitle.usage.events import UsageLimitHit
from entitle.usage.models import UsageCounter
from entitle.usage.schemas import UsageIn
from tests.conftest import LiveServer
from tests.support.statements import statements
from tests.test_ingest_bulk import _provision


def _build(api: httpx.Client) -> None:
    body = {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"}
    api.post("/api/v1/features", json=body).raise_for_status()
    api.post("/api/v1/products", json={"id": "app", "displayName": "App"}).raise_for_status()
    api.post("/api/v1/plans", json={"id": "basic", "displayName": "Basic", "productId": "app"}).raise_for_status()
    entitlements = [{"type": "FEATURE", "id": "calls", "usageLimit": 100, "resetPeriod": "MONTH"}]
    api.post("/api/v1/plans/basic/entitlements", json={"entitlements": entitlements}).raise_for_status()
    api.post("/api/v1/plans/basic/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()


@pytest.fixture
def built(server: LiveServer, api: httpx.Client) -> tuple[Database, int]:
    _build(api)
    db = server.db
    env_id = ensure_environment(db, "development").pk
    _provision(db, env_id, "reporter", "basic")
    return db, env_id


def _report(key: str, value: int = 1, customer_id: str = "reporter") -> list[UsageIn]:
    item = {"customerId": customer_id, "featureId": "calls", "value": value, "idempotencyKey": key}
    return [UsageIn.model_validate(item)]


@contextmanager
def _write_transaction_marked(db: Database, seen: list[str]) -> Iterator[None]:
    """Marks in `seen` where the report's write transaction begins."""
    begin = db.transaction

    @contextmanager
    def marked() -> Iterator[Session]:
        seen.append(WRITE)
        with begin() as s:
            yield s

    db.transaction = marked  # type: ignore[method-assign]
    try:
        yield
    finally:
        del db.transaction


WRITE = "-- the write transaction begins"
FRAMING = ("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT")


# PostgreSQL's push log also serializes its announcements and notifies listeners: two more there.
PUSH_ON_POSTGRESQL = ("SELECT pg_advisory_xact_lock", "SELECT pg_notify")


def _own(seen: list[str]) -> list[str]:
    return [sql for sql in seen if sql != WRITE and not sql.startswith(FRAMING + PUSH_ON_POSTGRESQL)]


def _in_write_transaction(seen: list[str]) -> list[str]:
    return _own(seen[seen.index(WRITE) + 1 :])


def _counted(db: Database, env_id: int) -> Decimal:
    with db.read() as s:
        customer = customers.find(s, env_id, "reporter")
        assert customer is not None
        return sum(
            (c.value for c in s.scalars(select(UsageCounter).where(UsageCounter.customer_pk == customer.pk))),
            Decimal(0),
        )


def test_a_report_sends_few_statements_in_its_write_transaction(built: tuple[Database, int]) -> None:
    db, env_id = built
    service.report_usage(db, env_id, _report("warm"))
    with statements(db) as seen, _write_transaction_marked(db, seen):
        [answer] = service.report_usage(db, env_id, _report("counted", 2))
    assert answer.current_usage == Decimal(3)
    inside = _in_write_transaction(seen)
    # The change-log check, the counter, the record, the counter's new value, the credit pricing, the
    # announcement. It was 17, the customer's grants resolved inside.
    assert len(inside) <= 6, inside
    resolving = ("FROM customers", "FROM subscriptions", "FROM features", "FROM packages", "FROM promotional")
    assert not [sql for sql in inside if any(table in sql for table in resolving)], inside
    # Before it: the change log's mark, the customers whose grants changed since the last report (what
    # that report resolved is kept), the keys taken. 17 in all, all inside, before.
    assert len(_own(seen)) <= 9, seen


def test_a_replayed_key_answers_the_first_report_and_counts_nothing(built: tuple[Database, int]) -> None:
    db, env_id = built
    [first] = service.report_usage(db, env_id, _report("once", 5))
    [again] = service.report_usage(db, env_id, _report("once", 5))
    assert (again.id, again.current_usage) == (first.id, Decimal(5))
    [twice, same] = service.report_usage(db, env_id, _report("twice", 1) * 2)
    assert (same.id, same.current_usage) == (twice.id, Decimal(6))
    assert _counted(db, env_id) == Decimal(6)


def test_a_key_claimed_after_the_read_ahead_is_replayed_not_counted_again(
    built: tuple[Database, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, env_id = built
    resolve = service.resolve_ahead

    def then_claimed(*args: Any) -> Any:
        ahead = resolve(*args)
        monkeypatch.setattr(service, "resolve_ahead", resolve)
        service.report_usage(db, env_id, _report("raced", 4))  # committed between the read and the write
        return ahead

    monkeypatch.setattr(service, "resolve_ahead", then_claimed)
    [answer] = service.report_usage(db, env_id, _report("raced", 4))
    assert answer.current_usage == Decimal(4)
    assert _counted(db, env_id) == Decimal(4)


def test_a_customer_archived_after_the_read_ahead_is_refused_and_nothing_counts(
    built: tuple[Database, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, env_id = built
    service.report_usage(db, env_id, _report("before", 1))
    resolve = service.resolve_ahead

    def then_archived(*args: Any) -> Any:
        ahead = resolve(*args)
        assert ahead is not None  # the read ahead believed the customer live
        customer_service.archive_customer(db, env_id, "reporter")
        return ahead

    monkeypatch.setattr(service, "resolve_ahead", then_archived)
    with pytest.raises(NotFound):
        service.report_usage(db, env_id, _report("after", 1))
    assert _counted(db, env_id) == Decimal(1)


def test_a_limit_changed_after_the_read_ahead_is_the_one_measured_against(
    built: tuple[Database, int], api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, env_id = built
    resolve = service.resolve_ahead
    heard: list[UsageLimitHit] = []
    monkeypatch.setattr(
        owners, "publish", lambda _s, event: heard.append(event) if isinstance(event, UsageLimitHit) else None
    )

    def then_lowered(*args: Any) -> Any:
        ahead = resolve(*args)
        promotion = {"featureId": "calls", "usageLimit": 1_000, "period": "1 week", "resetPeriod": "MONTH"}
        url = "/api/v1/customers/reporter/promotional-entitlements"
        api.post(url, json={"promotionalEntitlements": [promotion]}).raise_for_status()
        return ahead

    monkeypatch.setattr(service, "resolve_ahead", then_lowered)
    service.report_usage(db, env_id, _report("over", 150))
    # Measured against the promotion's 1,000 granted meanwhile (more generous), not the plan's 100.
    assert heard == []


def test_grants_kept_from_an_earlier_report_are_dropped_when_they_change(
    built: tuple[Database, int], api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, env_id = built
    heard: list[UsageLimitHit] = []
    monkeypatch.setattr(
        owners, "publish", lambda _s, event: heard.append(event) if isinstance(event, UsageLimitHit) else None
    )
    service.report_usage(db, env_id, _report("kept", 1))  # resolves the plan's limit of 100, and keeps it
    promotion = {"featureId": "calls", "usageLimit": 1_000, "period": "1 week", "resetPeriod": "MONTH"}
    api.post("/api/v1/customers/reporter/promotional-entitlements", json={"promotionalEntitlements": [promotion]})
    service.report_usage(db, env_id, _report("over", 150))
    assert heard == []
    service.report_usage(db, env_id, _report("far-over", 1_000))
    assert [hit.limit for hit in heard] == [Decimal(1_000)]
