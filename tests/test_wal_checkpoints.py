"""Issue 12: SQLite's WAL is checkpointed beside the writers, never inside a COMMIT
(`entitle.db.checkpoints`), and cannot grow without bound: past its limit a RESTART checkpoint in the
write turn lets the next writer start it over. What was committed stays committed throughout."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from entitle.db import Database
from entitle.db import checkpoints as checkpoints_module
from entitle.db.checkpoints import Checkpointer

WAIT = 30.0  # seconds: only a broken checkpointer waits this long, and it fails the test rather than hang
ROW = "x" * 3000  # about one page a row: the WAL grows by a frame or more per insert


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'wal.db'}")
    with database.transaction() as session:
        session.execute(text("CREATE TABLE probe (n INTEGER PRIMARY KEY, filler TEXT)"))
    yield database
    database.dispose()


def _checkpointer(db: Database) -> Checkpointer:
    assert db.checkpointer is not None
    return db.checkpointer


def _manual(db: Database, monkeypatch: pytest.MonkeyPatch) -> Checkpointer:
    """The checkpointer, its thread stopped and commits no longer waking it: checkpoints here are the
    test's own, one at a time."""
    checkpointer = _checkpointer(db)
    assert db.group_commit is not None
    monkeypatch.setattr(db.group_commit, "_committed", None)
    checkpointer.stop()
    return checkpointer


def _insert(db: Database, first: int, count: int) -> None:
    for n in range(first, first + count):
        with db.transaction() as session:
            session.execute(text("INSERT INTO probe VALUES (:n, :filler)"), {"n": n, "filler": ROW})


def _wal_frames(db: Database) -> int:
    """Frames in the WAL now, as a PASSIVE checkpoint reports them (it copies them too); from a raw
    connection: the engine's would begin a transaction first, in which no checkpoint can run."""
    raw = db.read_engine.raw_connection()
    try:
        return int(raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        raw.close()


def test_the_writer_connections_never_checkpoint_in_a_commit(sqlite_db: Database) -> None:
    for engine, setting in ((sqlite_db.write_engine, 0), (sqlite_db.read_engine, 1000)):
        raw = engine.raw_connection()  # readers never checkpoint: theirs is SQLite's default
        try:
            assert raw.cursor().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == setting
        finally:
            raw.close()


def test_a_memory_database_has_no_checkpointer() -> None:
    database = Database("sqlite://")
    try:
        assert database.checkpointer is None
    finally:
        database.dispose()


def _eventually(condition: Callable[[], bool]) -> None:
    for _ in range(int(WAIT * 1000)):
        if condition():
            return
        threading.Event().wait(0.001)
    raise AssertionError("never happened")


def test_commits_wake_the_checkpointer_which_ends_once_idle_and_the_next_commit_starts_again(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle, the thread ends: it would otherwise keep a Database nobody disposed (and its connections) alive.
    monkeypatch.setattr(checkpoints_module, "IDLE_SECONDS", 0.01)
    monkeypatch.setattr(checkpoints_module, "CHECKPOINT_SECONDS", 0.0)
    checkpointer = _checkpointer(sqlite_db)
    _insert(sqlite_db, 0, 5)
    _eventually(lambda: checkpointer.stats.runs >= 1 and checkpointer._thread is None)
    runs = checkpointer.stats.runs
    _insert(sqlite_db, 5, 1)
    _eventually(lambda: checkpointer.stats.runs > runs)
    assert checkpointer.stats.failures == 0


def test_past_its_limit_the_wal_is_started_over_and_nothing_committed_is_lost(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpointer = _manual(sqlite_db, monkeypatch)
    monkeypatch.setattr(checkpoints_module, "WAL_LIMIT_FRAMES", 40)
    _insert(sqlite_db, 0, 60)
    grown = _wal_frames(sqlite_db)
    assert grown >= 60  # no COMMIT checkpointed (SQLite's own would have, at 1,000 frames only anyway)
    frames, copied = checkpointer.checkpoint()
    assert checkpointer.stats.restarts == checkpointer.stats.restarted == 1
    assert frames == copied  # every frame is in the database file: the WAL may start over
    _insert(sqlite_db, 60, 1)
    assert _wal_frames(sqlite_db) < grown  # the next writer started it over
    with sqlite_db.read() as session:
        assert session.execute(text("SELECT count(*), min(n), max(n) FROM probe")).one() == (61, 0, 60)


def test_below_its_limit_the_wal_is_checkpointed_without_the_write_turn(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpointer = _manual(sqlite_db, monkeypatch)
    monkeypatch.setattr(checkpoints_module, "WAL_LIMIT_FRAMES", 10_000)
    _insert(sqlite_db, 0, 10)
    turns = sqlite_db._writers
    assert turns is not None
    with turns:  # a writer holds the turn: the PASSIVE checkpoint runs anyway
        frames, copied = checkpointer.checkpoint()
    assert frames >= 10 and copied == frames
    assert checkpointer.stats.restarts == 0


def test_the_restart_waits_for_the_group_in_progress_to_commit(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RESTART checkpoint takes the write turn as a bulk writer: it is never handed a group that is
    going on, whose members would wait for a COMMIT no one sends."""
    checkpointer = _manual(sqlite_db, monkeypatch)
    monkeypatch.setattr(checkpoints_module, "WAL_LIMIT_FRAMES", 1)
    _insert(sqlite_db, 0, 5)
    turns = sqlite_db._writers
    assert turns is not None
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with sqlite_db.transaction() as session:
            session.execute(text("INSERT INTO probe VALUES (100, 'open')"))
            holding.set()
            release.wait(WAIT)
            order.append("writer done")
        order.append("writer committed")

    def checkpoint() -> None:
        checkpointer.checkpoint()
        order.append("checkpoint")

    threads = [threading.Thread(target=writer), threading.Thread(target=checkpoint)]
    threads[0].start()
    assert holding.wait(WAIT)
    asked = turns._next_ticket
    threads[1].start()
    for _ in range(int(WAIT * 1000)):  # until the checkpoint queued for the turn
        if turns._next_ticket > asked:
            break
        threading.Event().wait(0.001)
    assert turns._next_ticket > asked
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)  # handed the open group, the writer would hang
    assert order[0] == "writer done" and sorted(order[1:]) == ["checkpoint", "writer committed"]
    assert checkpointer.stats.restarts == checkpointer.stats.restarted == 1  # it ran with no write open
    with sqlite_db.read() as session:
        assert session.execute(text("SELECT filler FROM probe WHERE n = 100")).scalar_one() == "open"


def test_a_database_used_again_after_dispose_checkpoints_again(sqlite_db: Database) -> None:
    checkpointer = _checkpointer(sqlite_db)
    _insert(sqlite_db, 0, 1)
    sqlite_db.dispose()
    runs = checkpointer.stats.runs
    _insert(sqlite_db, 1, 1)  # an engine disposed of opens new connections
    _eventually(lambda: checkpointer.stats.runs > runs)
