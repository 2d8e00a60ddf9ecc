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


@dataclass(frozen=True, kw_only=True)
class EventsIngested(DomainEvent):
    events: tuple[NewEvent, ...]
