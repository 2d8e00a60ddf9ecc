"""Issue 12: another environment's usage report waits for the ingestion batch holding the SQLite write
lock, never also for the batches queued behind it (`Database.bulk_transaction`); on PostgreSQL, which
has no database-wide write lock, batches still run side by side."""

from __future__ import annotations

import threading

from sqlalchemy import text

from entitle.db import Database
from entitle.db.database import FairLock


def _queued(lock: FairLock | None, tickets: int) -> None:
    """Until `tickets` writers took their turn number (they wait in `__enter__`); a writer that never
    queues there fails the test rather than hanging it."""
    assert lock is not None
    for _ in range(30_000):
        if lock._next_ticket >= tickets:
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"{tickets} writers never queued")


def test_a_short_write_waits_for_the_batch_holding_the_lock_not_for_the_batches_behind_it(db: Database) -> None:
    if db.dialect != "sqlite":
        both_open = threading.Barrier(2, timeout=30)  # broken (an error) if one batch waited for the other

        def batch() -> None:
            with db.bulk_transaction() as s:
                s.execute(text("SELECT 1"))
                both_open.wait()

        threads = [threading.Thread(target=batch) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not both_open.broken
        return
    served: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first_batch() -> None:
        with db.bulk_transaction() as s:
            s.execute(text("SELECT 1"))
            holding.set()
            release.wait()
            served.append("first batch")

    def second_batch() -> None:
        with db.bulk_transaction() as s:
            s.execute(text("SELECT 1"))
            served.append("second batch")

    def report() -> None:
        with db.transaction() as s:
            s.execute(text("SELECT 1"))
            served.append("report")

    threads = [threading.Thread(target=first_batch)]
    threads[0].start()
    holding.wait()
    threads.append(threading.Thread(target=second_batch))
    threads[1].start()
    _queued(db._bulk, 2)  # the second batch waits behind the first, before the write lock's queue
    threads.append(threading.Thread(target=report))
    threads[2].start()
    _queued(db._writers, 2)  # the report waits for the write lock, right behind the first batch
    release.set()
    for thread in threads:
        thread.join()
    assert served == ["first batch", "report", "second batch"]
