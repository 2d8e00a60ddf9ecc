"""SQLite writers that queue for the write lock at the same moment share one COMMIT
(`entitle.db.group_commit`): each is answered only once that COMMIT is durable, a failing one rolls
back only its own work, a crash before the COMMIT leaves nothing of the group, and what a transaction
announces after its commit is announced only once it is durable."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from entitle import domain_events
from entitle.db import Database
from entitle.db import group_commit as group_commit_module
from entitle.db.database import FairLock
from entitle.db.group_commit import GroupCommit

ROOT = Path(__file__).resolve().parent.parent
PROBE = "CREATE TABLE IF NOT EXISTS group_commit_probe (name VARCHAR(40) PRIMARY KEY)"


def _make_probe(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(PROBE))
    engine.dispose()


def _insert(session: Session, name: str) -> None:
    session.execute(text("INSERT INTO group_commit_probe (name) VALUES (:name)"), {"name": name})


def _names_seen_by_another_connection(url: str) -> set[str]:
    """What a connection of its own (another process would see the same) reads: committed rows only."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT name FROM group_commit_probe"))}
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'group.db'}"
    _make_probe(url)
    return url


@pytest.fixture
def sqlite_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    # A group here ends when its queue does, however slowly a loaded machine runs its members.
    monkeypatch.setattr(group_commit_module, "MAX_GROUP_SECONDS", 600.0)
    database = Database(sqlite_url)
    yield database
    database.dispose()


def _groups(db: Database) -> GroupCommit:
    assert db.group_commit is not None
    return db.group_commit


def _turns(db: Database) -> FairLock:
    assert db._writers is not None
    return db._writers


def _queued(lock: FairLock, tickets: int) -> None:
    """Until `tickets` writers took their turn number (they wait in `__enter__`)."""
    while lock._next_ticket < tickets:
        threading.Event().wait(0.001)


@dataclass
class Outcome:
    errors: dict[int, BaseException]
    visible_on_return: dict[int, bool]


def _one_group(
    db: Database,
    url: str,
    works: Sequence[Callable[[Session], None]],
    names: Sequence[str],
    bulk: frozenset[int] = frozenset(),
) -> Outcome:
    """Run `works` in threads that all queue while the test holds the write turn, so that they form one
    group (the ones in `bulk` as `bulk_transaction`s); each records whether its own row was visible to
    another connection as soon as it returned."""
    outcome = Outcome(errors={}, visible_on_return={})

    def run(n: int) -> None:
        try:
            with db.bulk_transaction() if n in bulk else db.transaction() as session:
                works[n](session)
        except BaseException as exc:
            outcome.errors[n] = exc
            return
        outcome.visible_on_return[n] = names[n] in _names_seen_by_another_connection(url)

    turns = _turns(db)
    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(works))]
    with turns:
        for number, thread in enumerate(threads, start=2):
            thread.start()
            _queued(turns, number)
    for thread in threads:
        thread.join()
    return outcome


def test_concurrent_writers_are_durable_when_answered(db: Database, database_url: str) -> None:
    _make_probe(database_url)
    writers, each = 6, 5
    unseen: list[str] = []
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        for n in range(each):
            name = f"w{writer}-{n}"
            try:
                with db.transaction() as session:
                    _insert(session, name)
            except BaseException as exc:
                errors.append(exc)
                return
            if name not in _names_seen_by_another_connection(database_url):
                unseen.append(name)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert unseen == []
    db.dispose()
    reopened = Database(database_url)
    with reopened.read() as session:
        count = session.execute(text("SELECT count(*) FROM group_commit_probe")).scalar_one()
    reopened.dispose()
    assert count == writers * each


def test_writers_queued_together_share_one_commit_and_each_sees_the_work_before_it(
    sqlite_db: Database, sqlite_url: str
) -> None:
    names = [f"q{n}" for n in range(8)]
    counts: dict[str, int] = {}

    def work(name: str) -> Callable[[Session], None]:
        def insert(session: Session) -> None:
            counts[name] = session.execute(text("SELECT count(*) FROM group_commit_probe")).scalar_one()
            _insert(session, name)

        return insert

    before = _groups(sqlite_db).commits
    outcome = _one_group(sqlite_db, sqlite_url, [work(name) for name in names], names)
    assert outcome.errors == {}
    assert all(outcome.visible_on_return.values()) and len(outcome.visible_on_return) == len(names)
    assert _groups(sqlite_db).commits - before == 1 < len(names)
    assert sorted(counts.values()) == list(range(len(names)))  # one after the other, each on the last's work
    assert _names_seen_by_another_connection(sqlite_url) == set(names)


