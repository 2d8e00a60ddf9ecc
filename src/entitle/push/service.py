"""Recording changes for the stream, replaying them, and pruning the log.

Domain code calls `entitlements_updated` / `usage_updated` inside its transaction. Nothing is
written at that moment: the changes are collected on the session (one row per customer/resource,
and per feature for usage, with the last value) and appended just before the transaction commits,
under a lock that makes ids follow commit order. So a rolled-back transaction leaves no event, and
the lock is held only for the commit itself, after every other lock the transaction took.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import URL, event
from sqlalchemy.orm import Session, SessionTransaction

from entitle import domain_events
from entitle.clock import utcnow
from entitle.db import Database
from entitle.environments import facts
from entitle.push import rules, store
from entitle.push.models import (
    KIND_CREDITS,
    KIND_CURRENCIES,
    KIND_ENTITLEMENTS,
    KIND_FEATURES,
    KIND_SETTINGS,
    KIND_USAGE,
    PushEvent,
)
from entitle.push.schemas import Item

RETENTION = timedelta(hours=24)
PRUNE_BATCH = 5000
REPLAY_PAGE = 500

_PENDING = "entitle.push.pending"

# Rows this process appended whose commit its own caches have already heard (the domain-event listeners
# ran: `domain_events.on_commit`), per database: its hub need not drop the same entries again a moment
# later. A row enters only once they have (`domain_events.after_announced`): the row is visible to the
# hub (and so to the streams, which it feeds after the caches) from the commit on, before the committing
# thread runs those listeners. A row the hub reads earlier is dropped as another process's would be, or
# a stream client re-reading on its event could be answered, and would keep as fresh, the state the
# change replaced.
_written_here: set[tuple[str, int]] = set()
_written_lock = threading.Lock()


def database_key(url: URL | str) -> str:
    return facts.database_key(url)


def written_here(database: str, items: list[Item]) -> set[int]:
    """Which of `items` (read in id order from `database`) this process appended and its caches already
    heard at commit; forgets them, and every id of ours below the last one read (heard only after the
    hub read it, or appended by a transaction that rolled back)."""
    if not items:
        return set()
    last = items[-1].id
    with _written_lock:
        ours = {i.id for i in items if (database, i.id) in _written_here}
        stale = {key for key in _written_here if key[0] == database and key[1] <= last}
        _written_here.difference_update(stale)
    return ours


_Key = tuple[Any, ...]


def _pending(session: Session) -> dict[_Key, dict[str, Any]]:
    pending: dict[_Key, dict[str, Any]] = session.info.setdefault(_PENDING, {})
    return pending


def entitlements_updated(session: Session, env_id: int, customer_ref: str, resource_ref: str | None = None) -> None:
    """The customer's effective entitlements may have changed; stream clients re-read them."""
    key = (env_id, KIND_ENTITLEMENTS, customer_ref, resource_ref)
    _pending(session)[key] = {
        "environment_id": env_id,
        "kind": KIND_ENTITLEMENTS,
        "customer_ref": customer_ref,
        "resource_ref": resource_ref,
        "data": {"customerId": customer_ref, "resourceId": resource_ref},
    }


def feature_changed(session: Session, env_id: int, feature_ref: str) -> None:
    """Servers drop what their entitlement snapshots hold of the environment's features."""
    key = (env_id, KIND_FEATURES, feature_ref)
    _pending(session)[key] = {
        "environment_id": env_id,
        "kind": KIND_FEATURES,
        "customer_ref": "",
        "resource_ref": None,
        "data": {"featureId": feature_ref},
    }


def currency_changed(session: Session, env_id: int, currency_ref: str) -> None:
    """Servers drop what their entitlement snapshots hold of the environment's credits."""
    key = (env_id, KIND_CURRENCIES, currency_ref)
    _pending(session)[key] = {
        "environment_id": env_id,
        "kind": KIND_CURRENCIES,
        "customer_ref": "",
        "resource_ref": None,
        "data": {"currencyId": currency_ref},
    }


