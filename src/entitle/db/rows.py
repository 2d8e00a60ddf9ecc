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

The INSERT itself is sent as the dialect's SQL text, compiled once per table and dialect, with the
column types' own bind processors and the columns' own Python defaults applied here (`_Prepared`):
Core's generic execution of an `Insert` (its cache key, the compiled cache, its parameter and default
processing, its result set-up) cost about 40 us of CPU more per row than the driver's execute did, and
every provisioning inserts two such rows and the audit log's. The statement is the one Core would send,
and its parameters are what Core would have bound. In an open transaction it goes to the driver's cursor
through `Connection._cursor_execute` (`_executed`: the engine's cursor events see it as before, a driver
error is raised as SQLAlchemy's), without the execution context and result `exec_driver_sql` builds,
which cost about as much again as the driver's execute on SQLite; outside one, through `exec_driver_sql`
(which begins it). A table whose defaults this cannot evaluate alone (a SQL expression, a function of the
execution context) is inserted by Core as before.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Dialect, Insert, Select, Table, insert, inspect
from sqlalchemy.orm import Mapper, Session, configure_mappers

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


_NO_DEFAULT, _SCALAR, _CALLED = 0, 1, 2
_ASK = object()


@dataclass(frozen=True, slots=True)
class _Bound:
    """One column of a prepared INSERT: where its value comes from and how the dialect binds it."""

    attribute: str
    name: str  # the bind parameter's name
    process: Callable[[Any], Any] | None
    default: int  # _NO_DEFAULT (NULL when unset), _SCALAR or _CALLED
    value: Any  # the scalar, or the context-free callable
    # What `process` binds None as, when that is a constant (None or a string: JSON's 'null'), else _ASK.
    none: Any


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An INSERT of every column of a table (its key column only when given), compiled for one dialect."""

    sql: str
    positional: bool
    bound: tuple[_Bound, ...]
    returns_key: bool  # RETURNING the key (else the cursor's lastrowid; unused when the key is given)


# Per dialect (an engine's: its own serializers), then per (table, key given): the prepared INSERT, or None
# where Core must insert (see `_prepare`). Weakly keyed: an engine disposed of takes its own with it.
_prepared: weakref.WeakKeyDictionary[Dialect, dict[tuple[Table, bool], _Prepared | None]] = weakref.WeakKeyDictionary()


def _default_of(column: Column[Any]) -> tuple[int, Any] | None:
    """How Core would evaluate the column's default for an INSERT that leaves it out (None: not alone)."""
    default = column.default
    if default is None:
        return _NO_DEFAULT, None
    if default.is_scalar:
        return _SCALAR, getattr(default, "arg", None)
    # A callable taking no context is kept wrapped by SQLAlchemy (`arg` is not the function given): it is
    # called with no context here as Core calls it. One that reads the context is left to Core.
    given = getattr(default, "_fn", None)
    wrapped = getattr(default, "arg", None)
    if default.is_callable and given is not None and wrapped is not given:
        return _CALLED, wrapped
    return None


def _prepare(
    table: Table, dialect: Dialect, key_given: bool, pairs: list[tuple[str, str, bool]], key: str
) -> _Prepared | None:
    known = _prepared.get(dialect)
    if known is None:
        known = _prepared[dialect] = {}
    if (table, key_given) in known:
        return known[(table, key_given)]
    prepared: _Prepared | None = None
    attributes = [(attribute, table.c[column]) for attribute, column, _ in pairs if key_given or attribute != key]
    written = [(column, _default_of(column)) for _, column in attributes]
    returns_key = not key_given and not getattr(dialect, "postfetch_lastrowid", False)
    if all(default is not None for _, default in written) and (not returns_key or dialect.insert_returning):
        prepared = _compiled(table, dialect, written, returns_key)
        if prepared is not None:
            # The object's values are read by attribute name (a column key may differ: `metadata_`).
            attribute_of = {column.key: attribute for attribute, column in attributes}
            bound = tuple(
                _Bound(attribute_of[b.name], b.name, b.process, b.default, b.value, b.none) for b in prepared.bound
            )
            prepared = _Prepared(prepared.sql, prepared.positional, bound, returns_key)
    known[(table, key_given)] = prepared
    return prepared


def _params(
    prepared: _Prepared, values: Mapping[str, Any], defaulted: dict[str, Any]
) -> Sequence[Any] | Mapping[str, Any]:
    """The bound parameters of one row (`defaulted` gets the defaults evaluated for what it left unset)."""
    params: list[Any] = []
    for column in prepared.bound:
        attribute = column.attribute
        if attribute in values:
            value = values[attribute]
        elif column.default == _NO_DEFAULT:
            value = None
        else:
            value = column.value if column.default == _SCALAR else column.value(None)
            defaulted[attribute] = value
        if column.process is None:
            params.append(value)
        elif value is None and column.none is not _ASK:
            params.append(column.none)  # most columns of a new row are unset: one JSON 'null' less each
        else:
            params.append(column.process(value))
    if prepared.positional:
        return tuple(params)
    return {b.name: p for b, p in zip(prepared.bound, params, strict=True)}


def _execute_prepared(
    connection: Connection, prepared: _Prepared, values: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """Send the prepared INSERT for an object's values: the new key (None when given or not returned) and
    the defaults evaluated for the attributes it left unset."""
    defaulted: dict[str, Any] = {}
    params = _params(prepared, values, defaulted)
    if not connection.in_transaction():
        result = connection.exec_driver_sql(prepared.sql, params)
        return (result.scalar_one() if prepared.returns_key else result.lastrowid), defaulted
    cursor = _executed(connection, prepared.sql, params)
    try:
        if prepared.returns_key:
            (key,) = _read(connection, prepared.sql, params, cursor, lambda: cursor.fetchall())
        else:
            key = cursor.lastrowid
    finally:
        cursor.close()
    return (key[0] if prepared.returns_key else key), defaulted


def _executed(connection: Connection, sql: str, params: Any) -> Any:
    """The driver's cursor, having executed `sql` with `params` in the connection's open transaction: what
    `connection.exec_driver_sql` does for one statement (the engine's before and after cursor events, its
    echo, a driver error raised as SQLAlchemy's), through `Connection._cursor_execute`, the path Core takes
    for the statements it sends itself (a sequence's next value, a column default), without the execution
    context and result object Core builds around it: on SQLite they cost as much CPU again as the driver's
    execute, and every provisioning sends seven such statements. A connection outside a transaction is
    left to `exec_driver_sql`, which begins it."""
    cursor = connection.connection.cursor()
    try:
        connection._cursor_execute(cursor, sql, params)
    except BaseException:
        cursor.close()
        raise
    return cursor


def _executed_many(connection: Connection, sql: str, rows: list[Any]) -> None:
    """`_executed` for an executemany, as `Connection._cursor_execute` does for one execute (Core has no
    such path of its own): the cursor events told it is one, the dialect's `do_executemany`."""
    cursor = connection.connection.cursor()
    try:
        observed = connection._has_events or connection.engine._has_events
        if observed:
            for fn in connection.dispatch.before_cursor_execute:
                sql, rows = fn(connection, cursor, sql, rows, None, True)
        if connection._echo:
            connection._log_info(sql)
            connection._log_parameters(rows, "raw sql", ismulti=True)
        dialect = connection.dialect
        for fn in dialect.dispatch.do_executemany if dialect._has_events else ():
            if fn(cursor, sql, rows, None):
                break
        else:
            dialect.do_executemany(cursor, sql, rows, None)
        if observed:
            connection.dispatch.after_cursor_execute(connection, cursor, sql, rows, None, True)
    except BaseException as exc:
        connection._handle_dbapi_exception(exc, sql, rows, cursor, None)
    finally:
        cursor.close()


def send(connection: Connection, sql: str) -> None:
    """`connection.exec_driver_sql(sql)` for a statement of no parameters and no rows (a BEGIN, a
    SAVEPOINT), sent on the driver's cursor as `_executed` sends: every write transaction sends one
    or two."""
    _executed(connection, sql, ()).close()


_R = TypeVar("_R")
_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def _read(connection: Connection, sql: str, params: Any, cursor: Any, fetch: Callable[[], _R]) -> _R:
    """`fetch()` on an executed cursor, a driver error raised as SQLAlchemy's (as Core's fetching does)."""
    try:
        return fetch()
    except BaseException as exc:
        connection._handle_dbapi_exception(exc, sql, params, cursor, None)
        raise  # not reached: the handler raises


# Per dialect, then per (table, the columns given): the prepared INSERT of `insert_many`, or None.
_prepared_many: weakref.WeakKeyDictionary[Dialect, dict[tuple[Table, tuple[str, ...]], _Prepared | None]] = (
    weakref.WeakKeyDictionary()
)


def insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """`connection.execute(insert(table), rows)` (one executemany; every row names the same columns, by
    their keys, and no primary key is returned), sent prepared as `insert_row` sends a row: the columns
    given, and those left out that have a Python default, evaluated per row as Core evaluates it."""
    if not rows:
        return
    given = tuple(rows[0])
    dialect = connection.dialect
    prepared = _known(_prepared_many, dialect, (table, given), lambda: _prepare_many(table, dialect, given))
    if prepared is None or any(tuple(row) != given for row in rows[1:]):
        connection.execute(insert(table), rows)
        return
    unused: dict[str, Any] = {}
    params = [_params(prepared, row, unused) for row in rows]
    if not connection.in_transaction():
        connection.exec_driver_sql(prepared.sql, params)
    elif len(params) == 1:
        _executed(connection, prepared.sql, params[0]).close()  # as Core sends one row: an execute
    else:
        _executed_many(connection, prepared.sql, params)


# Per dialect, then per (table, the columns given): the prepared INSERT of `insert_returning_key`, or None.
_prepared_keyed: weakref.WeakKeyDictionary[Dialect, dict[tuple[Table, tuple[str, ...]], _Prepared | None]] = (
    weakref.WeakKeyDictionary()
)


def insert_returning_key(connection: Connection, table: Table, row: dict[str, Any]) -> Any:
    """`connection.execute(insert(table).returning(<key>), row).scalar_one()` (one row naming its columns
    by their keys, its primary key left to the database), sent prepared as `insert_many` sends its rows:
    the new key, by RETURNING or the cursor's last row id as `insert_row` reads it."""
    given = tuple(row)
    dialect = connection.dialect

    def prepare() -> _Prepared | None:
        returns_key = not getattr(dialect, "postfetch_lastrowid", False)
        if returns_key and not dialect.insert_returning:
            return None
        return _prepare_many(table, dialect, given, returns_key=returns_key)

    prepared = _known(_prepared_keyed, dialect, (table, given), prepare)
    if prepared is None:
        (key_column,) = table.primary_key.columns
        return connection.execute(insert(table).returning(key_column), row).scalar_one()
    key, _ = _execute_prepared(connection, prepared, row)
    return key


def _known(
    cache: weakref.WeakKeyDictionary[Dialect, dict[_Key, _Value]],
    dialect: Dialect,
    key: _Key,
    make: Callable[[], _Value],
) -> _Value:
    """The value `cache` holds for `key` under `dialect`, made (once) by `make` when it holds none."""
    known = cache.get(dialect)
    if known is None:
        known = cache[dialect] = {}
    if key in known:
        return known[key]
    value = known[key] = make()
    return value


def _prepare_many(
    table: Table, dialect: Dialect, given: tuple[str, ...], *, returns_key: bool = False
) -> _Prepared | None:
    columns = table.c
    if any(key not in columns for key in given):
        return None
    written: list[tuple[Column[Any], tuple[int, Any] | None]] = [(columns[key], (_NO_DEFAULT, None)) for key in given]
    for column in columns:
        if column.key not in given and column.default is not None:
            written.append((column, _default_of(column)))
    if any(default is None for _, default in written):
        return None
    return _compiled(table, dialect, written, returns_key=returns_key)


def _compiled(
    table: Table, dialect: Dialect, written: list[tuple[Column[Any], tuple[int, Any] | None]], returns_key: bool
) -> _Prepared | None:
    """The INSERT of `written` (each column with its default, keyed by its column key) for the dialect,
    or None when its compiled form binds other names than the columns' keys."""
    statement = insert(table)
    if returns_key:
        (key_column,) = table.primary_key.columns
        statement = statement.returning(key_column)
    compiled = statement.compile(dialect=dialect, column_keys=[column.key for column, _ in written])
    names = sorted(bind.key for bind in compiled.binds.values())
    if getattr(compiled, "escaped_bind_names", None) or names != sorted(column.key for column, _ in written):
        return None
    bound = []
    for column, default in written:
        assert default is not None
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        none = None if process is None else process(None)
        bound.append(
            _Bound(
                column.key,
                column.key,
                process,
                default[0],
                default[1],
                none if none is None or type(none) is str else _ASK,
            )
        )
    if compiled.positional:
        order = {name: i for i, name in enumerate(compiled.positiontup or ())}
        bound.sort(key=lambda b: order[b.name])
    return _Prepared(compiled.string, bool(compiled.positional), tuple(bound), returns_key)


# Per mapper: its column attributes, or None when making an object needs its constructor (listeners on
# its creation or on setting an attribute, polymorphic identities).
_plain_attributes: dict[Mapper[Any], frozenset[str] | None] = {}

_T = TypeVar("_T")


def new_row(cls: type[_T], **values: Any) -> _T:
    """`cls(**values)` for a row `insert_row` is about to insert: the new object with exactly those column
    attributes set, made as the ORM's loading makes one (no constructor, no attribute events: nothing
    listens to them on such a model, which is checked once per model; another goes through `cls`).
    A subscription sets some thirty attributes, each through the instrumented constructor otherwise."""
    mapper: Mapper[Any] = inspect(cls)
    if mapper not in _plain_attributes:
        configure_mappers()  # what the constructor's first call makes sure of
        manager = mapper.class_manager
        columns = frozenset(prop.key for prop in mapper.column_attrs)
        listened = (
            len(manager.dispatch.init) > 1  # the mapper's own instrumentation is always there
            or bool(manager.dispatch.init_failure)
            or mapper.polymorphic_on is not None
            or any(manager[key].dispatch.set for key in columns)
        )
        _plain_attributes[mapper] = None if listened else columns
    plain = _plain_attributes[mapper]
    if plain is None:
        return cls(**values)
    unknown = values.keys() - plain
    if unknown:
        raise TypeError(f"{sorted(unknown)} are not column attributes of {cls.__name__}")
    obj: _T = mapper.class_manager.new_instance()
    inspect(obj).dict.update(values)
    return obj


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
    connection = session.connection()
    key_given = values.get(key_attribute) is not None
    table = state.mapper.local_table
    assert isinstance(table, Table)
    prepared = _prepare(table, connection.dialect, key_given, pairs, key_attribute)
    if prepared is not None:
        key, defaulted = _execute_prepared(connection, prepared, values)
        if not key_given:
            values[key_attribute] = key
        values.update(defaulted)
        _persist(session, obj, state)
        return
    params: dict[str, Any] = {}
    for attribute, column, null_when_unset in pairs:
        if attribute == key_attribute:
            if values.get(attribute) is not None:
                params[column] = values[attribute]
        elif attribute in values:
            params[column] = values[attribute]
        elif null_when_unset:
            params[column] = None  # left out of the object's state, as a flush leaves it (reads as None)
    result = connection.execute(statement, params)
    written = result.last_inserted_params()
    assert isinstance(written, dict) and result.inserted_primary_key is not None
    values[key_attribute] = result.inserted_primary_key[0]
    for attribute, column, null_when_unset in pairs:
        if attribute not in values and not null_when_unset:
            values[attribute] = written[column]  # a default Core evaluated
    _persist(session, obj, state)


# Per mapper: the keys of its relationships.
_relationships: dict[Mapper[Any], tuple[str, ...]] = {}


def _persist(session: Session, obj: Any, state: Any) -> None:
    # From pending to persistent as the flush's own end makes it (`_register_persistent`, the unit of
    # work's call): keyed in the identity map, its values committed, and known to the transaction as
    # new, so that a rollback makes it transient again (expunged, its values kept) as for a flushed one.
    related = _relationships.get(state.mapper)
    if related is None:
        related = _relationships[state.mapper] = tuple(state.mapper.relationships.keys())
    if any(key in state.dict for key in related):
        session.add(obj)
    else:
        # `session.add` without its save-update cascade, which follows only the related objects an object
        # holds (and this one holds none: nothing but columns was set), yet walks every relationship of the
        # mapper to find that out (a subscription's cost more CPU than its INSERT's parameters).
        state._orphaned_outside_of_session = False
        session._save_or_update_impl(state)
    session._register_persistent({state})
    for listener in _listeners:
        listener(session, obj)


_REQUIRED = object()


class PreparedSelect:
    """A Core SELECT of plain columns (no ORM entities), sent as the dialect's SQL on the driver's cursor
    (`_executed`; `exec_driver_sql` outside a transaction), compiled once per dialect, its parameters bound
    and its columns read by the statement's own types' processors: what `connection.execute(statement,
    params)` would answer, without Core's generic execution around it (about as much CPU again as the
    driver's query, on the query every authenticated request sends). Rows are named tuples of the selected
    columns' keys. A statement whose compiled form cannot be sent as it is (parameters expanded at
    execution, renamed binds) is executed by Core."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self.fields = tuple(str(column.key) for column in statement.selected_columns)
        self._row = namedtuple("_Row", self.fields, rename=True)  # type: ignore[misc]
        self._prepared: weakref.WeakKeyDictionary[Dialect, _PreparedQuery | None] = weakref.WeakKeyDictionary()

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """The first row (a named tuple), or None."""
        found = self._rows(connection, params, first=True)
        return found[0] if found else None

    def all(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row (named tuples)."""
        return self._rows(connection, params, first=False)

    def _rows(self, connection: Connection, params: Mapping[str, Any], first: bool) -> list[Any]:
        dialect = connection.dialect
        if dialect in self._prepared:
            prepared = self._prepared[dialect]
        else:
            prepared = self._prepared[dialect] = self._prepare(dialect)
        if prepared is None:
            result = connection.execute(self.statement, params)
            found = [result.first()] if first else list(result)
            return [self._row(*row) for row in found if row is not None]
        processed = []
        for name, process, given in prepared.binds:
            value = params.get(name, given)
            if value is _REQUIRED:
                raise KeyError(f"parameter {name!r} of a prepared SELECT was not given")
            processed.append(value if process is None else process(value))
        sent: Sequence[Any] | Mapping[str, Any]
        if prepared.positional:
            sent = tuple(processed)
        else:
            sent = {name: value for (name, _, _), value in zip(prepared.binds, processed, strict=True)}
        if connection.in_transaction():
            cursor = _executed(connection, prepared.sql, sent)
            try:
                description = cursor.description
                fetch = cursor.fetchone if first else cursor.fetchall
                raw = _read(connection, prepared.sql, sent, cursor, lambda: [fetch()] if first else fetch())
            finally:
                cursor.close()
        else:
            result = connection.exec_driver_sql(prepared.sql, sent)
            description = result.cursor.description if result.cursor is not None else None
            raw = [result.first()] if first else result.all()
        if prepared.processors is None:
            # The columns' result processors, for the type codes the driver describes them with (as Core
            # asks for them); the same statement is described alike every time.
            codes = [entry[1] for entry in description or ()]
            if len(codes) != len(self.fields):
                raise RuntimeError("a prepared SELECT was described with another number of columns")
            prepared.processors = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, code)
                for column, code in zip(self.statement.selected_columns, codes, strict=True)
            )
        processors = prepared.processors
        return [
            self._row(
                *(value if process is None else process(value) for value, process in zip(row, processors, strict=True))
            )
            for row in raw
            if row is not None
        ]

    def _prepare(self, dialect: Dialect) -> _PreparedQuery | None:
        compiled = self.statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string or getattr(compiled, "escaped_bind_names", None):
            return None
        names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        binds = []
        for name in names:
            bind = compiled.binds[name]
            # A value the statement holds (a literal compared with) is bound as Core binds it; a
            # parameter without one must be given.
            given = _REQUIRED if bind.required else bind.effective_value
            binds.append((name, bind.type.dialect_impl(dialect).bind_processor(dialect), given))
        return _PreparedQuery(compiled.string, bool(compiled.positional), tuple(binds))


@dataclass(slots=True)
class _PreparedQuery:
    sql: str
    positional: bool
    binds: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...]  # name, processor, the value it holds
    processors: tuple[Callable[[Any], Any] | None, ...] | None = None
