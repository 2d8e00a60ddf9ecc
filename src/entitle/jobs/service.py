"""The durable job queue: transactional outbox for side effects and scheduler for timed events.

`enqueue` writes a job inside the caller's transaction. A `Worker` claims due jobs in a short
transaction (marking them RUNNING under a lease), runs each handler outside it, then records the
outcome. Handlers must be idempotent: a worker that dies after the side effect but before recording
success leaves the job to be re-run when its lease expires — which is why every external write a
handler makes carries `JobContext.idempotency_key`, stable across retries of the same job.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from entitle.clock import utcnow
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest
from entitle.errors import FailedPrecondition, NotFound
from entitle.jobs import store
from entitle.jobs.models import DEAD, DISCARDED, PENDING, RUNNING, SUCCEEDED, Job
from entitle.jobs.rules import backoff_delay
from entitle.secrets import process_box

log = logging.getLogger("entitle.jobs")


@dataclass(frozen=True)
class JobContext:
    pk: int
    environment_id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    # The job's sealed payload, still encrypted: `unseal()` opens it in the handler that needs it.
    sealed_token: str | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable for every retry of this job, so an external write happens at most once."""
        return f"entitle-job-{self.pk}"

    def unseal(self) -> dict[str, Any] | None:
        """The sealed payload given to `enqueue(sealed=...)`, decrypted (None when there was none)."""
        if self.sealed_token is None:
            return None
        opened = json.loads(process_box().decrypt(self.sealed_token))
        assert isinstance(opened, dict)
        return opened


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)  # amounts stay exact: never through float
    raise TypeError(f"a sealed payload holds JSON values and Decimals, not {type(value).__name__}")


def seal(payload: dict[str, Any]) -> str:
    """Encrypt a sealed payload as `Job.sealed` holds it (migrations enqueue with it too)."""
    return process_box().encrypt(json.dumps(payload, sort_keys=True, default=_exact))


class PermanentFailure(Exception):
    """Raised by a handler whose job can never succeed as it stands: the job is DEAD at once, not retried."""


Handler = Callable[[Database, JobContext], None]
_HANDLERS: dict[str, Handler] = {}
# Adapters name the errors of their own libraries that no retry can fix (a provider's "invalid request",
# "not found", "authentication"): the queue, below every adapter, cannot know those types itself.
_PERMANENT_ERRORS: list[Callable[[BaseException], bool]] = []


def add_permanent_error_classifier(is_permanent: Callable[[BaseException], bool]) -> None:
    """A job failing with an error `is_permanent` accepts is DEAD at once, with its message, not retried."""
    if is_permanent not in _PERMANENT_ERRORS:
        _PERMANENT_ERRORS.append(is_permanent)


def is_permanent_error(exc: BaseException) -> bool:
    return isinstance(exc, PermanentFailure) or any(check(exc) for check in _PERMANENT_ERRORS)


