"""The `entitle worker` and `entitle jobs` commands against the test's database (a file SQLite database and
PostgreSQL), the way an operator runs them. Each test's first worker run, and the first `jobs list`, are real
subprocesses (`python -m entitle`), proving the console script; the other commands run in this process
(tests/support/cli.py), which answers the same without paying the interpreter and the app's import again.

The jobs are outbound webhook deliveries to a receiver on 127.0.0.1 (tests/test_webhooks.py's): the
worker delivers there only with `ENTITLE_WEBHOOKS_ALLOW_PRIVATE=true`, so a worker started without it
makes a dead letter (the delivery is refused for good), and one started with it succeeds — an operator
fixing a setting and retrying the dead job.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from subprocess import CompletedProcess, run
from typing import Any

import httpx
from sqlalchemy import select
from standardwebhooks import Webhook

from entitle.clock import utcnow
from entitle.jobs.models import DEAD, PENDING, SUCCEEDED, Job
from entitle.jobs.service import enqueue
from entitle.webhooks.models import JOB_DELIVER
from tests import test_webhooks
from tests.conftest import LiveServer
from tests.support.cli import Ran, invoke
from tests.test_webhooks import create_hook

# tests/test_webhooks.py's fixtures: the receiver on 127.0.0.1, and the webhook settings (autouse).
receivers = test_webhooks.receivers
webhook_env = test_webhooks.webhook_env


def entitle(
    *args: str, database_url: str, data_dir: Path, allow_private: bool = True, as_process: bool = False
) -> Ran | CompletedProcess[str]:
    """`entitle ARGS...` with this process's environment, which carries the webhook secrets' key (webhook_env)."""
    env = {
        "ENTITLE_DATABASE_URL": database_url,
        "ENTITLE_DATA_DIR": str(data_dir),
        "ENTITLE_WEBHOOKS_ALLOW_PRIVATE": "true" if allow_private else "false",
    }
    if not as_process:
        return invoke(*args, data_dir=data_dir, env=dict(env), inherit=True)
    return run(
        [sys.executable, "-m", "entitle", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def jobs(server: LiveServer) -> list[Job]:
    with server.db.read() as s:
        return list(s.scalars(select(Job).order_by(Job.pk)))


def test_worker_once_runs_the_due_jobs_and_leaves_later_ones(
    server: LiveServer,
    api: httpx.Client,
    receivers: Any,
    database_url: str,
    tmp_path: Path,
) -> None:
    receiver = receivers()
    hook = create_hook(api, receiver.url, ["customer.created"])
    assert api.post("/api/v1/customers", json={"id": "acme", "name": "Acme"}).status_code == 200
    (due,) = jobs(server)
    with server.db.transaction() as s:  # a delivery due tomorrow
        later = enqueue(s, due.environment_id, JOB_DELIVER, dict(due.payload), run_at=utcnow() + timedelta(days=1)).pk
    assert receiver.requests == []

    result = entitle("worker", "--once", database_url=database_url, data_dir=tmp_path, as_process=True)
    assert result.returncode == 0, result.stderr
    assert "ran 1 job(s)" in result.stderr

    (request,) = receiver.requests
    event = Webhook(hook["secret"]).verify(request.body, request.headers)
    assert (event["type"], event["data"]["customerId"]) == ("customer.created", "acme")
    by_pk = {j.pk: j for j in jobs(server)}
    assert (by_pk[due.pk].status, by_pk[due.pk].attempts) == (SUCCEEDED, 1)
    assert (by_pk[later].status, by_pk[later].attempts) == (PENDING, 0)

    again = entitle("worker", "--once", database_url=database_url, data_dir=tmp_path)
    assert again.returncode == 0 and "ran 0 job(s)" in again.stderr
    assert len(receiver.requests) == 1


def test_a_dead_job_is_listed_with_its_error_and_a_retry_runs_it_again(
    server: LiveServer,
    api: httpx.Client,
    receivers: Any,
    database_url: str,
    tmp_path: Path,
) -> None:
    receiver = receivers()
    hook = create_hook(api, receiver.url, ["customer.created"])
    assert api.post("/api/v1/customers", json={"id": "acme", "name": "Acme"}).status_code == 200
    (job,) = jobs(server)

    # A worker without the local-development setting refuses the loopback receiver for good: DEAD at once.
    dead = entitle(
        "worker", "--once", database_url=database_url, data_dir=tmp_path, allow_private=False, as_process=True
    )
    assert dead.returncode == 0, dead.stderr
    assert receiver.requests == []
    (row,) = jobs(server)
    assert (row.status, row.attempts) == (DEAD, 1) and row.last_error

    listed = entitle("jobs", "list", database_url=database_url, data_dir=tmp_path, as_process=True)
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    pk, status, kind, attempts, error = line.split("\t")
    assert (int(pk), status, kind, attempts) == (job.pk, DEAD, JOB_DELIVER, "attempts=1")
    assert error == row.last_error.splitlines()[0] and "loopback" in error
    pending = entitle("jobs", "list", "--status", "PENDING,RUNNING", database_url=database_url, data_dir=tmp_path)
    assert pending.returncode == 0 and pending.stdout == ""
    # A status that does not exist is refused, not answered with an empty list (as if no job failed).
    for wrong in ("FAILED", "PENDING,DONE"):
        refused = entitle("jobs", "list", "--status", wrong, database_url=database_url, data_dir=tmp_path)
        assert refused.returncode == 2 and refused.stdout == "", (refused.stdout, refused.stderr)
        assert refused.stderr.startswith("Error: unknown status ") and "DEAD" in refused.stderr

    retried = entitle("jobs", "retry", str(job.pk), database_url=database_url, data_dir=tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"job {job.pk} is PENDING again"
    (row,) = jobs(server)
    assert (row.status, row.attempts) == (PENDING, 0)  # a fresh set of attempts

    fixed = entitle("worker", "--once", database_url=database_url, data_dir=tmp_path, allow_private=True)
    assert fixed.returncode == 0, fixed.stderr
    (request,) = receiver.requests
    assert Webhook(hook["secret"]).verify(request.body, request.headers)["type"] == "customer.created"
    (row,) = jobs(server)
    assert (row.status, row.attempts) == (SUCCEEDED, 1)
    listed = entitle("jobs", "list", database_url=database_url, data_dir=tmp_path)
    assert listed.returncode == 0 and listed.stdout == ""  # no dead letters left

    # Retrying a job that is not dead, or one that does not exist, is a usage error (exit 2), not a crash.
    for target, words in ((str(job.pk), "only dead jobs"), ("999999", "not found")):
        refused = entitle("jobs", "retry", target, database_url=database_url, data_dir=tmp_path)
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert refused.stderr.startswith("Error: ") and words in refused.stderr.lower()
        assert "Traceback" not in refused.stderr
