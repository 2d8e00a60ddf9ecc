"""Inserting one new ORM object's row with a single Core statement instead of a flush.

A flush runs the whole unit of work (sorting, per-mapper bookkeeping, the session's flush events) for
what is, on the provisioning path, one INSERT of a row nothing else in the session depends on: about a
tenth of a provisioning's CPU went to that machinery for its customer and its subscription.
`insert_row` sends the INSERT itself (column defaults evaluated by Core, as the flush would have them
evaluated), gives the object its primary key and the values written, and makes it persistent in the
session as if it had been flushed: later changes to it are tracked and flushed as UPDATEs as before.

What a flush would have told its listeners goes to `on_inserted` listeners instead (the audit log
records the new row from there exactly as from its `after_flush` hook). Mapper events do not fire:
`insert_row` refuses a model that has insert listeners of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Insert, Table, insert, inspect
from sqlalchemy.orm import Mapper, Session

InsertedListener = Callable[[Session, Any], None]

_listeners: list[InsertedListener] = []
# Per mapper: its INSERT (built once, so its compiled form is cached), its columns (attribute, column key,
# NULL when unset) and its primary key's attribute.
_plans: dict[Mapper[Any], tuple[Insert, list[tuple[str, str, bool]], str]] = {}


def on_inserted(listener: InsertedListener) -> None:
    """Call `listener(session, obj)` for each object `insert_row` inserted (in the inserting session's
    transaction, right after its INSERT). Idempotent."""
    if listener not in _listeners:
        _listeners.append(listener)


def _plan(mapper: Mapper[Any]) -> tuple[Insert, list[tuple[str, str, bool]], str]:
    found = _plans.get(mapper)
    if found is None:
        if mapper.dispatch.before_insert or mapper.dispatch.after_insert:
            raise TypeError(f"{mapper.class_.__name__} has insert listeners: flush it instead")
        table = mapper.local_table
        assert isinstance(table, Table)
        columns = [(prop.key, prop.columns[0]) for prop in mapper.column_attrs if prop.columns[0].table is table]
        if any(column.server_default is not None for _, column in columns):
            raise TypeError(f"{mapper.class_.__name__} has server defaults: flush it instead")
        # An unset column without a default is written NULL, as the flush writes it (and then known).
        pairs = [(attribute, column.key, column.default is None) for attribute, column in columns]
        (key_column,) = mapper.primary_key
        key_attribute = mapper.get_property_by_column(key_column).key
        found = _plans[mapper] = (insert(table), pairs, key_attribute)
    return found


def insert_row(session: Session, obj: Any) -> None:
    """INSERT `obj` (new: never added to a session) on the session's connection, and make it persistent
    in `session` with its primary key and every value written (defaults included). With other changes
    pending in the session, flushed with them instead, as before."""
    state = inspect(obj)
    if state.session_id is not None or state.key is not None:
        raise ValueError("insert_row takes a new object, not one a session already holds")
    if session.new or session.dirty or session.deleted:
        # Other changes wait for a flush: one flush with them keeps the order of their statements and
        # of their audit entries as it always was.
        session.add(obj)
        session.flush()
        return
    statement, pairs, key_attribute = _plan(state.mapper)
    values = state.dict
    params: dict[str, Any] = {}
    for attribute, column, null_when_unset in pairs:
        if attribute == key_attribute:
            if values.get(attribute) is not None:
                params[column] = values[attribute]
        elif attribute in values:
            params[column] = values[attribute]
        elif null_when_unset:
            params[column] = None  # left out of the object's state, as a flush leaves it (reads as None)
    result = session.connection().execute(statement, params)
    written = result.last_inserted_params()
    assert isinstance(written, dict) and result.inserted_primary_key is not None
    values[key_attribute] = result.inserted_primary_key[0]
    for attribute, column, null_when_unset in pairs:
        if attribute not in values and not null_when_unset:
            values[attribute] = written[column]  # a default Core evaluated
    # From pending to persistent as the flush's own end makes it (`_register_persistent`, the unit of
    # work's call): keyed in the identity map, its values committed, and known to the transaction as
    # new, so that a rollback makes it transient again (expunged, its values kept) as for a flushed one.
    session.add(obj)
    session._register_persistent({state})
    for listener in _listeners:
        listener(session, obj)
