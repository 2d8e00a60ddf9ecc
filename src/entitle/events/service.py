"""Raw event ingestion: durable and deduplicated before the response is sent."""

from __future__ import annotations

from typing import Any

from entitle.clock import as_utc, utcnow
from entitle.db import Database
from entitle.domain_events import publish
from entitle.errors import InvalidArgument
from entitle.events import store
from entitle.events.ingested import EventsIngested, NewEvent
from entitle.events.schemas import EventIn


def report_events(db: Database, env_id: int, events: list[EventIn]) -> int:
    """Store a batch in one transaction; returns how many were new (the rest were duplicates)."""
    now = utcnow()
    keys = [e.idempotency_key for e in events]
    if len(set(keys)) != len(keys):
        raise InvalidArgument("idempotencyKey must be unique within one batch")
    rows: list[dict[str, Any]] = [
        {
            "environment_id": env_id,
            "customer_ref": e.customer_id,
            "resource_ref": e.resource_id,
            "event_name": e.event_name,
            "idempotency_key": e.idempotency_key,
            "dimensions": dict(e.dimensions or {}),
            "timestamp": as_utc(e.timestamp) if e.timestamp else now,
            "created_at": now,
            "updated_at": now,
        }
        for e in events
    ]
    with db.transaction() as s:
        new = store.insert_new(s, rows)
        if new:  # counted as usage in this transaction (the usage domain reacts)
            publish(s, EventsIngested(env_id=env_id, events=tuple(NewEvent(*row) for row in new)))
        return len(new)
