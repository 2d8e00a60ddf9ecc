"""Request dependencies shared by every domain's routes: database, caller, paging, filters."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from entitle import actors
from entitle.clock import as_utc
from entitle.db import Database
from entitle.db.pagination import DEFAULT_LIMIT, CreatedAtRange, PageRequest
from entitle.environments.access import check_customer_access
from entitle.environments.key_cache import KeyCache
from entitle.environments.rules import ENVIRONMENT_HEADER, TOKEN_HEADER, check_environment_header
from entitle.environments.service import MISSING_KEY, KeyRead, Principal, authenticate
from entitle.errors import InvalidArgument, Unauthenticated
from entitle.secrets import SecretBox, secret_box

E = TypeVar("E", bound=str)
# Where `server_key_read` leaves its key on the request's state, for the validation error's handler.
KEY_READ = "key_read"


# The dependencies every route declares are coroutines: FastAPI runs a plain function in a worker thread,
# one hop (and two thread wake-ups) per dependency per request. Only the key's read needs a thread.
async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


DB = Annotated[Database, Depends(get_db)]


async def any_key(
    db: DB,
    request: Request,
    x_api_key: Annotated[str | None, Header(alias="X-API-KEY")] = None,
    x_environment_id: Annotated[str | None, Header(alias=ENVIRONMENT_HEADER)] = None,
) -> Principal:
    """Server or client key: for what a browser may read (entitlements, paywall)."""
    principal = await run_in_threadpool(authenticate, db, x_api_key)
    check_environment_header(x_environment_id, principal.environment_name, principal.environment_id)
    # The CORS middleware answers a browser for the key's environment, also when a later check refuses.
    request.state.principal = principal
    _identify(principal)
    return principal


def _identify(principal: Principal) -> None:
    """Name the request's API key as the actor of what it changes (the audit log)."""
    actor = actors.current()
    if actor is not None:
        actor.identify("api_key", principal.key_prefix or f"key {principal.key_id}", principal.environment_id)


async def server_key(principal: Annotated[Principal, Depends(any_key)]) -> Principal:
    principal.require_server()
    return principal


async def server_key_read(
    request: Request,
    x_api_key: Annotated[str | None, Header(alias="X-API-KEY")] = None,
    x_environment_id: Annotated[str | None, Header(alias=ENVIRONMENT_HEADER)] = None,
) -> KeyRead:
    """`server_key` read by the use case itself, in its transaction (`KeyRead`): the request takes one
    worker-thread hop, not two. The answers stay `server_key`'s, in the same order: a body the route
    refuses is refused only once the key passed (`KEY_READ`, read by the validation error's handler)."""
    if not x_api_key:
        raise Unauthenticated(MISSING_KEY)

    def admit(principal: Principal) -> None:
        check_environment_header(x_environment_id, principal.environment_name, principal.environment_id)
        request.state.principal = principal
        _identify(principal)
        principal.require_server()

    read = KeyRead(request.app.state.db, x_api_key, admit)
    setattr(request.state, KEY_READ, read)
    return read


ServerKey = Annotated[Principal, Depends(server_key)]
ServerKeyRead = Annotated[KeyRead, Depends(server_key_read)]
AnyKey = Annotated[Principal, Depends(any_key)]
CustomerToken = Annotated[str | None, Header(alias=TOKEN_HEADER, include_in_schema=True)]


def secret_box_of(request: Request) -> SecretBox:
    """One box per app: reading the key (file or environment) once, not on every request."""
    box: SecretBox | None = getattr(request.app.state, "secret_box", None)
    if box is None:
        box = request.app.state.secret_box = secret_box(request.app.state.settings.data_dir)
    return box


def customer_key(
    request: Request, principal: AnyKey, customer_id: str, x_customer_token: CustomerToken = None
) -> Principal:
    """Any key, for routes about the customer in the path: a client key also needs that customer's token."""
    check_customer_access(principal, customer_id, x_customer_token, secret_box_of(request))
    return principal


def customer_query_key(
    request: Request,
    principal: AnyKey,
    customer_id: Annotated[str | None, Query(alias="customerId", min_length=1, max_length=255)] = None,
    x_customer_token: CustomerToken = None,
) -> Principal:
    """Any key, for routes that name a customer only optionally (`customerId`): a client key naming one
    needs that customer's token; naming none, it needs none."""
    if customer_id is not None:
        check_customer_access(principal, customer_id, x_customer_token, secret_box_of(request))
    return principal


def key_cache_of(request: Request) -> KeyCache:
    cache: KeyCache | None = getattr(request.app.state, "key_cache", None)
    if cache is None:
        cache = request.app.state.key_cache = KeyCache()
    return cache


async def hot_customer_key(
    request: Request,
    customer_id: str,
    x_api_key: Annotated[str | None, Header(alias="X-API-KEY")] = None,
    x_customer_token: CustomerToken = None,
    x_environment_id: Annotated[str | None, Header(alias=ENVIRONMENT_HEADER)] = None,
) -> Principal:
    """`customer_key` for the hot read routes, on the event loop: a server key read within the last
    second (`entitle.environments.key_cache`) is not read again; anything else is, in a worker thread."""
    # The remembered key read without a coroutine of its own: on a check that is a few percent of its CPU.
    principal = _remembered(request, x_api_key) or await _read_principal(request, x_api_key)
    check_environment_header(x_environment_id, principal.environment_name, principal.environment_id)
    check_customer_access(principal, customer_id, x_customer_token, secret_box_of(request))
    return principal


