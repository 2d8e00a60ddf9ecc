"""Statements sent prepared (`entitle.db.rows`: `PreparedSelect`, `insert_many`, and `insert_row`'s INSERT)
answer and write exactly what Core's execution of the same statement answers and writes, on both
engines: the same row read (every column's type processed alike, datetimes, JSON and booleans
included), the same rows inserted (defaults evaluated alike), one statement each; and a table whose
defaults only Core can evaluate is still inserted by Core."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from entitle.audit.models import AuditEntry
from entitle.clock import utcnow
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.rows import PreparedSelect, _prepare_many, insert_many, insert_returning_key, insert_row, new_row
from entitle.environments import store
from entitle.environments.models import ApiKey, Environment, KeyKind
from entitle.environments.service import create_key, ensure_environment, hash_key
from entitle.push.models import PushEvent
from tests.support.statements import statements


def test_a_prepared_select_answers_what_core_answers(database_url: str) -> None:
    db = Database(database_url)
    try:
        raw = create_key(db, "development", KeyKind.SERVER)
        expires = utcnow().replace(microsecond=123456) + timedelta(hours=3)
        with db.transaction() as s:
            env = s.scalars(select(Environment).where(Environment.name == "development")).one()
            env.customer_tokens_required = True
            env.allowed_origins = ["https://app.example", "http://localhost:3000"]
            env.signing_secret_encrypted = "current-secret"
            env.previous_signing_secret_encrypted = "previous-secret"
            env.previous_signing_secret_expires_at = expires
            key = s.scalars(select(ApiKey)).one()
            key.last_used_at = expires - timedelta(days=1)
        prepared = PreparedSelect(store._LIVE_KEY)
        with db.read_engine.connect() as connection:
            for _ in range(2):  # compiled, then reused
                with statements(db, counted=lambda sql: sql.startswith("SELECT")) as seen:
                    found = prepared.first(connection, {"key_hash": hash_key(raw)})
                assert len(seen) == 1
                by_core = connection.execute(store._LIVE_KEY, {"key_hash": hash_key(raw)}).first()
                assert by_core is not None and found is not None
                assert found._asdict() == by_core._asdict()
                assert [type(value) for value in found] == [type(value) for value in by_core]
            assert found.previous_signing_secret_expires_at == expires
            assert found.customer_tokens_required is True
            assert found.allowed_origins == ["https://app.example", "http://localhost:3000"]
            assert prepared.first(connection, {"key_hash": hash_key("no such key")}) is None
    finally:
        db.dispose()


def _audit_rows(s: Session, actor: str) -> list[dict[str, Any]]:
    rows = s.execute(select(AuditEntry.__table__).where(AuditEntry.actor == actor).order_by(AuditEntry.pk))
    return [{k: v for k, v in row._mapping.items() if k not in ("pk", "occurred_at")} for row in rows]


def test_insert_many_writes_what_cores_executemany_writes(database_url: str) -> None:
    db = Database(database_url)
    try:
        table = AuditEntry.__table__
        assert isinstance(table, Table)
        now = utcnow()

        def entries(actor: str) -> list[dict[str, Any]]:
            return [
                {
                    "environment_id": None,
                    "occurred_at": now,
                    "actor_kind": "cli",
                    "actor": actor,
                    "entity_type": "customers",
                    "entity_id": f"c-{n}",
                    "action": "create",
                    "changes": {"ref_id": f"c-{n}", "metadata_": {"a": "b"}, "n": n, "ok": n % 2 == 0},
                }
                for n in range(3)
            ]

        with db.transaction() as s:
            connection = s.connection()
            with statements(db, counted=lambda sql: sql.startswith("INSERT")) as seen:
                insert_many(connection, table, entries("prepared"))
            assert len(seen) == 1
            connection.execute(insert(table), entries("core"))
            # An entry leaving out a column with a Python default gets it, as from Core.
            partial = [{k: v for k, v in row.items() if k != "changes"} for row in entries("partial")]
            insert_many(connection, table, partial)
            connection.execute(insert(table), [dict(row, actor="partial-core") for row in partial])
        with db.read() as s:
            for mine, cores in (("prepared", "core"), ("partial", "partial-core")):
                written = _audit_rows(s, mine)
                assert len(written) == 3
                assert written == [dict(row, actor=mine) for row in _audit_rows(s, cores)]
            assert all(row["changes"] == {} for row in _audit_rows(s, "partial"))
            times = s.scalars(select(AuditEntry.occurred_at).where(AuditEntry.actor == "prepared")).all()
            assert times == [now] * 3
    finally:
        db.dispose()


def test_a_table_whose_default_reads_the_execution_context_is_inserted_by_core(database_url: str) -> None:
    metadata = MetaData()
    table = Table(
        "prepared_probe",
        metadata,
        Column("pk", Integer, primary_key=True),
        Column("name", String(32)),
        Column("doubled", Integer, default=lambda context: 2 * context.get_current_parameters()["base"]),
        Column("base", Integer),
    )
    db = Database(database_url)
    try:
        metadata.create_all(db.write_engine)
        assert _prepare_many(table, db.write_engine.dialect, ("name", "base")) is None
        with db.transaction() as s:
            insert_many(s.connection(), table, [{"name": "a", "base": 2}, {"name": "b", "base": 5}])
        with db.read() as s:
            assert s.execute(text("SELECT name, doubled FROM prepared_probe ORDER BY pk")).all() == [
                ("a", 4),
                ("b", 10),
            ]
        with db.transaction() as s:
            s.execute(delete(table))
    finally:
        metadata.drop_all(db.write_engine)
        db.dispose()


def test_a_row_made_by_new_row_is_inserted_and_tracked_as_a_constructed_one(database_url: str) -> None:
    db = Database(database_url)
    try:
        env_id = ensure_environment(db, "development").pk
        fields: dict[str, Any] = {"environment_id": env_id, "name": "N", "metadata_": {"k": "v"}, "coupon_ref": None}
        with db.transaction() as s:
            made = new_row(Customer, ref_id="made", **fields)
            built = Customer(ref_id="built", **fields)
            for customer in (made, built):
                insert_row(s, customer)
            made.email = "later@example.com"  # tracked as an UPDATE, as for the constructed one
            built.email = "later@example.com"
        with db.read() as s:
            rows = {
                row.ref_id: {
                    k: v for k, v in row._mapping.items() if k not in ("pk", "ref_id", "created_at", "updated_at")
                }
                for row in s.execute(select(Customer.__table__).where(Customer.ref_id.in_(["made", "built"])))
            }
        assert rows["made"] == rows["built"]
        assert rows["made"]["email"] == "later@example.com" and rows["made"]["metadata"] == {"k": "v"}
        with pytest.raises(TypeError):
            new_row(Customer, ref_id="x", no_such_column=1)
    finally:
        db.dispose()


def test_a_prepared_statement_in_a_transaction_is_seen_by_cursor_events_and_refused_as_by_core(
    database_url: str,
) -> None:
    """Inside a transaction the prepared statements go to the driver's cursor without Core's execution
    context (`rows._executed`): the engine's cursor events still see each one, and a driver error is
    still SQLAlchemy's (the customer's taken id is answered from its `IntegrityError`)."""
    db = Database(database_url)
    try:
        env_id = ensure_environment(db, "development").pk
        with db.transaction() as s:
            with statements(db) as seen:
                insert_row(s, new_row(Customer, environment_id=env_id, ref_id="taken", metadata_={}))
            assert len(seen) == 1 and seen[0].startswith("INSERT INTO customers")
        with pytest.raises(IntegrityError), db.transaction() as s:
            insert_row(s, new_row(Customer, environment_id=env_id, ref_id="taken", metadata_={}))
        with db.read() as s:
            assert s.scalars(select(Customer.ref_id).where(Customer.ref_id == "taken")).all() == ["taken"]
    finally:
        db.dispose()


def test_insert_returning_key_writes_what_core_writes(database_url: str) -> None:
    """`insert_returning_key` (the push log's one-row append): the row Core's INSERT ... RETURNING writes,
    and its key, in a transaction (on the driver's cursor) and outside one (through Core's execution)."""
    db = Database(database_url)
    try:
        env_id = ensure_environment(db, "development").pk
        table = PushEvent.__table__
        assert isinstance(table, Table)
        now = utcnow().replace(microsecond=654321)

        def row(customer: str) -> dict[str, Any]:
            data = {"customerId": customer, "n": 1, "ok": True, "nested": {"x": [1, "y"]}}
            return {"environment_id": env_id, "kind": "entitlements.updated", "customer_ref": customer, "data": data}

        keys: dict[str, int] = {}
        with db.transaction() as s:
            connection = s.connection()
            with statements(db) as seen:
                keys["prepared"] = insert_returning_key(connection, table, {**row("prepared"), "created_at": now})
            assert len(seen) == 1
            keys["core"] = connection.execute(
                insert(table).returning(table.c.id), {**row("core"), "created_at": now}
            ).scalar_one()
        with db.write_engine.connect() as connection:
            keys["outside"] = insert_returning_key(connection, table, {**row("outside"), "created_at": now})
            connection.commit()
        with db.read() as s:
            found = {
                r.customer_ref: r._mapping
                for r in s.execute(select(table).where(table.c.customer_ref.in_(["prepared", "core", "outside"])))
            }
        assert {ref: found[ref]["id"] for ref in keys} == keys
        core = {k: v for k, v in found["core"].items() if k not in ("id", "customer_ref", "data")}
        for ref in ("prepared", "outside"):
            assert {k: v for k, v in found[ref].items() if k not in ("id", "customer_ref", "data")} == core
            assert found[ref]["data"] == row(ref)["data"]
        assert found["prepared"]["created_at"] == now
    finally:
        db.dispose()