def test_a_batch_is_a_group_of_its_own(sqlite_db: Database, sqlite_url: str) -> None:
    # Handing the open group on after a batch would add the next writers' work to a lock already held
    # for the batch: the longest hold would grow with the queue. Handing a batch the open group would
    # make its members wait for the batch's work.
    names = [f"b{n}" for n in range(5)]
    before = _groups(sqlite_db).commits
    outcome = _one_group(sqlite_db, sqlite_url, [_inserting(name) for name in names], names, bulk=frozenset({2}))
    assert outcome.errors == {}
    assert outcome.visible_on_return == dict.fromkeys(range(len(names)), True)
    assert _groups(sqlite_db).commits - before == 2  # the four short writers (they pass the batch), then it
    assert _names_seen_by_another_connection(sqlite_url) == set(names)


def _inserting(name: str) -> Callable[[Session], None]:
    return lambda session: _insert(session, name)


def test_a_groups_first_writer_works_without_a_savepoint_and_the_later_ones_each_in_one(
    sqlite_db: Database, sqlite_url: str
) -> None:
    # The first writer's work is all its transaction holds: a SAVEPOINT would only make SQLite copy each
    # page it changes into a statement journal first (a batch of random keys: a fifth of its CPU).
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement.split()[0].upper())

    names = [f"s{n}" for n in range(4)]
    sa_event.listen(sqlite_db.write_engine, "before_cursor_execute", record)
    try:
        outcome = _one_group(sqlite_db, sqlite_url, [_inserting(name) for name in names], names, bulk=frozenset({3}))
    finally:
        sa_event.remove(sqlite_db.write_engine, "before_cursor_execute", record)
    assert outcome.errors == {}
    # The three short writers form one group (the batch waits for it), then the batch is one of its own.
    assert [verb for verb in sent if verb in ("BEGIN", "SAVEPOINT", "INSERT")] == [
        *("BEGIN", "INSERT", "SAVEPOINT", "INSERT", "SAVEPOINT", "INSERT"),
        *("BEGIN", "INSERT"),
    ]
    assert _groups(sqlite_db).commits == 2
    assert _names_seen_by_another_connection(sqlite_url) == set(names)


def test_a_failing_writer_rolls_back_only_its_own_work(sqlite_db: Database, sqlite_url: str) -> None:
    names = [f"f{n}" for n in range(6)]

    def insert(name: str) -> Callable[[Session], None]:
        return lambda session: _insert(session, name)

    def insert_then_fail(session: Session) -> None:
        _insert(session, "doomed")
        raise ValueError("refused after writing")

    def duplicate(session: Session) -> None:
        _insert(session, "dup-ok")
        _insert(session, names[0])  # the group's first member wrote it: a constraint violation

    works = [insert(names[0]), insert(names[1]), insert_then_fail, insert(names[3]), duplicate, insert(names[5])]
    outcome = _one_group(sqlite_db, sqlite_url, works, names)
    assert isinstance(outcome.errors.pop(2), ValueError)
    assert isinstance(outcome.errors.pop(4), IntegrityError)
    assert outcome.errors == {}
    assert outcome.visible_on_return == {0: True, 1: True, 3: True, 5: True}
    assert _groups(sqlite_db).commits == 1
    assert _names_seen_by_another_connection(sqlite_url) == {names[0], names[1], names[3], names[5]}
    with sqlite_db.transaction() as session:  # and the writer connection is sound for the next group
        _insert(session, "after")
    assert "after" in _names_seen_by_another_connection(sqlite_url)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["ok", "raise", "conflict"]), min_size=1, max_size=6))
def test_a_group_keeps_exactly_its_succeeding_members_work(
    sqlite_db: Database, sqlite_url: str, kinds: list[str]
) -> None:
    with sqlite_db.transaction() as session:  # each example starts from one taken name
        session.execute(text("DELETE FROM group_commit_probe"))
        _insert(session, "taken")
    names = [f"{kind}{n}" for n, kind in enumerate(kinds)]

    def work(kind: str, name: str) -> Callable[[Session], None]:
        def run(session: Session) -> None:
            _insert(session, name)
            if kind == "raise":
                raise ValueError(name)
            if kind == "conflict":
                _insert(session, "taken")

        return run

    before = _groups(sqlite_db).commits
    outcome = _one_group(sqlite_db, sqlite_url, [work(k, n) for k, n in zip(kinds, names, strict=True)], names)
    raised = {"raise": ValueError, "conflict": IntegrityError}
    expected_errors = {n: raised[kind] for n, kind in enumerate(kinds) if kind != "ok"}
    assert {n: type(error) for n, error in outcome.errors.items()} == expected_errors
    kept = {name for name, kind in zip(names, kinds, strict=True) if kind == "ok"}
    assert _names_seen_by_another_connection(sqlite_url) == kept | {"taken"}
    assert all(outcome.visible_on_return.values())
    assert _groups(sqlite_db).commits - before == (1 if kept else 0)


