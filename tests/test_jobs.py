from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.db import Database
from entitle.db.pagination import PageRequest
from entitle.environments.service import ensure_environment
from entitle.jobs import service as jobs
from entitle.jobs.models import DEAD, PENDING, SUCCEEDED
from entitle.jobs.rules import backoff_delay
from tests.support.clock import TestClock


@pytest.fixture
def env_id(db: Database) -> int:
    return ensure_environment(db, "development").pk


def _status(db: Database, pk: int) -> tuple[str, int, str | None]:
    from entitle.jobs import store

    with db.read() as s:
        job = store.get(s, pk)
        assert job is not None
        return job.status, job.attempts, job.last_error


def test_a_job_exists_only_if_its_transaction_commits(db: Database, env_id: int) -> None:
    with pytest.raises(RuntimeError), db.transaction() as s:
        jobs.enqueue(s, env_id, "noop", {})
        raise RuntimeError("the state change failed")
    assert list(jobs.list_jobs(db, env_id, PageRequest(), None).items) == []
    with db.transaction() as s:
        jobs.enqueue(s, env_id, "noop", {"n": 1})
    assert [j.payload for j in jobs.list_jobs(db, env_id, PageRequest(), None).items] == [{"n": 1}]


def test_dedupe_key_yields_one_job(db: Database, env_id: int) -> None:
    with db.transaction() as s:
        first = jobs.enqueue(s, env_id, "trial-end", {"s": 1}, dedupe_key="trial-end:1")
        second = jobs.enqueue(s, env_id, "trial-end", {"s": 1}, dedupe_key="trial-end:1")
        assert first.pk == second.pk
    assert len(jobs.list_jobs(db, env_id, PageRequest(), None).items) == 1


def test_failures_retry_with_backoff_then_succeed(db: Database, env_id: int, test_clock: TestClock) -> None:
    calls: list[int] = []

    def flaky(_: Database, ctx: jobs.JobContext) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt <= 3:
            raise ConnectionError("provider unavailable")

    with db.transaction() as s:
        pk = jobs.enqueue(s, env_id, "flaky", {}).pk
    worker = jobs.Worker(db, handlers={"flaky": flaky})
    assert worker.run_once() == 1
    assert _status(db, pk)[:2] == (PENDING, 1)
    assert worker.run_once() == 0  # not due until the backoff has passed
    for _ in range(3):
        test_clock.advance(timedelta(hours=1))
        worker.run_once()
    status, attempts, error = _status(db, pk)
    assert (status, attempts) == (SUCCEEDED, 4)
    assert calls == [1, 2, 3, 4]
    assert error is not None and "provider unavailable" in error


def test_a_job_that_never_succeeds_is_dead_lettered_and_can_be_retried(
    db: Database, env_id: int, test_clock: TestClock
) -> None:
    def broken(_: Database, ctx: jobs.JobContext) -> None:
        raise ValueError(f"bad payload {ctx.payload}")

    with db.transaction() as s:
        pk = jobs.enqueue(s, env_id, "broken", {"x": 1}, max_attempts=3).pk
    worker = jobs.Worker(db, handlers={"broken": broken})
    for _ in range(5):
        worker.run_once()
        test_clock.advance(timedelta(hours=2))
    status, attempts, error = _status(db, pk)
    assert (status, attempts) == (DEAD, 3)
    assert error is not None and "bad payload" in error
    dead = jobs.list_jobs(db, env_id, PageRequest(), [DEAD]).items
    assert [j.pk for j in dead] == [pk]

    revived = jobs.retry_job(db, env_id, pk)
    assert (revived.status, revived.attempts) == (PENDING, 0)
    worker.handlers["broken"] = lambda _db, _ctx: None
    worker.run_once()
    assert _status(db, pk)[0] == SUCCEEDED


def test_unknown_kind_goes_straight_to_dead_letter(db: Database, env_id: int) -> None:
    with db.transaction() as s:
        pk = jobs.enqueue(s, env_id, "no-such-kind", {}).pk
    jobs.Worker(db, handlers={}).run_once()
    status, _, error = _status(db, pk)
    assert status == DEAD
    assert error is not None and "no handler" in error


def test_jobs_with_one_ordering_key_run_in_order_even_across_failures(
    db: Database, env_id: int, test_clock: TestClock
) -> None:
    seen: list[int] = []
    fail_first = {"left": 1}

    def deliver(_: Database, ctx: jobs.JobContext) -> None:
        if ctx.payload["n"] == 1 and fail_first["left"]:
            fail_first["left"] -= 1
            raise TimeoutError("receiver down")
        seen.append(ctx.payload["n"])

    with db.transaction() as s:
        for n in (1, 2, 3):
            jobs.enqueue(s, env_id, "deliver", {"n": n}, ordering_key="endpoint-a")
        jobs.enqueue(s, env_id, "deliver", {"n": 100}, ordering_key="endpoint-b")
    worker = jobs.Worker(db, handlers={"deliver": deliver})
    worker.run_once()
    assert seen == [100]  # endpoint-b is not held up by endpoint-a's failure; 2 and 3 wait for 1
    test_clock.advance(timedelta(minutes=5))
    worker.drain()
    assert seen == [100, 1, 2, 3]


