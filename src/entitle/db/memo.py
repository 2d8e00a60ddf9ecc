"""Rows read once per transaction: what several subscribers of one request ask again and again (an
environment's billing integrations, its webhook endpoints) and that the transaction itself almost never
writes.

`rows_once(session, key, model, load)` answers from the transaction's memo unless a row of `model`
was added, changed or deleted in the session since (pending in the unit of work, or flushed), or an
ORM-enabled INSERT/UPDATE/DELETE statement ran in it: then it loads again. The memo ends with the
transaction, so it never outlives the isolation that made its answer true.

`held_or_read(session, model, pks)`: rows by primary key, those the session already holds (its identity map)
costing no query, the others read in one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import event, select
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, object_session
from sqlalchemy.orm.util import identity_key

from entitle.db.base import EnvironmentScoped

T = TypeVar("T")
R = TypeVar("R", bound=EnvironmentScoped)

_MEMO = "entitle.db.memo"
_watched: set[type[Any]] = set()


def rows_once(session: Session, key: tuple[Any, ...], model: type[Any], load: Callable[[], T]) -> T:
    if model not in _watched:
        _watch(model)
    memo: dict[tuple[Any, ...], tuple[type[Any], Any]] = session.info.setdefault(_MEMO, {})
    found = memo.get(key)
    if found is not None and not _pending(session, model):
        return found[1]  # type: ignore[no-any-return]
    value = load()
    memo[key] = (model, value)
    return value


def held_or_read(session: Session, model: type[R], pks: Iterable[int | None]) -> dict[int, R]:
    """The rows of `model` with these keys (None skipped), by key: those the session holds cost no query,
    the others are read in one."""
    found: dict[int, R] = {}
    missing: list[int] = []
    for pk in {pk for pk in pks if pk is not None}:
        held = session.identity_map.get(identity_key(model, pk))
        if isinstance(held, model):
            found[pk] = held
        else:
            missing.append(pk)
    if missing:
        found |= {row.pk: row for row in session.scalars(select(model).where(model.pk.in_(sorted(missing))))}
    return found


def known(session: Session, key: tuple[Any, ...], model: type[Any]) -> Any | None:
    """What `rows_once` would answer for `key` without loading (None: it would load): for a reader that
    can skip its own query when an earlier one of the transaction already settled the question."""
    memo: dict[tuple[Any, ...], tuple[type[Any], Any]] = session.info.get(_MEMO, {})
    found = memo.get(key)
    return None if found is None or _pending(session, model) else found[1]


def _pending(session: Session, model: type[Any]) -> bool:
    """A row of `model` waits in the unit of work: the load would flush it first, so the memo is stale."""
    return any(isinstance(row, model) for rows in (session.new, session.dirty, session.deleted) for row in rows)


def _forget_model(session: Session | None, model: type[Any]) -> None:
    memo = session.info.get(_MEMO) if session is not None else None
    if memo:
        for key in [k for k, (kind, _) in memo.items() if issubclass(model, kind) or issubclass(kind, model)]:
            del memo[key]


def _row_written(_mapper: Mapper[Any], _connection: Any, target: Any) -> None:
    _forget_model(object_session(target), type(target))


def _statement_ran(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info.pop(_MEMO, None)


def _transaction_ended(session: Session, *_: Any) -> None:
    session.info.pop(_MEMO, None)


def _watch(model: type[Any]) -> None:
    # Per model, not on every mapper: other tables' flushes pay nothing.
    for name in ("after_insert", "after_update", "after_delete"):
        if not event.contains(model, name, _row_written):
            event.listen(model, name, _row_written, propagate=True)
    _watched.add(model)


event.listen(Session, "do_orm_execute", _statement_ran)
for _name in ("after_commit", "after_rollback", "after_soft_rollback"):
    event.listen(Session, _name, _transaction_ended)
