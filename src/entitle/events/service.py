"""Raw event ingestion: durable and deduplicated before the response is sent.

Idempotency follows Stigg: an event's idempotency key identifies it. The first event stored with a
key wins; a later one with the same key, in the same batch or another, is a duplicate and is dropped
while the rest of the batch is stored. A batch holding an invalid event (a bad field, an instant
outside the usage window, a number a meter cannot count) is refused whole with 400, each offending
event named by its index (`events.<i>.<field>`), and nothing of it is stored: a client drops those
and resends the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress

from entitle.clock import utcnow
from entitle.db import Database
from entitle.domain_events import publish
from entitle.events import store
from entitle.events.ingested import EventsIngested, NewEvent, prepare
from entitle.events.rules import CLOCK_SKEW, EARLIEST, instant_problem, refusal
from entitle.events.schemas import EventIn, EventItem, item_of


@dataclass(frozen=True)
class Reported:
    new: int
    duplicates: int


def _store(db: Database, env_id: int, rows: store.Rows, prepared: object) -> list[NewEvent]:
    """Store the new events of a batch, and count them, in one transaction; the events stored."""
    candidates: list[NewEvent] = rows.events
    with db.bulk_transaction() as s:
        stored = store.insert_new(s, rows)
        if len(stored) == len(rows.keys):
            new = candidates
        else:
            new = [e for key, e in zip(rows.keys, candidates, strict=True) if key in stored]
        if new:  # counted as usage in this transaction (the usage domain reacts, and may refuse the batch)
            publish(s, EventsIngested(env_id=env_id, events=tuple(new), prepared=prepared))
    return new


def report_events(db: Database, env_id: int, events: list[EventIn]) -> Reported:
    """`report_items` for events read as models."""
    return report_items(db, env_id, [item_of(e) for e in events])


def report_items(db: Database, env_id: int, items: Sequence[EventItem]) -> Reported:
    """Store a batch in one transaction: the new events, not the duplicates."""
    now = utcnow()
    # The first event of each idempotency key, in the request's order (a later one is a duplicate);
    # everything that needs no database is done before the transaction: on SQLite it holds the write lock.
    keys = [e["idempotencyKey"] for e in items]
    firsts: Iterable[tuple[int, EventItem]] = enumerate(items)
    if len(set(keys)) != len(keys):  # a key repeated within the batch: its first event only
        first: dict[str, int] = {}
        for position, key in enumerate(keys):
            first.setdefault(key, position)
        keys, firsts = list(first), [(i, items[i]) for i in first.values()]
    # Built inline, not by a function per event (a batch holds 1,000); an event without an instant happened now.
    candidates = [
        NewEvent(
            e["customerId"],
            e.get("resourceId"),
            e["eventName"],
            e.get("dimensions") or {},
            e.get("timestamp") or now,
            i,
        )
        for i, e in firsts
    ]
    latest = now + CLOCK_SKEW
    problems = [
        {"field": f"events.{e.index}.timestamp", "problem": problem}
        for e in candidates
        if not EARLIEST <= e.timestamp <= latest and (problem := instant_problem(e.timestamp, now)) is not None
    ]
    if problems:
        raise refusal(problems)
    sqlite = db.dialect == "sqlite"
    with db.read() as s:
        if sqlite:
            # The write transaction holds the database's lock: the keys already stored are found before
            # it, so that the batch is measured, and its counters found, for just the events it will store.
            taken = store.taken_keys(s, env_id, keys)
            if taken:
                fresh = [key not in taken for key in keys]
                keys, candidates = list(compress(keys, fresh)), list(compress(candidates, fresh))
                if not keys:  # a batch resent whole: every event is stored (committed) already
                    return Reported(new=0, duplicates=len(items))
        prepared = prepare.impl(db, env_id, candidates, now, session=s)
    new = _store(db, env_id, store.Rows(db.dialect, env_id, now, keys, candidates, free=sqlite), prepared)
    return Reported(new=len(new), duplicates=len(items) - len(new))
