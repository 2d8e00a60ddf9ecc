"""Issue 12: a batch's owners and grants are resolved before its write transaction (on SQLite that
transaction holds the database's write lock), and used in it only while nothing they rest on changed:
no entitlement change of its customers and no feature change of the environment committed since they
were read (the push change log says), and no subscription or promotion of theirs ended meanwhile.
Otherwise they are read again in the transaction, and the batch counts exactly as if they had been."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from entitle.catalog.features import service as features
from entitle.catalog.features.schemas import FeatureUpdate
from entitle.clock import utcnow
from entitle.customers import service as customer_service
from entitle.customers import store as customers
from entitle.db import Database
from entitle.environments.service import ensure_environment
from entitle.events.ingested import NewEvent
from entitle.usage import counting, ports
from entitle.usage.models import UsageCounter, WaitingUsage
from tests.conftest import LiveServer
from tests.support.statements import statements
from tests.test_ingest_bulk import _build, _provision


@pytest.fixture
def built(server: LiveServer, api: httpx.Client) -> tuple[Database, int]:
    _build(api)
    return server.db, ensure_environment(server.db, "development").pk


def _batch(customer_ref: str) -> list[NewEvent]:
    return [NewEvent(customer_ref, None, "completion", {"tokens": 2, "cost": 5}, utcnow(), i) for i in range(3)]


def _apply(db: Database, env_id: int, batch: list[NewEvent], prepared: object) -> None:
    with db.transaction() as s:
        counting.apply_events(s, env_id, batch, prepared)


def _counted(db: Database, env_id: int, customer_ref: str) -> dict[str, Decimal]:
    with db.read() as s:
        customer = customers.find(s, env_id, customer_ref)
        if customer is None:
            return {}
        rows = s.scalars(select(UsageCounter).where(UsageCounter.customer_pk == customer.pk)).all()
        return {r.feature_ref: r.value for r in rows if r.value}


def _waiting(db: Database, env_id: int, customer_ref: str) -> dict[str, Decimal]:
    with db.read() as s:
        rows = s.scalars(
            select(WaitingUsage).where(WaitingUsage.environment_id == env_id, WaitingUsage.customer_ref == customer_ref)
        ).all()
        return {r.feature_ref: r.value for r in rows if r.value}


def _doctored(prepared: counting.Prepared, **changes: object) -> counting.Prepared:
    """`prepared` claiming the environment had no meters: whether anything counts shows whether it was
    believed. (Claiming a customer held nothing would not do: on PostgreSQL usage about to wait looks
    again, under the customer's lock.)"""
    assert prepared.resolved is not None
    resolved = replace(prepared.resolved, metered=[], holders={}, **changes)  # type: ignore[arg-type]
    return replace(prepared, resolved=resolved)


def test_grants_resolved_before_the_transaction_are_used_in_it(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "steady", "metered")
    batch = _batch("steady")
    prepared = counting.prepare(db, env_id, batch)
    with statements(db) as seen:
        _apply(db, env_id, batch, prepared)
    assert not [sql for sql in seen if "FROM subscriptions" in sql or "FROM customers" in sql], seen
    assert _counted(db, env_id, "steady")["m-sum"] == 6
    # The proof that they are believed: resolved as if there were no meters, nothing more counts.
    _apply(db, env_id, batch, _doctored(prepared))
    assert _counted(db, env_id, "steady")["m-sum"] == 6


def test_a_customer_provisioned_after_its_batch_was_prepared_counts_it(built: tuple[Database, int]) -> None:
    db, env_id = built
    batch = _batch("late")
    prepared = counting.prepare(db, env_id, batch)  # no such customer yet: its usage would wait
    _provision(db, env_id, "late", "metered")
    _apply(db, env_id, batch, prepared)
    assert _counted(db, env_id, "late")["m-sum"] == 6
    assert _waiting(db, env_id, "late") == {}


def test_a_customer_archived_after_its_batch_was_prepared_counts_nothing(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "leaving", "metered")
    batch = _batch("leaving")
    prepared = counting.prepare(db, env_id, batch)
    customer_service.archive_customer(db, env_id, "leaving")
    _apply(db, env_id, batch, prepared)
    assert _counted(db, env_id, "leaving") == {}
    assert _waiting(db, env_id, "leaving")["m-sum"] == 6


def test_a_meter_changed_after_its_batch_was_prepared_counts_with_the_new_one(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "remetered", "metered")
    batch = _batch("remetered")
    prepared = counting.prepare(db, env_id, batch)
    meter = {"aggregation": {"function": "SUM", "field": "cost"}, "filters": []}
    features.update_feature(db, env_id, "m-sum", FeatureUpdate.model_validate({"meter": meter}))
    _apply(db, env_id, batch, prepared)
    assert _counted(db, env_id, "remetered")["m-sum"] == 15


def test_grants_are_read_again_once_a_subscription_or_promotion_of_theirs_may_have_ended(
    built: tuple[Database, int],
) -> None:
    db, env_id = built
    _provision(db, env_id, "ending", "metered")
    batch = _batch("ending")
    prepared = counting.prepare(db, env_id, batch)
    _apply(db, env_id, batch, _doctored(prepared, valid_until=utcnow()))
    assert _counted(db, env_id, "ending")["m-sum"] == 6
    # Resolved at an instant still to come (a clock that went back): read again too.
    _apply(db, env_id, batch, _doctored(prepared, at=utcnow() + timedelta(hours=1)))
    assert _counted(db, env_id, "ending")["m-sum"] == 12
    assert _waiting(db, env_id, "ending") == {}


def test_without_a_change_log_nothing_resolved_beforehand_is_believed(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "unvouched", "metered")
    batch = _batch("unvouched")
    installed = ports.grant_changes.impl
    ports.grant_changes.install(None)
    try:
        prepared = counting.prepare(db, env_id, batch)
        _apply(db, env_id, batch, _doctored(prepared))
    finally:
        ports.grant_changes.install(installed)
    assert _counted(db, env_id, "unvouched")["m-sum"] == 6
    assert _waiting(db, env_id, "unvouched") == {}


# --- what earlier batches resolved, kept for the next ones -------------------------------------------


def test_the_next_batch_reads_no_grants_when_nothing_changed(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "regular", "metered")
    _apply(db, env_id, _batch("regular"), counting.prepare(db, env_id, _batch("regular")))
    with statements(db) as seen:
        prepared = counting.prepare(db, env_id, _batch("regular"))
    assert not [sql for sql in seen if "FROM subscriptions" in sql or "FROM features" in sql], seen
    _apply(db, env_id, _batch("regular"), prepared)
    assert _counted(db, env_id, "regular")["m-sum"] == 12


def test_the_next_batch_reads_again_the_grants_of_a_customer_whose_entitlements_changed(
    built: tuple[Database, int],
) -> None:
    db, env_id = built
    _provision(db, env_id, "staying", "metered")
    _provision(db, env_id, "going", "metered")
    both = _batch("staying") + [replace(e, index=e.index + 3) for e in _batch("going")]
    _apply(db, env_id, both, counting.prepare(db, env_id, both))
    customer_service.archive_customer(db, env_id, "going")
    prepared = counting.prepare(db, env_id, both)
    _apply(db, env_id, both, prepared)
    assert _counted(db, env_id, "staying")["m-sum"] == 12
    assert _counted(db, env_id, "going")["m-sum"] == 6  # the first batch only
    assert _waiting(db, env_id, "going")["m-sum"] == 6


def test_a_kept_customer_archived_since_is_not_counted_as_live_by_the_batches_after(
    built: tuple[Database, int],
) -> None:
    # What a batch made of a kept owner's customer and grants is made again once that owner was resolved
    # again (`Resolved.made`): the batches after the one that read the change use it too.
    db, env_id = built
    _provision(db, env_id, "returning", "metered")
    for _ in range(2):  # resolved, then kept (and made)
        _apply(db, env_id, _batch("returning"), counting.prepare(db, env_id, _batch("returning")))
    assert _counted(db, env_id, "returning")["m-sum"] == 12
    customer_service.archive_customer(db, env_id, "returning")
    for _ in range(2):  # resolved again (archived), then kept
        _apply(db, env_id, _batch("returning"), counting.prepare(db, env_id, _batch("returning")))
    assert _counted(db, env_id, "returning")["m-sum"] == 12
    assert _waiting(db, env_id, "returning")["m-sum"] == 12


def test_the_next_batch_reads_everything_again_after_a_feature_changed(built: tuple[Database, int]) -> None:
    db, env_id = built
    _provision(db, env_id, "measured-again", "metered")
    _apply(db, env_id, _batch("measured-again"), counting.prepare(db, env_id, _batch("measured-again")))
    meter = {"aggregation": {"function": "SUM", "field": "cost"}, "filters": []}
    features.update_feature(db, env_id, "m-sum", FeatureUpdate.model_validate({"meter": meter}))
    _apply(db, env_id, _batch("measured-again"), counting.prepare(db, env_id, _batch("measured-again")))
    assert _counted(db, env_id, "measured-again")["m-sum"] == 6 + 15


def test_what_earlier_batches_resolved_is_not_kept_past_a_subscription_or_promotion_end(
    built: tuple[Database, int],
) -> None:
    db, env_id = built
    _provision(db, env_id, "expiring", "metered")
    _apply(db, env_id, _batch("expiring"), counting.prepare(db, env_id, _batch("expiring")))
    # Remembered as if there were no meters: believed, nothing would count.
    kept = counting._known.kept(db, env_id)
    assert kept is not None
    counting._known.keep(db, env_id, replace(kept, metered=[], holders={}))
    _apply(db, env_id, _batch("expiring"), counting.prepare(db, env_id, _batch("expiring")))
    assert _counted(db, env_id, "expiring")["m-sum"] == 6
    # ...unless an end came in between.
    counting._known.keep(db, env_id, replace(kept, metered=[], holders={}, valid_until=utcnow()))
    _apply(db, env_id, _batch("expiring"), counting.prepare(db, env_id, _batch("expiring")))
    assert _counted(db, env_id, "expiring")["m-sum"] == 12
