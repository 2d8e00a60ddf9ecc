"""Group commit for SQLite writers: transactions that queue for the write lock at the same moment share
one COMMIT, so one fsync makes a whole group durable.

With `synchronous=FULL` every COMMIT waits for the disk, and SQLite lets one writer in at a time: one
commit per transaction caps a process's writes at its disk's fsync rate, and the writers waiting
behind a commit wait for that fsync too. Here the writers of a process take turns (`FairLock`) on one
writer connection. The first opens the group's transaction (BEGIN IMMEDIATE) and works in it directly;
each later turn runs its work in its own SAVEPOINT, so a failing transaction rolls back only its own
work (the first one's failure rolls back the transaction, which holds nothing else). A turn hands the
connection, transaction still open, to the next short writer in the queue; the turn that finds none
waiting (or the group full, or open long enough) sends the COMMIT. A bulk writer (an ingestion batch)
is a group of its own: never handed an open group, whose members would wait for its work, and
committing as soon as it is done. Every member waits for its group's COMMIT before it returns: none
is answered before its work is durable, and a failed COMMIT fails every member with `OperationalError`
(the database's "retry" answer) and writes nothing of the group.

What each member's commit announces (`when_durable`: domain events, hence snapshot invalidation and
push signals) runs in the member's own thread once the group's COMMIT returned, never at its SAVEPOINT
release. Members of one group run one after the other, each seeing the work of those before it, as it
would if they had committed one by one: isolation is serial, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from entitle.db.database import FairLock

log = logging.getLogger("entitle.db")

_DEFER = "entitle.db.group_commit.defer"
# A group stops taking members once it has held the lock this long or has this many: the write lock
# (and the first member's answer) waits for at most one more transaction, plus the COMMIT, after that.
MAX_GROUP_SECONDS = 0.02
MAX_GROUP_MEMBERS = 64


def when_durable(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the transaction `session` just committed is durable: now, unless the session
    is a member of a group commit; then in the member's thread right after the group's COMMIT (never
    if that COMMIT fails). Called from an `after_commit` listener."""
    defer: Callable[[Callable[[], None]], None] | None = session.info.get(_DEFER)
    if defer is None:
        callback()
    else:
        defer(callback)


