"""Sealed job payloads (issue 13): what a job carries but Entitle must not keep in clear (billing information
on its way to the provider) is stored encrypted, opened only by the handler, erased when the job succeeds or
is discarded, and kept by a DEAD job so a retry still delivers it. `entitle jobs discard` and
`POST /api/v1/jobs/{id}/discard` give up on a pending or dead job. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.db import Database
from entitle.jobs.models import DEAD, DISCARDED, SUCCEEDED, Job
from entitle.jobs.service import JobContext, PermanentFailure, Worker, discard_job, enqueue, retry_job, seal
from entitle.secrets import ENV_VAR
from tests.conftest import LiveServer
from tests.support.cli import invoke

ADDRESS = {"line1": "9 Sealed Street", "city": "Cryptville-5521"}


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(ENV_VAR, key)
    return key


def _row(db: Database, pk: int) -> Job:
    with db.read() as s:
        job = s.get(Job, pk)
        assert job is not None
        return job


def _enqueue(db: Database, env_id: int, sealed: dict[str, Any] | None = None) -> int:
    with db.transaction() as s:
        return enqueue(s, env_id, "test.deliver", {"plain": 1}, sealed=sealed).pk


@pytest.fixture
def env_id(server: LiveServer) -> int:
    from entitle.environments.models import Environment

    with server.db.read() as s:
        env = s.scalars(select(Environment)).first()
        assert env is not None
        return env.pk


def test_the_handler_opens_the_sealed_payload_and_success_erases_it(server: LiveServer, env_id: int) -> None:
    db = server.db
    pk = _enqueue(db, env_id, {"address": ADDRESS})
    stored = _row(db, pk)
    assert stored.sealed is not None and "Cryptville" not in stored.sealed and "Cryptville" not in str(stored.payload)
    seen: list[dict[str, Any] | None] = []

    def handler(_: Database, ctx: JobContext) -> None:
        seen.append(ctx.unseal())

    assert Worker(db, handlers={"test.deliver": handler}).drain() == 1
    assert seen == [{"address": ADDRESS}]
    done = _row(db, pk)
    assert (done.status, done.sealed, done.payload) == (SUCCEEDED, None, {"plain": 1})


def test_a_dead_job_keeps_it_for_a_retry_and_discarding_erases_it(server: LiveServer, env_id: int) -> None:
    db = server.db
    first, second = _enqueue(db, env_id, {"address": ADDRESS}), _enqueue(db, env_id, {"address": ADDRESS})
    outcomes = iter([PermanentFailure("provider down"), PermanentFailure("provider down"), None])
    seen: list[dict[str, Any] | None] = []

    def handler(_: Database, ctx: JobContext) -> None:
        seen.append(ctx.unseal())
        failure = next(outcomes)
        if failure is not None:
            raise failure

    worker = Worker(db, handlers={"test.deliver": handler})
    worker.drain()
    assert [_row(db, pk).status for pk in (first, second)] == [DEAD, DEAD]
    assert all(_row(db, pk).sealed is not None for pk in (first, second))
    retry_job(db, None, first)
    discarded = discard_job(db, None, second)
    assert (discarded.status, discarded.sealed) == (DISCARDED, None)
    worker.drain()
    assert seen == [{"address": ADDRESS}] * 3  # the retry opened the same payload
    assert (_row(db, first).status, _row(db, first).sealed) == (SUCCEEDED, None)
    assert _row(db, second).status == DISCARDED  # never run again
    # Only PENDING and DEAD jobs can be discarded.
    for pk in (first, second):
        with pytest.raises(Exception, match="only PENDING and DEAD"):
            discard_job(db, None, pk)


def test_discarding_a_pending_job_over_the_api(server: LiveServer, api: httpx.Client, env_id: int) -> None:
    pk = _enqueue(server.db, env_id, {"address": ADDRESS})
    (listed,) = api.get("/api/v1/jobs", params={"status": "PENDING"}).json()["data"]
    assert listed["sealedPayload"] is True and "Cryptville" not in str(listed)
    resp = api.post(f"/api/v1/jobs/{pk}/discard")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["data"]["status"], resp.json()["data"]["sealedPayload"]) == (DISCARDED, False)
    assert _row(server.db, pk).sealed is None
    again = api.post(f"/api/v1/jobs/{pk}/discard")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "FAILED_PRECONDITION")
    assert api.post("/api/v1/jobs/٣/discard").status_code == 404
    assert api.get("/api/v1/jobs", params={"status": "DISCARDED"}).json()["data"][0]["id"] == str(pk)


def test_entitle_jobs_discard_on_the_command_line(
    server: LiveServer, env_id: int, database_url: str, tmp_path: Path, secret_key: str
) -> None:
    pk = _enqueue(server.db, env_id, {"address": ADDRESS})
    # In this process (tests/support/cli.py): tests/test_cli_jobs.py runs the `jobs` commands' console script.
    env: dict[str, str | None] = {ENV_VAR: secret_key}
    run = invoke("jobs", "discard", str(pk), data_dir=tmp_path, database_url=database_url, env=env, inherit=True)
    assert run.returncode == 0, run.stderr
    assert f"job {pk} is {DISCARDED}" in run.stdout
    assert (_row(server.db, pk).status, _row(server.db, pk).sealed) == (DISCARDED, None)


VALUES = st.one_of(st.text(max_size=50), st.integers(), st.decimals(allow_nan=False, allow_infinity=False, places=4))


# The key fixture is the same for every example: the function-scoped fixture is safe to share.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(max_size=20), VALUES, max_size=5))
def test_a_sealed_payload_round_trips_exactly(payload: dict[str, Any]) -> None:
    """JSON values and exact Decimals (as their text) survive sealing; nothing of them is readable sealed."""
    token = seal(payload)
    ctx = JobContext(1, 1, "k", {}, 1, token)
    expected = {k: str(v) if isinstance(v, Decimal) else v for k, v in payload.items()}
    assert ctx.unseal() == expected
    for value in expected.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in token
