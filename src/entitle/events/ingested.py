"""What event ingestion announces: the events a batch stored that were new (duplicates skipped), in the
transaction that stored them (the usage domain counts them there, so a check sees them at once)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from entitle.domain_events import DomainEvent


@dataclass(frozen=True)
class NewEvent:
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