def settings_changed(session: Session, env_id: int, fact: str) -> None:
    """Servers drop what they know the environment lacks (`entitle.environments.facts`)."""
    key = (env_id, KIND_SETTINGS, fact)
    _pending(session)[key] = {
        "environment_id": env_id,
        "kind": KIND_SETTINGS,
        "customer_ref": "",
        "resource_ref": None,
        "data": {"fact": fact},
    }


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def usage_updated(
    session: Session, env_id: int, customer_ref: str, resource_ref: str | None, feature_ref: str, current: Decimal
) -> None:
    """The current-window usage of a metered feature is now `current` (the last call per feature wins)."""
    key = (env_id, KIND_USAGE, customer_ref, resource_ref, feature_ref)
    _pending(session)[key] = {
        "environment_id": env_id,
        "kind": KIND_USAGE,
        "customer_ref": customer_ref,
        "resource_ref": resource_ref,
        "data": {
            "customerId": customer_ref,
            "resourceId": resource_ref,
            "featureId": feature_ref,
            "currentUsage": _number(current),
        },
    }


def credits_updated(
    session: Session,
    env_id: int,
    customer_ref: str,
    resource_ref: str | None,
    currency_ref: str,
    usage_limit: Decimal,
    current_usage: Decimal,
    reserved: Decimal,
) -> None:
    """A wallet's balance moved; the last call per customer, resource and currency wins."""
    key = (env_id, KIND_CREDITS, customer_ref, resource_ref, currency_ref)
    _pending(session)[key] = {
        "environment_id": env_id,
        "kind": KIND_CREDITS,
        "customer_ref": customer_ref,
        "resource_ref": resource_ref,
        "data": {
            "customerId": customer_ref,
            "resourceId": resource_ref,
            "currencyId": currency_ref,
            "usageLimit": _number(usage_limit),
            "currentUsage": _number(current_usage),
            "reserved": _number(reserved),
            "balance": _number(usage_limit - current_usage),
        },
    }


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    # The commit flushes what is left after the before_commit listeners: a row flushed then could no
    # longer add its change here (a fact it breaks: `entitle.environments.facts`). Nothing left: free.
    session.flush()
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    store.lock_for_append(session)
    now = utcnow()
    rows = [{**row, "created_at": now} for row in pending.values()]
    ids = store.append(session, rows)
    database = facts.database_of(session.get_bind().engine)

    def heard() -> None:
        with _written_lock:
            _written_here.update((database, i) for i in ids)

    domain_events.after_announced(session, heard)
    last_per_env: dict[int, int] = {}
    for row, new_id in zip(rows, ids, strict=True):
        last_per_env[row["environment_id"]] = new_id
    store.notify(session, (f"{env}:{last}" for env, last in last_per_env.items()))


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    # A rolled-back unit of work made no change: drop what it collected (commit already took it).
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_PENDING, None)


def detach(row: PushEvent) -> Item:
    return Item(
        id=row.id,
        environment_id=row.environment_id,
        kind=row.kind,
        customer_ref=row.customer_ref,
        data=dict(row.data),
        created_at=row.created_at,
    )


def newer_than(db: Database, after_id: int, limit: int = 1000) -> list[Item]:
    # A connection, not a session: a single statement, polled every 250 ms on SQLite.
    with db.read_engine.connect() as connection:
        return store.after(connection, after_id, limit)


def newest_id(db: Database) -> int:
    with db.read() as s:
        return store.bounds(s)[1] or 0


@dataclass(frozen=True)
class Replay:
    """What a reconnecting client gets: the missed events, or a reset at `resume_id`."""

    reset: bool
    items: list[Item]
    resume_id: int


def replay(db: Database, env_id: int, last_event_id: int | None, customers: list[str] | None) -> Replay:
    """The first page of events after `last_event_id` (more with `replay_page`), or a reset."""
    with db.read() as s:
        oldest, newest = store.bounds(s)
        if last_event_id is None or not rules.can_resume(last_event_id, oldest, newest):
            return Replay(reset=True, items=[], resume_id=newest or 0)
        rows = store.of_environment_after(s, env_id, last_event_id, customers, REPLAY_PAGE)
        return Replay(reset=False, items=[detach(r) for r in rows], resume_id=last_event_id)


def replay_page(db: Database, env_id: int, after_id: int, customers: list[str] | None) -> list[Item]:
    with db.read() as s:
        return [detach(r) for r in store.of_environment_after(s, env_id, after_id, customers, REPLAY_PAGE)]


def prune(db: Database, retention: timedelta = RETENTION, max_batches: int = 20) -> int:
    """Delete events older than the retention window, in bounded batches; returns how many stream
    events went (the servers' internal notices of the same age go too, uncounted)."""
    cutoff = utcnow() - retention
    for streamed in (False, True):
        total = 0
        for _ in range(max_batches):
            with db.transaction() as s:
                deleted = store.delete_older_than(s, cutoff, PRUNE_BATCH, streamed=streamed)
            total += deleted
            if deleted < PRUNE_BATCH:
                break
    return total
