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
    # Everything that needs no database is done before the transaction: on SQLite it holds the write lock.
    candidates = [
        NewEvent(e.customer_id, e.resource_id, e.event_name, e.dimensions or {}, e.timestamp or now, index)
        for index in first_of_key.values()
        for e in (events[index],)
    ]
    prepared = prepare.impl(db, env_id, candidates, now)
    bound = store.Rows(db.dialect, env_id, now, list(first_of_key), candidates)
    with db.bulk_transaction() as s:
        stored = store.insert_new(s, bound)
        new = [event for key, event in zip(first_of_key, candidates, strict=True) if key in stored]
        if new:  # counted as usage in this transaction (the usage domain reacts, and may refuse the batch)
            publish(s, EventsIngested(env_id=env_id, events=tuple(new), prepared=prepared))
    return Reported(new=len(new), duplicates=len(events) - len(new))
