"""Records every row a known actor creates, changes or deletes, from one SQLAlchemy flush hook.

No route or service is edited for it: whatever the API or the console writes goes through an ORM
session, and `after_flush` sees each row with its before/after values and its assigned key. The
entries are inserted on the flush's own connection, so they commit or roll back with the change.
Writes with no actor (the job worker, scheduled lifecycle events) are not recorded here: they are
consequences of an audited write or of time passing, not somebody's decision.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, event, insert, inspect
from sqlalchemy.orm import Mapper, Session, UOWTransaction

from entitle import actors
from entitle.audit import rules
from entitle.audit.models import AuditEntry
from entitle.clock import utcnow

_installed = False
# Built once (its cache key is memoized on it): every audited flush runs it.
_INSERT = insert(cast(Table, AuditEntry.__table__))
_column_keys: dict[Mapper[Any], list[str]] = {}
_created_columns: dict[Mapper[Any], rules.CreatedColumns] = {}
_UNLOADED = object()


def install() -> None:
    global _installed
    if not _installed:
        event.listen(Session, "after_flush", _record)
        _installed = True


def _entity_id(obj: Any) -> str:
    for attr in ("ref_id", "email", "id"):
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


def _created(obj: Any) -> dict[str, Any]:
    state = inspect(obj)
    columns = _created_columns.get(state.mapper)
    if columns is None:
        columns = _created_columns[state.mapper] = rules.created_columns(_columns(obj))
    loaded = state.dict

    def value_of(key: str) -> Any:
        # What the flush just wrote is in the instance's dict; an attribute never set reads as its default.
        value = loaded.get(key, _UNLOADED)
        return getattr(obj, key, None) if value is _UNLOADED else value

    return rules.created_changes_of(columns, value_of)


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
    rows: list[dict[str, Any]] = []
    now = utcnow()
    batches = (("create", session.new), ("update", session.dirty), ("delete", session.deleted))
    for action, objects in batches:
        for obj in objects:
            table = getattr(obj, "__tablename__", None)
            if table is None or table in rules.NOT_AUDITED:
                continue
            if action == "create":
                changes = _created(obj)
            elif action == "update":
                changes = rules.updated_changes(_updated(obj))
                if not changes:
                    continue
            else:
                changes = {}
            env_id = getattr(obj, "environment_id", None)
            rows.append(
                {
                    "environment_id": env_id if isinstance(env_id, int) else actor.environment_id,
                    "occurred_at": now,
                    "actor_kind": actor.kind,
                    "actor": actor.label,
                    "entity_type": table,
                    "entity_id": _entity_id(obj)[:255],
                    "action": action,
                    "changes": changes,
                }
            )
    if rows:
        session.connection().execute(_INSERT, rows)
