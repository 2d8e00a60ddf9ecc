"""Cursor pagination as the official client speaks it: `limit`, `after`, `before` in; `next`, `prev` out.

Cursors are opaque to callers; inside they are the row's `pk`, which only grows, so a page
is stable while rows are added.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from entitle.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        version, _, value = text.partition(":")
        if version != "v1":
            raise ValueError(version)
        pk = int(value)
        if pk < 0 or pk > 2**62:
            raise ValueError(value)
        return pk
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise InvalidArgument(f"invalid pagination cursor {cursor!r}") from exc


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: str | None = None
    before: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}")
        if self.after and self.before:
            raise InvalidArgument("pass either 'after' or 'before', not both")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next: str | None
    prev: str | None


@dataclass(frozen=True)
class CreatedAtRange:
    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None

    def apply(self, stmt: Select[Any], column: InstrumentedAttribute[datetime]) -> Select[Any]:
        if self.gt is not None:
            stmt = stmt.where(column > self.gt)
        if self.gte is not None:
            stmt = stmt.where(column >= self.gte)
        if self.lt is not None:
            stmt = stmt.where(column < self.lt)
        if self.lte is not None:
            stmt = stmt.where(column <= self.lte)
        return stmt


def paginate(session: Session, stmt: Select[Any], pk: InstrumentedAttribute[int], page: PageRequest) -> Page[Any]:
    """Run `stmt` (a filtered select of one entity) one page at a time, ordered by `pk`."""
    if page.before:
        boundary = decode_cursor(page.before)
        rows = list(session.scalars(stmt.where(pk < boundary).order_by(pk.desc()).limit(page.limit + 1)))
        has_more = len(rows) > page.limit
        items = list(reversed(rows[: page.limit]))
        return Page(
            items=items,
            next=encode_cursor(_pk(items[-1])) if items else None,
            prev=encode_cursor(_pk(items[0])) if items and has_more else None,
        )
    if page.after:
        stmt = stmt.where(pk > decode_cursor(page.after))
    rows = list(session.scalars(stmt.order_by(pk.asc()).limit(page.limit + 1)))
    has_more = len(rows) > page.limit
    items = rows[: page.limit]
    return Page(
        items=items,
        next=encode_cursor(_pk(items[-1])) if items and has_more else None,
        prev=encode_cursor(_pk(items[0])) if items and page.after else None,
    )


def _pk(row: Any) -> int:
    return int(row.pk)
