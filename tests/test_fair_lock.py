"""SQLite writers of one process queue in arrival order (`entitle.db.database.FairLock`): SQLite's own
busy handler retries with growing sleeps, so a steady stream of writers could keep one waiting."""

from __future__ import annotations

import threading

from sqlalchemy.exc import OperationalError

from entitle.db.database import FairLock


def _queued(lock: FairLock, tickets: int) -> None:
    """Until `tickets` writers took their turn number (they wait in `__enter__`)."""
    while lock._next_ticket < tickets:
        threading.Event().wait(0.001)


def test_writers_are_served_in_arrival_order_and_the_holder_may_reenter() -> None:
    lock = FairLock()
    served: list[int] = []
    with lock:
        threads = []
        for n in range(6):
            thread = threading.Thread(target=lambda n=n: _take(lock, served, n))
            thread.start()
            threads.append(thread)
            _queued(lock, n + 2)  # the holder's ticket, then one per waiting writer
        with lock:  # the holder again: no deadlock
            served.append(-1)
    for thread in threads:
        thread.join()
    assert served == [-1, 0, 1, 2, 3, 4, 5]


def _take(lock: FairLock, served: list[int], n: int) -> None:
    with lock:
        served.append(n)


def test_a_writer_that_gives_up_does_not_stall_the_queue() -> None:
    lock = FairLock(timeout=0.05)
    outcome: dict[str, object] = {}
    ready = threading.Event()

    def impatient() -> None:
        try:
            with lock:
                outcome["impatient"] = "served"
        except OperationalError as exc:
            outcome["impatient"] = exc

    def patient() -> None:
        ready.wait()
        with lock:
            outcome["patient"] = "served"

    with lock:
        first = threading.Thread(target=impatient)
        first.start()
        first.join()  # it gave up while the lock was held
        lock._timeout = 30
        second = threading.Thread(target=patient)
        second.start()
        ready.set()
        _queued(lock, 3)
    second.join()
    assert isinstance(outcome["impatient"], OperationalError)
    assert outcome["patient"] == "served"
    with lock:  # and the lock is free again
        pass


def test_many_writers_some_giving_up_never_overlap_and_all_the_patient_are_served() -> None:
    """Each waiter has a gate of its own and only the next one is opened: whatever the mix of hand-overs,
    releases and writers giving up, one holder at a time, and no patient writer is left behind."""
    lock = FairLock(timeout=30)
    inside: list[int] = []
    overlaps: list[tuple[int, ...]] = []
    served: list[int] = []
    guard = threading.Lock()

    def writer(n: int) -> None:
        if n % 5 == 0:
            lock._timeout = 0.0005  # read when its wait begins: this writer may give up
        try:
            lock.__enter__()
        except OperationalError:
            assert n % 5 == 0
            return
        finally:
            lock._timeout = 30
        with guard:
            inside.append(n)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
            inside.remove(n)
            served.append(n)
        # As a group commit's member does: hand the turn to the next writer, or release it.
        if not (n % 3 == 0 and lock.hand_over()):
            lock.__exit__()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlaps
    assert {n for n in range(60) if n % 5} <= set(served)
    with lock:  # and the lock is free again
        pass