def register(kind: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        _HANDLERS[kind] = fn
        return fn

    return wrap


def registered_handlers() -> dict[str, Handler]:
    """Every handler the application defines (`entitle.wiring.install` imports the modules that register
    them; the job queue, below every domain, does not know them)."""
    if not _HANDLERS:
        raise RuntimeError("no job handler is registered: call entitle.wiring.install() at start-up")
    return _HANDLERS


def enqueue(
    session: Session,
    env_id: int,
    kind: str,
    payload: dict[str, Any],
    *,
    run_at: datetime | None = None,
    ordering_key: str | None = None,
    dedupe_key: str | None = None,
    max_attempts: int = 12,
    sealed: dict[str, Any] | None = None,
) -> Job:
    """Add a job to the caller's transaction; with a dedupe key already used, return that job instead.

    `sealed`: what the handler needs but the database must not hold in clear (it reads it with
    `JobContext.unseal()`); encrypted at rest and erased when the job succeeds or is discarded."""
    if dedupe_key is not None:
        existing = store.by_dedupe_key(session, env_id, dedupe_key)
        if existing is not None:
            return existing
    job = Job(
        environment_id=env_id,
        kind=kind,
        payload=payload,
        run_at=run_at or utcnow(),
        ordering_key=ordering_key,
        dedupe_key=dedupe_key,
        max_attempts=max_attempts,
        sealed=seal(sealed) if sealed is not None else None,
    )
    session.add(job)
    session.flush()
    return job


@dataclass(frozen=True)
class Enqueued:
    """One job of `enqueue_many`: always with a dedupe key."""

    kind: str
    payload: dict[str, Any]
    run_at: datetime
    dedupe_key: str


def enqueue_many(session: Session, env_id: int, jobs: list[Enqueued]) -> None:
    """`enqueue` of many jobs at once (one read of the dedupe keys already used, one insert): a job whose key
    is used, by a stored job or an earlier one of the list, is not added."""
    if not jobs:
        return
    keys = sorted({j.dedupe_key for j in jobs})
    used = set(store.used_dedupe_keys(session, env_id, keys))
    rows: list[dict[str, Any]] = []
    now = utcnow()
    for j in jobs:
        if j.dedupe_key in used:
            continue
        used.add(j.dedupe_key)
        rows.append(
            {
                "environment_id": env_id,
                "kind": j.kind,
                "payload": j.payload,
                "run_at": j.run_at,
                "dedupe_key": j.dedupe_key,
                "created_at": now,
                "updated_at": now,
            }
        )
    if rows:
        # One executemany (the ORM's bulk INSERT: no row is read back, no object made).
        session.execute(insert(Job), rows)


class Worker:
    def __init__(
        self,
        db: Database,
        *,
        handlers: dict[str, Handler] | None = None,
        worker_id: str | None = None,
        lease: timedelta = timedelta(minutes=5),
        batch: int = 20,
    ) -> None:
        self.db = db
        self.handlers = handlers if handlers is not None else registered_handlers()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.lease = lease
        self.batch = batch

    def claim(self) -> list[JobContext]:
        now = utcnow()
        claimed: list[JobContext] = []
        if self.db.dialect == "sqlite":
            # Claiming takes SQLite's one write lock, which every request that writes waits for; an idle
            # worker asks twice a second, so it first looks without the lock whether anything is due.
            with self.db.read() as s:
                if not store.any_claimable(s, now):
                    return claimed
        with self.db.transaction() as s:
            for job in store.claimable(s, now, self.batch):
                if job.status == RUNNING and job.attempts >= job.max_attempts:
                    self._bury(job, now, job.last_error or "worker lease expired on the last attempt")
                    continue
                job.status = RUNNING
                job.attempts += 1
                job.locked_by = self.worker_id
                job.locked_until = now + self.lease
                claimed.append(
                    JobContext(job.pk, job.environment_id, job.kind, dict(job.payload), job.attempts, job.sealed)
                )
        return claimed

    def run_once(self) -> int:
        """Claim and run one batch of due jobs; returns how many were run."""
        jobs = self.claim()
        for ctx in jobs:
            self._run(ctx)
        return len(jobs)

    def drain(self, max_rounds: int = 1000) -> int:
        """Run until nothing is due (tests and the CLI's one-shot mode)."""
        total = 0
        for _ in range(max_rounds):
            ran = self.run_once()
            if ran == 0:
                break
            total += ran
        return total

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.5) -> None:
        while not stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the loop must survive a database hiccup
                log.exception("job worker round failed")
                ran = 0
            if ran == 0:
                stop.wait(idle_sleep)

    def _run(self, ctx: JobContext) -> None:
        handler = self.handlers.get(ctx.kind)
        try:
            if handler is None:
                raise LookupError(f"no handler registered for job kind '{ctx.kind}'")
            handler(self.db, ctx)
        except Exception as exc:
            self._failed(ctx, exc, permanent=handler is None or is_permanent_error(exc))
        else:
            self._succeeded(ctx)

    def _succeeded(self, ctx: JobContext) -> None:
        with self.db.transaction() as s:
            job = store.get(s, ctx.pk, for_update=True)
            if job is None or job.locked_by != self.worker_id:
                return  # our lease expired and another worker took over; it records the outcome
            job.status = SUCCEEDED
            job.sealed = None  # delivered: what it carried is the provider's now, not ours
            job.finished_at = utcnow()
            job.locked_by = None
            job.locked_until = None

    def _failed(self, ctx: JobContext, exc: Exception, *, permanent: bool) -> None:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
        log.warning("job %s (%s) attempt %s failed: %s", ctx.pk, ctx.kind, ctx.attempt, detail)
        now = utcnow()
        with self.db.transaction() as s:
            job = store.get(s, ctx.pk, for_update=True)
            if job is None or job.locked_by != self.worker_id:
                return
            job.last_error = detail
            if permanent or job.attempts >= job.max_attempts:
                self._bury(job, now, detail)
            else:
                job.status = PENDING
                job.run_at = now + backoff_delay(job.attempts)
                job.locked_by = None
                job.locked_until = None

    @staticmethod
    def _bury(job: Job, now: datetime, error: str) -> None:
        job.status = DEAD
        job.last_error = error
        job.finished_at = now
        job.locked_by = None
        job.locked_until = None


def list_jobs(db: Database, env_id: int | None, page: PageRequest, statuses: list[str] | None) -> Page[Job]:
    with db.read() as s:
        return store.list_page(s, env_id, page, statuses)


def retry_job(db: Database, env_id: int | None, pk: int) -> Job:
    """Give a dead job a fresh set of attempts, due now."""
    with db.transaction() as s:
        job = store.get(s, pk, for_update=True)
        if job is None or (env_id is not None and job.environment_id != env_id):
            raise NotFound("job", str(pk))
        if job.status != DEAD:
            raise FailedPrecondition(f"job {pk} is {job.status}; only DEAD jobs can be retried")
        job.status = PENDING
        job.attempts = 0
        job.run_at = utcnow()
        job.finished_at = None
        return job


def discard_job(db: Database, env_id: int | None, pk: int) -> Job:
    """Give up on a pending or dead job: it never runs, and its sealed payload is erased."""
    with db.transaction() as s:
        job = store.get(s, pk, for_update=True)
        if job is None or (env_id is not None and job.environment_id != env_id):
            raise NotFound("job", str(pk))
        if job.status not in (PENDING, DEAD):
            raise FailedPrecondition(f"job {pk} is {job.status}; only PENDING and DEAD jobs can be discarded")
        job.status = DISCARDED
        job.sealed = None
        job.finished_at = utcnow()
        job.locked_by = None
        job.locked_until = None
        return job