@dataclass(eq=False)
class _Group:
    connection: Connection
    opened: float = field(default_factory=time.monotonic)
    members: int = 0  # that succeeded
    began: int = 0  # that began their work
    abandoned: bool = False  # its first member failed: its transaction is rolled back, the group over
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommit:
    """The SQLite writers of one `Database`: see the module docstring."""

    def __init__(self, engine: Engine, turns: FairLock, *, committed: Callable[[], None] | None = None) -> None:
        self._engine = engine
        self._turns = turns
        self._committed = committed  # told after each COMMIT (the WAL checkpointer)
        self._group: _Group | None = None  # the open group; read and written only by the turn's holder
        self._inside = threading.local()
        self._stats_lock = threading.Lock()
        self.commits = 0  # COMMITs sent (groups that committed), for tests and diagnostics
        self.committed_members = 0

    @contextmanager
    def transaction(self, nested: Callable[[], Session], *, bulk: bool = False) -> Iterator[Session]:
        """One member's unit of work: commits (durably, with its group) on success, rolls back only its
        own work on any exception. `nested` makes the session of a transaction begun inside another
        one in the same thread, which keeps its own connection as it always did. `bulk`: a long one
        (see `bulk_transaction`), a group of its own: short writers waiting may go first (`FairLock`),
        and it commits instead of handing the group over."""
        if getattr(self._inside, "active", False):
            with nested() as session, session.begin():
                yield session
            return
        deferred: list[Callable[[], None]] = []
        self._turns.acquire(bulk=bulk)
        try:
            group = self._open()
        except BaseException:
            self._turns.__exit__()
            raise
        first = group.began == 0
        group.began += 1
        try:
            self._inside.active = True
            with self._member(group, deferred, first=first) as session:
                yield session
            group.members += 1
        except BaseException:
            if first:
                group.abandoned = True
            else:
                self._check_alive(group)
            raise
        finally:
            self._inside.active = False
            if not self._end_turn(group, bulk):
                self._turns.__exit__()
        group.done.wait()
        if group.error is not None:
            raise OperationalError("COMMIT", None, group.error) from group.error
        for callback in deferred:
            callback()

    @contextmanager
    def _member(self, group: _Group, deferred: list[Callable[[], None]], *, first: bool) -> Iterator[Session]:
        # The first member's work is all its transaction holds: it needs no SAVEPOINT, whose statement
        # journal copies each page of the database the work changes before changing it (for an
        # ingestion batch of 1,000 events, about as much CPU again as the inserts, inside the write
        # lock). Its failure rolls the whole transaction back, and ends the group.
        mode: Literal["rollback_only", "create_savepoint"] = "rollback_only" if first else "create_savepoint"
        session = Session(bind=group.connection, join_transaction_mode=mode, expire_on_commit=False)
        session.info[_DEFER] = deferred.append
        try:
            with session, session.begin():
                yield session
        finally:
            # SQLAlchemy keeps a session in reference cycles (its transactions, its connection's), which
            # only the garbage collector frees: through `deferred`, the session kept what its transaction
            # announced alive until then (an ingestion batch's events, their measured amounts and slots,
            # ~600 objects), and every collection walked them again.
            session.info.pop(_DEFER, None)

    def _open(self) -> _Group:
        if self._group is not None:
            return self._group
        connection = self._engine.connect()
        try:
            connection.begin()  # BEGIN IMMEDIATE: waits for other processes' writers
        except BaseException:
            connection.close()
            raise
        self._group = _Group(connection)
        return self._group

    def _check_alive(self, group: _Group) -> None:
        """A failed member rolled back its savepoint; some errors (disk full, I/O) make SQLite roll back
        the whole transaction, taking the group's earlier members with it: then the group has failed."""
        if group.error is not None:
            return
        try:
            raw = group.connection.connection.dbapi_connection
            alive = raw is not None and bool(raw.in_transaction)
        except Exception as exc:  # a connection that cannot even say: nothing of it can be trusted
            group.error = exc
            return
        if not alive:
            group.error = RuntimeError("SQLite rolled back the group's transaction")

    def _end_turn(self, group: _Group, bulk: bool = False) -> bool:
        """Hand the open group over to the next writer waiting for the turn (True: the turn is theirs),
        or, with nobody waiting, the group full or failed, end the group here (False: the turn is still
        this thread's). Runs while this thread holds the turn."""
        full = bulk or group.members >= MAX_GROUP_MEMBERS or time.monotonic() - group.opened >= MAX_GROUP_SECONDS
        if group.error is None and not group.abandoned and not full and self._turns.hand_over():
            return True
        self._group = None
        try:
            if group.error is None and group.members:
                self._commit(group)
            else:  # failed, or nothing to keep (its only members failed)
                group.connection.rollback()
        except BaseException as exc:
            group.error = group.error or exc
            log.warning("group commit of %d transactions failed: %s", group.members, exc)
            try:
                group.connection.rollback()
            except Exception:
                group.connection.invalidate()
        finally:
            try:
                group.connection.close()
            except Exception:  # the members' answer is decided: a connection that will not close must not hold them
                log.exception("closing the group commit's connection failed")
            group.done.set()
        return False

    def _commit(self, group: _Group) -> None:
        group.connection.commit()
        with self._stats_lock:
            self.commits += 1
            self.committed_members += group.members
        if self._committed is not None:
            try:
                self._committed()
            except Exception:  # the group is durable: its members' answer must not depend on a checkpoint
                log.exception("announcing a group commit to the WAL checkpointer failed")
