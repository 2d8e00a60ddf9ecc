"""What event ingestion announces: the events a batch stored that were new (duplicates skipped), in the
transaction that stored them (the usage domain counts them there, so a check sees them at once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from entitle.db import Database
from entitle.domain_events import DomainEvent, Port


@dataclass(slots=True)
class NewEvent:
    """Not frozen: a batch makes a thousand of them, and a frozen dataclass costs seven times more to
    build (each field set through `object.__setattr__`). Nobody changes one once made."""

    customer_ref: str
    resource_ref: str | None
    event_name: str
    dimensions: dict[str, Any]
    timestamp: datetime
    # Its position in the request's `events`: a refusal names it, so a client can drop just that one.
    index: int


@dataclass(frozen=True, kw_only=True)
class EventsIngested(DomainEvent):
    """Subscribers may refuse the batch by raising an `InvalidArgument` whose details name the items
    (`events.<index>.<field>`): the transaction rolls back and nothing of the batch is stored."""

    events: tuple[NewEvent, ...]
    # What `prepare` answered for the batch before its transaction (None: nothing prepared).
    prepared: object = None


class Prepare(Protocol):
    """Work on a batch that needs no write transaction (on SQLite that transaction holds the database's
    write lock): the usage domain measures the events with the meters, and resolves their owners' grants,
    as they are before it (at the batch's instant, `now`), and checks in the transaction that they did not
    change (`entitle.usage.counting.prepare`, installed by `entitle.wiring`). `session`: a read session to
    use (the caller's, which read what it needed in the same snapshot); None: it opens its own."""

    def __call__(
        self, db: Database, env_id: int, events: Sequence[NewEvent], now: datetime, /, session: Session | None = None
    ) -> object: ...


def _nothing(
    _db: Database, _env_id: int, _events: Sequence[NewEvent], _now: datetime, session: Session | None = None
) -> object:
    return None


prepare: Port[Prepare] = Port("events.prepare", default=_nothing)
