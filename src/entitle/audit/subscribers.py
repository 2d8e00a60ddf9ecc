"""Records every row a known actor creates, changes or deletes, from one SQLAlchemy flush hook.

No route or service is edited for it: whatever the API or the console writes goes through an ORM
session, and `after_flush` sees each row with its before/after values and its assigned key (a row
inserted without a flush, by `entitle.db.rows.insert_row`, is heard from its `on_inserted`). The
entries of a transaction are inserted on its own connection in one statement just before it commits
(a provisioning flushes twice, and each INSERT is a statement inside the write lock), so they commit
or roll back with the change; entries of a savepoint rolled back are dropped with it, and a flush that
runs inside the commit itself (after this module's `before_commit`) inserts its entries at once.
Writes with no actor (the job worker, scheduled lifecycle events) are not recorded here: they are
consequences of an audited write or of time passing, not somebody's decision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, event, inspect
from sqlalchemy.orm import Mapper, Session, SessionTransaction, UOWTransaction

from entitle import actors
from entitle.audit import rules
from entitle.audit.models import AuditEntry
from entitle.clock import utcnow
from entitle.db import rows

_installed = False
# Its entries go in with one prepared INSERT (`rows.insert_many`: compiled once, sent as the driver's).
_TABLE = cast(Table, AuditEntry.__table__)
_column_keys: dict[Mapper[Any], list[str]] = {}
_created_columns: dict[Mapper[Any], rules.CreatedColumns] = {}
# The transaction's entries not inserted yet, each with the innermost savepoint open when it was
# recorded (None: none was), so that a savepoint's rollback drops exactly its own entries.
_PENDING = "entitle.audit.pending"
# Set once the transaction's entries went in at its commit: a flush after that inserts its own at once.
_COMMITTING = "entitle.audit.committing"


def install() -> None:
    global _installed
    if not _installed:
        event.listen(Session, "after_flush", _record)
        event.listen(Session, "before_commit", _insert_pending)
        event.listen(Session, "after_soft_rollback", _drop_rolled_back)
        event.listen(Session, "after_transaction_end", _forget)
        rows.on_inserted(_record_inserted)
        _installed = True


def _entity_id(obj: Any) -> str:
    # A package's price is named by its wire id (`charge_id`, what the API and the console show): its row's
    # key is renumbered each time a draft's pricing is written again, and SQLite reuses a deleted one.
    for attr in ("ref_id", "charge_id", "email", "id"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(getattr(obj, "pk", "") or "")


def _columns(obj: Any) -> list[str]:
    mapper = inspect(obj).mapper
    keys = _column_keys.get(mapper)
    if keys is None:
        keys = _column_keys[mapper] = [attr.key for attr in mapper.column_attrs]
    return keys


def _nothing(_key: str) -> None:
    return None


def _created(obj: Any, all_known: bool = False) -> dict[str, Any]:
    """`all_known`: every value written is in the instance's dict (a row `insert_row` wrote: it puts the
    key and the defaults there, and a column it left out was written NULL and reads as None)."""
    state = inspect(obj)
    columns = _created_columns.get(state.mapper)
    if columns is None:
        columns = _created_columns[state.mapper] = rules.created_columns(_columns(obj))
    # What the insert just wrote is in the instance's dict; an attribute never set reads as its default.
    value_of = _nothing if all_known else (lambda key: getattr(obj, key, None))
    return rules.created_changes_of(columns, value_of, state.dict)


def _updated(obj: Any) -> dict[str, tuple[Any, Any]]:
    state = inspect(obj)
    found: dict[str, tuple[Any, Any]] = {}
    for key in _columns(obj):
        history = state.attrs[key].history
        if history.has_changes():
            before = history.deleted[0] if history.deleted else None
            after = history.added[0] if history.added else None
            found[key] = (before, after)
    return found


def _record(session: Session, _flush: UOWTransaction) -> None:
    actor = actors.current()
    if actor is None or not actor.known:
        return
    entries: list[dict[str, Any]] = []
    now = utcnow()
    batches = (("create", session.new), ("update", session.dirty), ("delete", session.deleted))
    for action, objects in batches:
        for obj in objects:
            entry = _entry(actor, now, action, obj)
            if entry is not None:
                entries.append(entry)
    _keep(session, entries)


def _record_inserted(session: Session, obj: Any) -> None:
    """A row `entitle.db.rows.insert_row` wrote: the entry its flush would have recorded."""
    actor = actors.current()
    if actor is not None and actor.known:
        entry = _entry(actor, utcnow(), "create", obj, all_known=True)
        if entry is not None:
            _keep(session, [entry])


def _entry(actor: actors.Actor, now: datetime, action: str, obj: Any, all_known: bool = False) -> dict[str, Any] | None:
    table = getattr(obj, "__tablename__", None)
    if table is None or table in rules.NOT_AUDITED:
        return None
    if action == "create":
        changes = _created(obj, all_known)
    elif action == "update":
        changes = rules.updated_changes(_updated(obj))
        if not changes:
            return None
    else:
        changes = {}
    env_id = getattr(obj, "environment_id", None)
    return {
        "environment_id": env_id if isinstance(env_id, int) else actor.environment_id,
        "occurred_at": now,
        "actor_kind": actor.kind,
        "actor": actor.label,
        "entity_type": table,
        "entity_id": _entity_id(obj)[:255],
        "action": action,
        "changes": changes,
    }


def _keep(session: Session, entries: list[dict[str, Any]]) -> None:
    if not entries:
        return
    if session.info.get(_COMMITTING):
        rows.insert_many(session.connection(), _TABLE, entries)
        return
    savepoint = session.get_nested_transaction()
    session.info.setdefault(_PENDING, []).extend((savepoint, entry) for entry in entries)


def _insert_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's release: its entries wait for the transaction's commit
    # What is still unflushed is flushed now, so its entries go in with the others.
    session.flush()
    session.info[_COMMITTING] = True
    pending = session.info.pop(_PENDING, None)
    if pending:
        rows.insert_many(session.connection(), _TABLE, [row for _, row in pending])


def _inside(savepoint: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while savepoint is not None:
        if savepoint is ended:
            return True
        savepoint = savepoint.parent
    return False


def _drop_rolled_back(session: Session, rolled_back: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if pending and rolled_back.nested:
        session.info[_PENDING] = [(savepoint, row) for savepoint, row in pending if not _inside(savepoint, rolled_back)]


def _forget(session: Session, transaction: SessionTransaction) -> None:
    # The transaction ended: committed (its entries went in) or rolled back (they go with it).
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_PENDING, None)
        session.info.pop(_COMMITTING, None)
