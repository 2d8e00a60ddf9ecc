"""Engines and transactions.

Services own their transactions: each use case runs inside one `Database.transaction()`.
On SQLite a write transaction starts with BEGIN IMMEDIATE so two writers queue on the
database lock instead of failing halfway with "database is locked" on lock upgrade.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from entitle.db import rows
from entitle.db.checkpoints import Checkpointer
from entitle.db.group_commit import GroupCommit

log = logging.getLogger("entitle.db")
# SQLite's companions of a database file: it creates them with the database file's own mode.
_COMPANIONS = ("", "-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> None:
    """Create a directory only its owner may enter (0700): the data dir holds the embedded database and
    may hold the secret key. An existing directory keeps the mode its operator chose."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def sqlite_file(url: str) -> Path | None:
    """The database file of a file-backed SQLite URL (None for memory databases and other engines)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(parsed.database)


def make_private_sqlite_file(url: str) -> None:
    """Create the database file readable by its owner only (0600) in a 0700 directory, before SQLite
    creates it with the process umask (usually world-readable); tighten one an older version created."""
    path = sqlite_file(url)
    if path is None:
        return
    make_private_dir(path.parent)
    # Never open an existing database file here: closing any descriptor of it drops every POSIX lock
    # this process holds on it, those of SQLite connections already open included (a second Database
    # on the same file in one process then corrupts it: "disk I/O error"). Only a new file is created.
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    for companion in (path.with_name(path.name + suffix) for suffix in _COMPANIONS):
        try:
            mode = stat.S_IMODE(companion.stat().st_mode)
            if mode & 0o077:
                companion.chmod(mode & 0o700)
        except FileNotFoundError:
            continue
        except OSError as exc:  # e.g. a file another user owns: say so, do not refuse to run
            log.warning("could not make %s private (mode 0600): %s", companion, exc)


SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for the database lock before failing


# The names SQLAlchemy gives the savepoints it opens itself: plain identifiers, sent as they are.
_PLAIN_SAVEPOINT = re.compile(r"sa_savepoint_[0-9]+")


def _sent_savepoints(dialect: Any) -> None:
    """Every member of a group commit opens and releases a SAVEPOINT: SQLAlchemy compiles each of those
    statements anew (they are not cached), about 60 us of CPU apiece, inside the write lock. Its own
    names need no compiling: they are sent as text, through the same execution events."""
    generic = (dialect.do_savepoint, dialect.do_release_savepoint, dialect.do_rollback_to_savepoint)

    def sent(verb: str, compiled: Any) -> Any:
        def send(connection: Any, name: str) -> None:
            if _PLAIN_SAVEPOINT.fullmatch(name):
                rows.send(connection, f"{verb} {name}")
            else:
                compiled(connection, name)

        return send

    dialect.do_savepoint = sent("SAVEPOINT", generic[0])
    dialect.do_release_savepoint = sent("RELEASE SAVEPOINT", generic[1])
    dialect.do_rollback_to_savepoint = sent("ROLLBACK TO SAVEPOINT", generic[2])


def _sqlite_engine(url: str, *, immediate: bool, own_checkpoints: bool = False) -> Engine:
    # The driver's statement cache (128 by default) also holds ingestion's multi-row inserts, whose
    # largest take ~1.35 ms to prepare: the console's and API's other statements must not push them out.
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False, "cached_statements": 512}
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if own_checkpoints:  # by the Database's Checkpointer, never inside a COMMIT
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # On the driver's cursor, through the same cursor events (`rows.send`): Core's execution of it
        # cost several times the driver's, on every transaction.
        rows.send(connection, "BEGIN IMMEDIATE" if immediate else "BEGIN")

    _sent_savepoints(engine.dialect)
    return engine


@dataclass(eq=False)
class _Waiter:
    thread: int
    bulk: bool
    gate: threading.Lock = field(default_factory=threading.Lock)  # held until this writer is served
    served: bool = False
    passed_in: int | None = None  # the hold whose writers first went ahead of this bulk writer


class FairLock:
    """A lock taken in arrival order, reentrant for its holder; a short writer may pass a bulk one once.

    SQLite lets one writer in at a time, and a writer finding the database locked sleeps and retries
    (its busy handler, with growing sleeps): a steady stream of writers can keep one waiting for
    seconds. Queueing a process's writers here first serves them in order; SQLite's lock still
    serializes them with other processes.

    A bulk writer (an ingestion batch: tens of milliseconds under the lock) is the exception: the short
    writers waiting when the lock is released go ahead of it, in one hold (`hand_over` passes the turn
    among them), so a short write waits for the batch holding the lock, not also for the one queued
    next. Only one hold may pass a bulk writer: once passed, it is served before anyone who came after
    it, so a stream of short writes delays a batch by one hold at most. And a bulk writer is never
    handed a hold that is going on (`hand_over` skips it): the writers of that hold would wait for it.

    Each waiting writer blocks on a gate of its own, and a turn passing on opens only the served
    writer's: waking every waiter to let all but one find it is not their turn made each hand-over cost
    a thread wake-up (and a fight for the GIL) per queued writer, inside the write lock."""

    def __init__(self, timeout: float = SQLITE_BUSY_TIMEOUT) -> None:
        self._mutex = threading.Lock()
        self._timeout = timeout
        self._queue: list[_Waiter] = []  # in arrival order
        self._holder: int | None = None
        self._depth = 0
        self._hold = 0  # counts the holds: a turn passed on by `hand_over` continues its hold
        self._next_ticket = 0  # how many writers asked for the lock (the tests wait on it)

    def __enter__(self) -> None:
        self.acquire()

    def acquire(self, *, bulk: bool = False) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._holder == me:
                self._depth += 1
                return
            self._next_ticket += 1
            if self._holder is None and not self._queue:
                self._holder, self._depth = me, 1
                return
            waiter = _Waiter(me, bulk)
            waiter.gate.acquire()
            self._queue.append(waiter)
        # Opened (released) by `_serve`, under the mutex, once the turn is this writer's.
        waiter.gate.acquire(timeout=self._timeout)
        with self._mutex:
            if not waiter.served:
                # As SQLite's own busy timeout would: fail this writer, never the queue behind it.
                self._queue.remove(waiter)
                raise OperationalError("waiting for the write lock", None, Exception("database is locked"))

    def __exit__(self, *_: object) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth > 0:
                return
            self._holder = None
            self._hold += 1
            following = self._next_short() or (self._queue[0] if self._queue else None)
            if following is not None:
                self._serve(following)

    def hand_over(self) -> bool:
        """Leave the turn, within the same hold, to the next short writer that may go now (True), or,
        with none waiting, keep it (False). Decided under the lock's own mutex: a writer handed the turn
        can no longer give up on it, so a holder that hands over knows someone has taken over."""
        with self._mutex:
            if self._depth > 1:  # the holder re-entered: its outer hold still needs the turn
                return False
            following = self._next_short()
            if following is None:
                return False
            self._serve(following)
            return True

    def _next_short(self) -> _Waiter | None:
        """The first short writer waiting that this hold may serve: bulk writers ahead of it may be
        passed only by one hold (marked here as passed by this one)."""
        passing: list[_Waiter] = []
        for waiter in self._queue:
            if not waiter.bulk:
                for batch in passing:
                    batch.passed_in = self._hold
                return waiter
            if waiter.passed_in not in (None, self._hold):
                return None
            passing.append(waiter)
        return None

    def _serve(self, waiter: _Waiter) -> None:
        self._queue.remove(waiter)
        waiter.served = True
        self._holder, self._depth = waiter.thread, 1
        waiter.gate.release()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self._writers: FairLock | None = None
        self.group_commit: GroupCommit | None = None
        self.checkpointer: Checkpointer | None = None
        self._bulk: FairLock | None = None
        if url.startswith("sqlite"):
            make_private_sqlite_file(url)
            own_checkpoints = sqlite_file(url) is not None  # a memory database has no WAL
            self.write_engine = _sqlite_engine(url, immediate=True, own_checkpoints=own_checkpoints)
            self.read_engine = _sqlite_engine(url, immediate=False)
            self._writers = FairLock()
            if own_checkpoints:
                self.checkpointer = Checkpointer(self.write_engine, self._writers)
            # PostgreSQL groups concurrent commits itself (commit_delay); SQLite needs it done here.
            committed = self.checkpointer.committed if self.checkpointer is not None else None
            self.group_commit = GroupCommit(self.write_engine, self._writers, committed=committed)
            self._bulk = FairLock()
        else:
            self.write_engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            self.read_engine = self.write_engine
        self._writer = sessionmaker(self.write_engine, expire_on_commit=False)
        self._reader = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any exception."""
        if self.group_commit is None:
            with self._writer() as session, session.begin():
                yield session
            return
        with self.group_commit.transaction(self._writer) as session:
            yield session

    @contextmanager
    def bulk_transaction(self) -> Iterator[Session]:
        """`transaction` for a large batch (an ingestion request). On SQLite a process lets one batch at
        a time queue for the write lock, and short writes waiting when the lock is released go before
        it (`FairLock`): a short write arriving meanwhile (another environment's usage report) waits for
        the batch holding the lock, never also for the batches queued behind it."""
        if self._bulk is None:
            with self.transaction() as session:
                yield session
            return
        assert self.group_commit is not None
        # A batch ends its group: the writers behind it start a new one rather than add their work to
        # a write lock already held for the batch (the lock's longest hold stays about one batch).
        with self._bulk, self.group_commit.transaction(self._writer, bulk=True) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (no write lock on SQLite)."""
        # Closing the session rolls back whatever the reader began.
        with self._reader() as session:
            yield session

    def ping(self) -> bool:
        with self.read_engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