async def hot_server_key(
    request: Request,
    x_api_key: Annotated[str | None, Header(alias="X-API-KEY")] = None,
    x_environment_id: Annotated[str | None, Header(alias=ENVIRONMENT_HEADER)] = None,
) -> Principal:
    """`server_key` for event ingestion, on the event loop (its batch then runs in one worker thread,
    rather than the key's read taking a hop of its own): a server key is remembered as for the hot read
    routes, so one revoked by another process may still report events within the cache's `TTL`."""
    principal = _remembered(request, x_api_key) or await _read_principal(request, x_api_key)
    check_environment_header(x_environment_id, principal.environment_name, principal.environment_id)
    _identify(principal)
    principal.require_server()
    return principal


def _remembered(request: Request, x_api_key: str | None) -> Principal | None:
    """The server key's principal as remembered (`entitle.environments.key_cache`), set as the request's
    principal (the CORS middleware answers for its environment); None: it must be read."""
    if not x_api_key:
        return None
    cache = key_cache_of(request)
    principal = cache.get(x_api_key)
    if principal is None:
        return None
    if cache.needs_refresh(x_api_key):
        _read_key(request, cache, x_api_key)
    request.state.principal = principal
    return principal


async def _read_principal(request: Request, x_api_key: str | None) -> Principal:
    """`_remembered` for a key not remembered (or expired): read in a worker thread, or awaited from the
    one read in flight of a key remembered before."""
    cache = key_cache_of(request)
    if x_api_key and cache.remembers(x_api_key):
        principal = await asyncio.shield(_read_key(request, cache, x_api_key))
    else:
        read_at = time.monotonic()
        principal = await run_in_threadpool(authenticate, request.app.state.db, x_api_key)
        if x_api_key:
            cache.keep(x_api_key, principal, read_at)
    request.state.principal = principal
    return principal


# The one read in flight of each remembered server key, per key cache (tasks of the app's event loop).
_key_reads: weakref.WeakKeyDictionary[KeyCache, dict[str, asyncio.Task[Principal]]] = weakref.WeakKeyDictionary()


def _read_key(request: Request, cache: KeyCache, raw_key: str) -> asyncio.Task[Principal]:
    """The key's read in flight, or a new one: concurrent requests share it (its answer is at most as old
    as the cache allows, since it began after the entry they found)."""
    reads = _key_reads.setdefault(cache, {})
    task = reads.get(raw_key)
    if task is None:
        task = asyncio.ensure_future(_reread(request.app.state.db, cache, raw_key))
        reads[raw_key] = task
        task.add_done_callback(lambda done: _read_done(reads, raw_key, done))
    return task


async def _reread(db: Database, cache: KeyCache, raw_key: str) -> Principal:
    read_at = time.monotonic()
    try:
        principal = await run_in_threadpool(authenticate, db, raw_key)
    except Exception:
        cache.forget(raw_key)  # revoked (or unreadable): the next request reads it and answers for itself
        raise
    cache.keep(raw_key, principal, read_at)
    return principal


def _read_done(reads: dict[str, asyncio.Task[Principal]], raw_key: str, done: asyncio.Task[Principal]) -> None:
    if reads.get(raw_key) is done:
        del reads[raw_key]
    if not done.cancelled():
        done.exception()  # a background refresh nobody awaits: its error is handled by `_reread`


async def key_still_valid(request: Request) -> bool:
    """For a response that outlives its request's authentication (the push stream): whether the request's
    key still authenticates, read as the hot routes read it (at most `key_cache.TTL` old across processes,
    a revocation in this process at once). A revoked key's stream must end, not keep handing its holder
    every customer's changes."""
    raw_key = request.headers.get("X-API-KEY")
    try:
        _remembered(request, raw_key) or await _read_principal(request, raw_key)
    except Unauthenticated:
        return False
    return True


async def hot_db(request: Request) -> Database:
    """`get_db` without the worker-thread hop FastAPI gives a plain function."""
    db: Database = request.app.state.db
    return db


# A client key (public) may use these only with a customer token for the customer they are about.
CustomerKey = Annotated[Principal, Depends(customer_key)]
HotCustomerKey = Annotated[Principal, Depends(hot_customer_key)]
HotDB = Annotated[Database, Depends(hot_db)]
HotServerKey = Annotated[Principal, Depends(hot_server_key)]
CustomerQueryKey = Annotated[Principal, Depends(customer_query_key)]


def page_request(
    limit: Annotated[int, Query(ge=1, le=100)] = DEFAULT_LIMIT,
    after: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> PageRequest:
    return PageRequest(limit=limit, after=after, before=before)


Paging = Annotated[PageRequest, Depends(page_request)]


def created_at_range(
    gt: Annotated[datetime | None, Query(alias="createdAt[gt]")] = None,
    gte: Annotated[datetime | None, Query(alias="createdAt[gte]")] = None,
    lt: Annotated[datetime | None, Query(alias="createdAt[lt]")] = None,
    lte: Annotated[datetime | None, Query(alias="createdAt[lte]")] = None,
) -> CreatedAtRange:
    def norm(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    return CreatedAtRange(gt=norm(gt), gte=norm(gte), lt=norm(lt), lte=norm(lte))


CreatedAt = Annotated[CreatedAtRange, Depends(created_at_range)]


def comma_list(raw: str | None, allowed: Iterable[str] | None = None, *, name: str) -> list[str] | None:
    """The client sends arrays as one comma-joined parameter: `status=ACTIVE,IN_TRIAL`."""
    if raw is None or raw == "":
        return None
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if allowed is not None:
        allowed_set = set(allowed)
        bad = [v for v in values if v not in allowed_set]
        if bad:
            raise InvalidArgument(
                f"{name}: unknown value(s) {', '.join(bad)}; expected {', '.join(sorted(allowed_set))}"
            )
    return values