def test_a_failed_commit_fails_every_member_and_writes_nothing(
    sqlite_db: Database, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def commit_fails(self: GroupCommit, group: object) -> None:
        raise OperationalError("COMMIT", None, Exception("disk I/O error"))

    monkeypatch.setattr(GroupCommit, "_commit", commit_fails)
    names = [f"x{n}" for n in range(5)]
    outcome = _one_group(sqlite_db, sqlite_url, [lambda s, n=n: _insert(s, n) for n in names], names)
    assert sorted(outcome.errors) == list(range(len(names)))
    assert all(isinstance(error, OperationalError) for error in outcome.errors.values())
    assert _names_seen_by_another_connection(sqlite_url) == set()
    monkeypatch.undo()
    with sqlite_db.transaction() as session:
        _insert(session, "x0")  # nothing of the failed group remains, not even in the writer connection
    assert _names_seen_by_another_connection(sqlite_url) == {"x0"}


@dataclass(frozen=True, kw_only=True)
class ProbeWritten(domain_events.DomainEvent):
    name: str


def test_commit_listeners_hear_a_member_only_once_its_group_is_durable(sqlite_db: Database, sqlite_url: str) -> None:
    heard: dict[str, bool] = {}

    def listener(_version: int, events: Sequence[domain_events.DomainEvent]) -> None:
        for event in events:
            if isinstance(event, ProbeWritten):
                heard[event.name] = event.name in _names_seen_by_another_connection(sqlite_url)

    def work(name: str) -> Callable[[Session], None]:
        def write(session: Session) -> None:
            _insert(session, name)
            domain_events.publish(session, ProbeWritten(env_id=0, name=name))

        return write

    names = [f"h{n}" for n in range(5)]
    domain_events.on_commit(listener)
    try:
        outcome = _one_group(sqlite_db, sqlite_url, [work(name) for name in names], names)
    finally:
        domain_events.remove_commit_listener(listener)
    assert outcome.errors == {}
    assert _groups(sqlite_db).commits == 1
    assert heard == dict.fromkeys(names, True)


class _Announced:
    """Something a transaction's announcement holds (weakly referable)."""


@pytest.mark.parametrize("bulk", [False, True])
def test_what_a_transaction_announced_is_freed_once_it_returns(sqlite_db: Database, bulk: bool) -> None:
    # SQLAlchemy keeps a session in reference cycles that only the garbage collector frees; the session
    # must not keep what its transaction announced (an ingestion batch's events, measured amounts,
    # slots) alive until then, or every collection walks it again.
    heard: list[int] = []
    announced = _Announced()
    alive = weakref.ref(announced)
    gc.collect()
    gc.disable()
    try:
        with sqlite_db.bulk_transaction() if bulk else sqlite_db.transaction() as session:
            _insert(session, f"freed-{bulk}")
            group_commit_module.when_durable(session, lambda held=announced: heard.append(id(held)))
        del announced
        assert heard  # announced, once durable
        assert alive() is None  # freed by reference counting alone
    finally:
        gc.enable()


CRASHING_WRITER = textwrap.dedent(
    """
    import os, signal, sys, threading
    from sqlalchemy import text
    from entitle.db import Database
    from entitle.db import group_commit

    group_commit.MAX_GROUP_SECONDS = 600.0

    def killed_before_commit(self, group):
        print(group.members, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    group_commit.GroupCommit._commit = killed_before_commit
    db = Database(sys.argv[1])
    turns = db._writers

    def write(n):
        with db.transaction() as session:
            session.execute(text("INSERT INTO group_commit_probe (name) VALUES (:n)"), {"n": f"k{n}"})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(int(sys.argv[2]))]
    with turns:
        for number, thread in enumerate(threads, start=2):
            thread.start()
            while turns._next_ticket < number:
                threading.Event().wait(0.001)
    for thread in threads:
        thread.join()
    """
)


def test_a_crash_before_the_commit_leaves_nothing_of_the_group(sqlite_url: str) -> None:
    members = 6
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, sqlite_url, str(members)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.split() == [str(members)]  # every member had written when the process died
    assert _names_seen_by_another_connection(sqlite_url) == set()
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:  # and the database is sound: recovery rolled the group back
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_hand_over_skips_writers_that_gave_up_and_keeps_the_turn_when_none_waits() -> None:
    lock = FairLock(timeout=0.05)
    gave_up: list[BaseException] = []

    def impatient() -> None:
        try:
            with lock:
                pass
        except OperationalError as exc:
            gave_up.append(exc)

    with lock:
        assert not lock.hand_over()  # nobody waits: the holder keeps the turn
        first = threading.Thread(target=impatient)
        first.start()
        first.join()
        assert len(gave_up) == 1
        assert not lock.hand_over()  # the only writer that came gave up
    with lock:  # the turn was released once, as usual
        pass
