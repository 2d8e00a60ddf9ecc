"""`entitle.db.rows.insert_row` writes what a flush of the same new object writes: the same row (defaults
included), the same object afterwards (persistent, its key and every column known, later changes flushed
as UPDATEs), the same audit entry; with other changes pending it is flushed with them, as before. The
provisioning path inserts its customer and subscription with it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from entitle import actors
from entitle.audit.models import AuditEntry
from entitle.catalog.packages.models import Package
from entitle.clock import utcnow
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.rows import insert_row
from entitle.environments.service import ensure_environment
from entitle.subscriptions.models import Subscription
from tests.conftest import LiveServer
from tests.support.statements import statements

_ids = itertools.count()
_SET_BY_TIME_OR_KEY = {"pk", "ref_id", "created_at", "updated_at", "customer_pk"}


@pytest.fixture(scope="module")
def audited(module_server: LiveServer) -> Iterator[tuple[Database, int]]:
    db = module_server.db
    env_id = ensure_environment(db, "development").pk
    with actors.acting_as("cli", "row-writer", env_id):
        yield db, env_id


@pytest.fixture(scope="module")
def plan(module_server: LiveServer) -> Package:
    with module_server.http() as api:
        api.post("/api/v1/products", json={"id": "rows", "displayName": "Rows"}).raise_for_status()
        api.post("/api/v1/plans", json={"id": "rows-plan", "displayName": "P", "productId": "rows"}).raise_for_status()
        api.post("/api/v1/plans/rows-plan/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
    with module_server.db.read() as s:
        found = s.scalars(select(Package).where(Package.ref_id == "rows-plan").order_by(Package.pk.desc())).first()
        assert found is not None
        return found


def _customer(env_id: int, **fields: Any) -> Customer:
    return Customer(environment_id=env_id, ref_id=f"rows-{next(_ids)}", **fields)


def _subscription(env_id: int, customer_pk: int, plan: Package, now: datetime) -> Subscription:
    return Subscription(
        environment_id=env_id,
        ref_id=f"rows-sub-{next(_ids)}",
        customer_pk=customer_pk,
        paying_customer_pk=None,
        product_pk=plan.product_pk,
        plan_pk=plan.pk,
        plan_ref=plan.ref_id,
        status="ACTIVE",
        pricing_type="FREE",
        start_date=now,
        billing_cycle_anchor=now,
        metadata_={"a": "b"},
        budget={"limit": 5},
    )


def _columns(obj: Any) -> dict[str, Any]:
    """Every column attribute as the object answers it (an attribute that would load sends a statement)."""
    return {attr.key: getattr(obj, attr.key) for attr in inspect(obj).mapper.column_attrs}


def _row(s: Session, model: Any, pk: int) -> dict[str, Any]:
    row = s.execute(select(model.__table__).where(model.__table__.c.pk == pk)).mappings().one()
    return dict(row)


def _comparable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in _SET_BY_TIME_OR_KEY}


@pytest.mark.parametrize(
    "fields",
    [
        {"metadata_": {}},
        {"metadata_": {"plan": "x"}, "name": "Ann", "email": "ann@example.com", "default_payment_method": {"a": 1}},
        {},  # metadata left to its default
    ],
)
def test_a_row_inserted_without_a_flush_is_the_row_and_object_a_flush_gives(
    audited: tuple[Database, int], fields: dict[str, Any]
) -> None:
    db, env_id = audited
    fields_written = {"metadata_": {}} | {k: v for k, v in fields.items() if v is not None}
    with db.transaction() as s:
        flushed = _customer(env_id, **fields)
        s.add(flushed)
        s.flush()
        inserted = _customer(env_id, **fields)
        with statements(db) as sent:
            insert_row(s, inserted)
        assert len(sent) == 1 and sent[0].startswith("INSERT INTO customers"), sent
        assert inspect(inserted).persistent and inserted in s
        assert isinstance(inserted.pk, int) and inserted.pk != flushed.pk
        assert isinstance(inserted.created_at, datetime)
        # Every column known on the object, as after a flush: reading them sends no statement.
        with statements(db) as loads:
            assert _comparable(_columns(inserted)) == _comparable(_columns(flushed))
        assert loads == []
        assert _comparable(_row(s, Customer, inserted.pk)) == _comparable(_row(s, Customer, flushed.pk))
        assert _row(s, Customer, inserted.pk)["created_at"] == inserted.created_at
        inserted.name = "Changed"  # tracked as any loaded object: an UPDATE at the next flush
        s.flush()
        assert _row(s, Customer, inserted.pk)["name"] == "Changed"
    with db.read() as s:
        entries = {
            e.entity_id: (e.action, e.changes)
            for e in s.scalars(select(AuditEntry).where(AuditEntry.entity_id.in_([flushed.ref_id, inserted.ref_id])))
            if e.action == "create"
        }
    assert entries[inserted.ref_id][1]["ref_id"] == inserted.ref_id
    assert _comparable(entries[inserted.ref_id][1]) == _comparable(entries[flushed.ref_id][1])
    assert _comparable(entries[inserted.ref_id][1]) == _comparable({"environment_id": env_id} | fields_written)


def test_a_subscription_inserted_without_a_flush_matches_a_flushed_one(
    audited: tuple[Database, int], plan: Package
) -> None:
    db, env_id = audited
    with db.transaction() as s:
        owner = _customer(env_id, metadata_={})
        insert_row(s, owner)
        now = utcnow()
        flushed = _subscription(env_id, owner.pk, plan, now)
        s.add(flushed)
        s.flush()
        inserted = _subscription(env_id, owner.pk, plan, now)
        insert_row(s, inserted)
        assert _comparable(_columns(inserted)) == _comparable(_columns(flushed))
        assert _comparable(_row(s, Subscription, inserted.pk)) == _comparable(_row(s, Subscription, flushed.pk))
        assert inserted.customer_pk == owner.pk
    with db.read() as s:
        changes = {
            e.entity_id: e.changes
            for e in s.scalars(select(AuditEntry).where(AuditEntry.entity_id.in_([flushed.ref_id, inserted.ref_id])))
        }
    assert _comparable(changes[inserted.ref_id]) == _comparable(changes[flushed.ref_id])
    assert {"status", "plan_ref", "start_date", "budget", "metadata_"} <= set(changes[inserted.ref_id])


def test_with_changes_pending_the_new_row_is_flushed_with_them_in_the_flushs_order(
    audited: tuple[Database, int],
) -> None:
    db, env_id = audited
    with db.transaction() as s:
        earlier = _customer(env_id, metadata_={})
        insert_row(s, earlier)
    with db.transaction() as s:
        loaded = s.get(Customer, earlier.pk)
        assert loaded is not None
        loaded.name = "Pending"
        later = _customer(env_id, metadata_={})
        insert_row(s, later)
        assert not s.dirty and inspect(later).persistent
    with db.read() as s:
        entries = [
            (e.entity_id, e.action)
            for e in s.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_id.in_([earlier.ref_id, later.ref_id]))
                .order_by(AuditEntry.pk)
            )
        ]
    # One flush: its new rows' entries, then its changed rows', as the flush has always recorded them.
    assert entries == [(earlier.ref_id, "create"), (later.ref_id, "create"), (earlier.ref_id, "update")]


def test_a_rolled_back_insert_leaves_no_row_and_no_entry(audited: tuple[Database, int]) -> None:
    db, env_id = audited
    doomed = _customer(env_id, metadata_={})
    with pytest.raises(RuntimeError), db.transaction() as s:
        insert_row(s, doomed)
        raise RuntimeError("refused later in the transaction")
    with db.read() as s:
        assert s.scalar(select(Customer.pk).where(Customer.ref_id == doomed.ref_id)) is None
        assert s.scalar(select(AuditEntry.pk).where(AuditEntry.entity_id == doomed.ref_id)) is None


def test_an_object_a_session_holds_is_refused(audited: tuple[Database, int]) -> None:
    db, env_id = audited
    with db.transaction() as s:
        held = _customer(env_id, metadata_={})
        s.add(held)
        with pytest.raises(ValueError):
            insert_row(s, held)
        s.expunge(held)
