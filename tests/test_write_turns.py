"""Issue 12: a short SQLite write (another environment's usage report) waits for the ingestion batch
holding the write lock, not also for a batch queued before it (`entitle.db.database.FairLock`): the
short writers waiting when the lock is released go first, in one hold, and a bulk writer is never
handed a hold that is going on. A bulk writer is passed by one hold at most, so a stream of short
writes cannot starve ingestion. Ordering is asserted, never timing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from entitle.db import Database
from entitle.db import group_commit as group_commit_module
from entitle.db.database import FairLock

WAIT = 30.0  # seconds: only a broken lock ever waits this long, and it fails the test rather than hang


def _queued(lock: FairLock | None, writers: int) -> None:
    """Until `writers` writers asked for the lock (the holder included)."""
    assert lock is not None
    for _ in range(30_000):
        if lock._next_ticket >= writers:
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"{writers} writers never queued")


def _writer(
    lock: FairLock, served: list[tuple[str, int]], name: str, *, bulk: bool, hands_over: bool
) -> threading.Thread:
    """A thread that takes the lock, records its name and the hold it is served in, then hands the turn
    over (when `hands_over` and a short writer may take it) or releases it."""

    def run() -> None:
        lock.acquire(bulk=bulk)
        served.append((name, lock._hold))
        if not (hands_over and lock.hand_over()):
            lock.__exit__()

    return threading.Thread(target=run, name=name)


def _run(lock: FairLock, arrivals: list[tuple[str, bool, bool]]) -> list[tuple[str, int]]:
    """Queue the writers in order while this thread holds the lock, release it; the order served, with
    the hold each was served in."""
    served: list[tuple[str, int]] = []
    threads = [_writer(lock, served, name, bulk=bulk, hands_over=hands) for name, bulk, hands in arrivals]
    with lock:
        for number, thread in enumerate(threads, start=2):
            thread.start()
            _queued(lock, number)
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), f"{thread.name} was never served"
    return served


def _names(served: list[tuple[str, int]]) -> list[str]:
    return [name for name, _ in served]


def test_short_writers_waiting_when_the_lock_is_released_go_before_a_batch_queued_earlier() -> None:
    served = _run(FairLock(), [("batch", True, False), ("report-1", False, True), ("report-2", False, True)])
    assert _names(served) == ["report-1", "report-2", "batch"]
    assert served[0][1] == served[1][1] != served[2][1]  # the reports in one hold, the batch in its own


def test_a_batch_is_passed_by_one_hold_only() -> None:
    # Each short writer here ends its hold instead of handing it over: the first passes the batch, the
    # second came after the batch and must wait for it.
    served = _run(FairLock(), [("batch", True, False), ("report-1", False, False), ("report-2", False, False)])
    assert _names(served) == ["report-1", "batch", "report-2"]


def test_a_hold_is_never_handed_to_a_batch() -> None:
    lock = FairLock()
    served: list[tuple[str, int]] = []
    batch = _writer(lock, served, "batch", bulk=True, hands_over=False)
    with lock:
        batch.start()
        _queued(lock, 2)
        assert not lock.hand_over()  # only a batch waits: the holder keeps the turn, and ends its hold
        assert served == []
    batch.join(WAIT)
    assert _names(served) == ["batch"]


def test_batches_among_themselves_and_short_writers_among_themselves_keep_arrival_order() -> None:
    arrivals = [("b1", True, False), ("b2", True, False), ("s1", False, True), ("s2", False, True)]
    arrivals += [("s3", False, True)]
    assert _names(_run(FairLock(), arrivals)) == ["s1", "s2", "s3", "b1", "b2"]


@settings(max_examples=60, deadline=None)
@given(arrivals=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=7))
def test_any_queue_is_served_once_each_short_writers_first_and_a_batch_passed_by_one_hold_at_most(
    arrivals: list[tuple[bool, bool]],
) -> None:
    """Writers (bulk or short, handing the turn over or not) queue while the lock is held, then it is
    released: whatever the mix, each is served once; a batch starts a hold of its own; no writer that
    came after a short writer is served before it; batches keep their order; and the writers that came
    after a batch and went before it all did so within one hold."""
    lock = FairLock()
    named = [(f"{'b' if bulk else 's'}{n}", bulk, hands) for n, (bulk, hands) in enumerate(arrivals)]
    served = _run(lock, named)
    assert sorted(name for name, _ in served) == sorted(name for name, _, _ in named)
    position = {name: n for n, (name, _, _) in enumerate(named)}
    bulk = {name: is_bulk for name, is_bulk, _ in named}
    order = [name for name, _ in served]
    hold_of = dict(served)
    for n, name in enumerate(order):
        if bulk[name] and n:
            assert hold_of[name] != hold_of[order[n - 1]], f"batch {name} was handed a hold going on"
        if not bulk[name]:
            assert all(position[earlier] < position[name] for earlier in order[:n]), f"{name} was passed"
    batches = [name for name in order if bulk[name]]
    assert batches == sorted(batches, key=position.__getitem__)
    for n, name in enumerate(order):
        if bulk[name]:
            passing = {hold_of[w] for w in order[:n] if position[w] > position[name]}
            assert len(passing) <= 1, f"batch {name} was passed by holds {passing}"
    if not all(bulk.values()):
        assert not bulk[order[0]]  # the lock released, a short writer goes first


# --- the same rules through Database's writers ------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    # A group here ends when its queue does, however slowly a loaded machine runs its members.
    monkeypatch.setattr(group_commit_module, "MAX_GROUP_SECONDS", 600.0)
    database = Database(f"sqlite:///{tmp_path / 'turns.db'}")
    with database.transaction() as session:
        session.execute(text("CREATE TABLE probe (name VARCHAR(40) PRIMARY KEY)"))
    yield database
    database.dispose()


def test_a_report_neither_waits_for_a_batch_queued_before_it_nor_carries_one_in_its_group(
    sqlite_db: Database,
) -> None:
    """A report holds the lock, a batch queues, then a second report: the second report joins the first
    one's group, the batch runs after both returned, in a group of its own."""
    db, turns, groups = sqlite_db, sqlite_db._writers, sqlite_db.group_commit
    assert turns is not None and groups is not None
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()
    first_returned = threading.Event()
    seen_by_batch: dict[str, bool] = {}

    def first_report() -> None:
        with db.transaction() as s:
            s.execute(text("INSERT INTO probe VALUES ('first')"))
            holding.set()
            release.wait(WAIT)
            order.append("first report")
        first_returned.set()

    def batch() -> None:
        with db.bulk_transaction() as s:
            # Had the batch joined the reports' group, they would be waiting for its COMMIT here.
            seen_by_batch["first report returned"] = first_returned.wait(WAIT)
            s.execute(text("INSERT INTO probe VALUES ('batch')"))
            order.append("batch")

    def second_report() -> None:
        with db.transaction() as s:
            s.execute(text("INSERT INTO probe VALUES ('second')"))
            order.append("second report")

    commits = groups.commits
    threads = [threading.Thread(target=first_report)]
    threads[0].start()
    assert holding.wait(WAIT)
    threads.append(threading.Thread(target=batch))
    threads[1].start()
    _queued(turns, 2)
    threads.append(threading.Thread(target=second_report))
    threads[2].start()
    _queued(turns, 3)
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert order == ["first report", "second report", "batch"]
    assert seen_by_batch == {"first report returned": True}
    assert groups.commits - commits == 2  # the reports' group, then the batch's
    with db.read() as s:
        assert sorted(s.execute(text("SELECT name FROM probe")).scalars()) == ["batch", "first", "second"]
