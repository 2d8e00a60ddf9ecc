"""Request dependencies shared by every domain's routes: database, caller, paging, filters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Query, Request

from entitle.clock import as_utc
from entitle.db import Database
from entitle.db.pagination import DEFAULT_LIMIT, CreatedAtRange, PageRequest
from entitle.environments.service import Principal, authenticate
from entitle.errors import InvalidArgument

E = TypeVar("E", bound=str)


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


DB = Annotated[Database, Depends(get_db)]


def any_key(db: DB, x_api_key: Annotated[str | None, Header(alias="X-API-KEY")] = None) -> Principal:
    """Server or client key: for what a browser may read (entitlements, paywall)."""
    return authenticate(db, x_api_key)


def server_key(principal: Annotated[Principal, Depends(any_key)]) -> Principal:
    principal.require_server()
    return principal


ServerKey = Annotated[Principal, Depends(server_key)]
AnyKey = Annotated[Principal, Depends(any_key)]


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