def test_a_crashed_worker_lease_expires_and_another_worker_finishes(
    db: Database, env_id: int, test_clock: TestClock
) -> None:
    ran: list[str] = []
    with db.transaction() as s:
        pk = jobs.enqueue(s, env_id, "sync", {}).pk
    crashed = jobs.Worker(db, handlers={}, worker_id="crashed", lease=timedelta(minutes=5))
    assert [c.pk for c in crashed.claim()] == [pk]  # claimed, then the process died
    rescuer = jobs.Worker(db, handlers={"sync": lambda _db, ctx: ran.append(ctx.idempotency_key)}, worker_id="b")
    assert rescuer.run_once() == 0  # still leased
    test_clock.advance(timedelta(minutes=6))
    assert rescuer.run_once() == 1
    assert ran == [f"entitle-job-{pk}"]
    assert _status(db, pk)[:2] == (SUCCEEDED, 2)


def test_concurrent_workers_take_each_job_exactly_once(db: Database, env_id: int) -> None:
    with db.transaction() as s:
        for n in range(120):
            jobs.enqueue(s, env_id, "count", {"n": n})
    counts: Counter[int] = Counter()
    lock = threading.Lock()

    def count(_: Database, ctx: jobs.JobContext) -> None:
        with lock:
            counts[ctx.payload["n"]] += 1

    workers = [jobs.Worker(db, handlers={"count": count}, worker_id=f"w{i}", batch=5) for i in range(4)]
    threads = [threading.Thread(target=w.drain) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(counts) == list(range(120))
    assert set(counts.values()) == {1}


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_backoff_grows_is_capped_and_jittered_within_bounds(attempts: int, seed: int) -> None:
    import random

    delay = backoff_delay(attempts, rng=random.Random(seed))
    nominal = min(3600.0, 2.0 * 2 ** min(attempts - 1, 62))
    assert nominal * 0.5 <= delay.total_seconds() <= nominal
    assert delay <= timedelta(hours=1)


def test_dead_jobs_are_listed_and_retried_over_http(server: object) -> None:
    from tests.conftest import LiveServer

    assert isinstance(server, LiveServer)
    env = ensure_environment(server.db, "development").pk
    with server.db.transaction() as s:
        pk = jobs.enqueue(s, env, "unknown-kind", {}).pk
    jobs.Worker(server.db, handlers={}).run_once()
    with server.http() as api:
        dead = api.get("/api/v1/jobs", params={"status": "DEAD"}).json()
        assert [(j["id"], j["kind"], j["status"]) for j in dead["data"]] == [(str(pk), "unknown-kind", "DEAD")]
        assert "no handler" in dead["data"][0]["lastError"]
        retried = api.post(f"/api/v1/jobs/{pk}/retry")
        assert retried.status_code == 200 and retried.json()["data"]["status"] == "PENDING"
        again = api.post(f"/api/v1/jobs/{pk}/retry")
        assert again.status_code == 409
        assert api.post("/api/v1/jobs/not-a-number/retry").status_code == 404
        other = server.key("production")
        with server.http(other) as foreign:
            assert foreign.get("/api/v1/jobs").json()["data"] == []
            assert foreign.post(f"/api/v1/jobs/{pk}/retry").status_code == 404


def test_a_fresh_worker_process_knows_every_lifecycle_handler() -> None:
    import subprocess
    import sys

    code = (
        "from entitle.wiring import install; install(); "
        "from entitle.jobs.service import registered_handlers; print(' '.join(sorted(registered_handlers())))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    kinds = set(out.stdout.split())
    assert {"subscription.start", "subscription.trial_end", "subscription.end", "subscription.future_update"} <= kinds
    assert "package.migrate_subscriptions" in kinds


def test_an_idle_worker_takes_no_write_lock_and_still_claims_what_falls_due(
    db: Database, env_id: int, test_clock: TestClock
) -> None:
    from tests.support.statements import statements

    with db.transaction() as s:
        later = jobs.enqueue(s, env_id, "noop", {}, run_at=test_clock.now() + timedelta(minutes=1))
    ran: list[int] = []
    worker = jobs.Worker(db, handlers={"noop": lambda _db, ctx: ran.append(ctx.pk)})
    with statements(db) as sent:
        assert worker.run_once() == 0
    assert sent
    if db.dialect == "sqlite":
        # SQLite has one write lock for everything, which an idle round must not take.
        takes_the_lock = ("BEGIN IMMEDIATE", "INSERT", "UPDATE", "DELETE", "SAVEPOINT")
        assert not [q for q in sent if q.lstrip().upper().startswith(takes_the_lock)], sent
    test_clock.advance(timedelta(minutes=1))
    assert worker.run_once() == 1
    assert ran == [later.pk]
    assert _status(db, later.pk)[0] == SUCCEEDED
