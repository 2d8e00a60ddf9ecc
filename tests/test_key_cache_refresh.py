"""The hot routes' server-key cache (`entitle.environments.key_cache`) under concurrent requests: one read
of the key in flight at a time, refreshed before it expires so that no request waits for it, and a key
revoked by another process refused once the refresh has read it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from entitle.app import create_app
from entitle.clock import utcnow
from entitle.config import Settings
from entitle.db import Database
from entitle.environments import service as environments
from entitle.environments.key_cache import TTL, KeyCache
from entitle.environments.models import ApiKey, KeyKind
from entitle.http import deps

CHECK = "/api/v1/customers/nobody/entitlements/check?featureId=f&requestedUsage=1"


@pytest.fixture
def app(db: Database, tmp_path: Path) -> FastAPI:
    return create_app(
        Settings(database_url=db.url, data_dir=tmp_path, console_base_url="http://test", embedded_worker=False), db=db
    )


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every read of a key by the hot routes."""
    seen: list[str] = []
    real = environments.authenticate

    def counted(db: Database, raw_key: str | None) -> Any:
        seen.append(raw_key or "")
        return real(db, raw_key)

    monkeypatch.setattr(deps, "authenticate", counted)
    yield seen


def _age(app: FastAPI, key: str, seconds: float) -> None:
    """Make the remembered key `seconds` old (as if read then)."""
    cache: KeyCache = app.state.key_cache
    principal = cache.get(key)
    assert principal is not None
    cache.keep(key, principal, time.monotonic() - seconds)


async def _checks_settled(app: FastAPI, key: str, count: int) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers={"X-API-KEY": key}) as http:
        answers = await asyncio.gather(*(http.get(CHECK) for _ in range(count)))
    # The reads those requests started in the background end before this loop does.
    await asyncio.gather(*deps._key_reads.get(app.state.key_cache, {}).values(), return_exceptions=True)
    return [a.status_code for a in answers]


def _checks(app: FastAPI, key: str, count: int) -> list[int]:
    return asyncio.run(_checks_settled(app, key, count))


def test_an_expired_key_is_read_once_for_all_the_requests_waiting_on_it(
    app: FastAPI, db: Database, reads: list[str]
) -> None:
    key = environments.create_key(db, "development", KeyKind.SERVER)
    assert (_checks(app, key, 1)) == [200]
    assert len(reads) == 1
    _age(app, key, TTL + 1)

    assert (_checks(app, key, 24)) == [200] * 24
    assert len(reads) == 2  # not one per request of the expiry instant


def test_a_key_past_half_its_life_is_refreshed_while_requests_are_answered_from_memory(
    app: FastAPI, db: Database, reads: list[str]
) -> None:
    key = environments.create_key(db, "development", KeyKind.SERVER)
    assert (_checks(app, key, 1)) == [200]
    _age(app, key, TTL * 0.75)

    assert (_checks(app, key, 8)) == [200] * 8
    assert len(reads) == 2  # one background read for the eight
    assert not app.state.key_cache.needs_refresh(key)  # the refresh was kept: the key is young again


def test_a_key_revoked_elsewhere_is_refused_once_a_refresh_has_read_it(
    app: FastAPI, db: Database, reads: list[str]
) -> None:
    key = environments.create_key(db, "development", KeyKind.SERVER)
    assert (_checks(app, key, 1)) == [200]
    with db.transaction() as s:  # another process's revocation: this process's caches hear nothing
        s.execute(update(ApiKey).values(revoked_at=utcnow()))
    _age(app, key, TTL * 0.75)

    # Still within the second the cache may answer for; the refresh those requests started finds it revoked.
    assert (_checks(app, key, 4)) == [200] * 4
    assert (_checks(app, key, 1)) == [401]
