"""Raw event ingestion: durable and deduplicated before the response is sent.

Idempotency follows Stigg: an event's idempotency key identifies it. The first event stored with a
key wins; a later one with the same key, in the same batch or another, is a duplicate and is dropped
while the rest of the batch is stored. A batch holding an invalid event (a bad field, an instant
outside the usage window, a number a meter cannot count) is refused whole with 400, each offending
event named by its index (`events.<i>.<field>`), and nothing of it is stored: a client drops those
and resends the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from entitle.clock import utcnow
from entitle.db import Database
from entitle.domain_events import publish
from entitle.events import store
from entitle.events.ingested import EventsIngested, NewEvent, prepare
from entitle.events.rules import instant_problem, refusal
from entitle.events.schemas import EventIn


@dataclass(frozen=True)
class Reported:
    new: int
    duplicates: int


def report_events(db: Database, env_id: int, events: list[EventIn]) -> Reported:
    """Store a batch in one transaction: the new events, not the duplicates."""
    now = utcnow()
    first_of_key: dict[str, int] = {}
    for index, event in enumerate(events):
        first_of_key.setdefault(event.idempotency_key, index)
    problems = [
        {"field": f"events.{index}.timestamp", "problem": problem}
        for index in sorted(first_of_key.values())
        if (timestamp := events[index].timestamp) is not None and (problem := instant_problem(timestamp, now))
    ]
    if problems:
        raise refusal(problems)
    rows: list[dict[str, Any]] = [
        {
            "environment_id": env_id,
            "customer_ref": events[index].customer_id,
            "resource_ref": events[index].resource_id,
            "event_name": events[index].event_name,
            "idempotency_key": key,
            "dimensions": dict(events[index].dimensions or {}),
            "timestamp": events[index].timestamp or now,
            "created_at": now,
            "updated_at": now,
        }
        for key, index in first_of_key.items()
    ]
    # Everything that needs no database is done before the transaction: on SQLite it holds the write lock.
    candidates = [
        NewEvent(
            customer_ref=row["customer_ref"],
            resource_ref=row["resource_ref"],
            event_name=row["event_name"],
            dimensions=row["dimensions"],
            timestamp=row["timestamp"],
            index=first_of_key[row["idempotency_key"]],
        )
        for row in rows
    ]
    prepared = prepare.impl(db, env_id, candidates)
    bound = store.Rows(db.dialect, rows)
    with db.transaction() as s:
        stored = store.insert_new(s, bound)
        new = [event for row, event in zip(rows, candidates, strict=True) if row["idempotency_key"] in stored]
        if new:  # counted as usage in this transaction (the usage domain reacts, and may refuse the batch)
            publish(s, EventsIngested(env_id=env_id, events=tuple(new), prepared=prepared))
    return Reported(new=len(new), duplicates=len(events) - len(new))
