"""Domain events: what happened, announced inside the transaction that made it happen.

A domain service calls `publish(session, event)` in its own transaction. Subscribers (registered at
start-up by `entitle.wiring.install`) run at once, synchronously, in that same session, and turn the
event into their own durable work there: a provider sync job, a webhook delivery, a push row. So the
side effect exists if and only if the change committed, and a domain never imports the adapters
that react to it (dependencies point one way: adapters import domains, never the reverse).

Subscribers of one event run in the order they subscribed; `wiring.install` subscribes the domains'
own reactions (a customer archived ends its subscriptions) before the adapters, so an adapter records
the consequences of an event before the event itself (`subscription.canceled`, then
`customer.archived`). An event published by a subscriber is dispatched at once (depth first).

After the transaction commits (durably: a member of a SQLite group commit once its group has),
`on_commit` listeners receive every event it published with a version number that only grows in
this process: an in-memory cache that remembers the version it read at (`current_version()` before
the read) never stores a state older than a change it has already been told about.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from entitle.db.group_commit import when_durable

log = logging.getLogger("entitle.domain_events")


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Base of every domain event: the environment it happened in. Subclasses are frozen dataclasses
    named in the past tense (`CustomerArchived`); in-transaction subscribers may read the ORM rows
    they carry, after-commit listeners only their plain fields (the rows are detached by then)."""

    env_id: int


E = TypeVar("E", bound=DomainEvent)
Subscriber = Callable[[Session, Any], None]
CommitListener = Callable[[int, Sequence[DomainEvent]], None]

_subscribers: dict[type[DomainEvent], list[Subscriber]] = {}
_commit_listeners: list[CommitListener] = []
_version = itertools.count(1)
_last_version = 0
_version_lock = threading.Lock()
_PENDING = "entitle.domain_events.pending"
_AFTER_ANNOUNCED = "entitle.domain_events.after_announced"


def subscribe(event_type: type[E], handler: Callable[[Session, E], None]) -> None:
    """Run `handler(session, event)` for every `event_type` (or subclass) published. Idempotent."""
    handlers = _subscribers.setdefault(event_type, [])
    if handler not in handlers:
        handlers.append(handler)


def on_commit(listener: CommitListener) -> None:
    """Call `listener(version, events)` after each commit that published events. Idempotent.

    A listener runs outside the transaction, in the committing thread; it must not raise (an error is
    logged and the next listener still runs) and should be quick (invalidate, signal, return)."""
    if listener not in _commit_listeners:
        _commit_listeners.append(listener)


def remove_commit_listener(listener: CommitListener) -> None:
    if listener in _commit_listeners:
        _commit_listeners.remove(listener)


def subscribers_of(event_type: type[DomainEvent]) -> list[Subscriber]:
    """Every handler that hears `event_type`: its own subscribers, then its base classes'."""
    found: list[Subscriber] = []
    for klass in event_type.__mro__:
        for handler in _subscribers.get(klass, ()):
            if handler not in found:
                found.append(handler)
    return found


def publish(session: Session, event: DomainEvent) -> None:
    """Announce `event` in `session`'s transaction: every subscriber runs now, in this session."""
    session.info.setdefault(_PENDING, []).append(event)
    for handler in subscribers_of(type(event)):
        handler(session, event)


def published(session: Session) -> list[DomainEvent]:
    """The events published in the session's open transaction so far (tests and diagnostics)."""
    return list(session.info.get(_PENDING, ()))


def current_version() -> int:
    """The version of the latest commit that published events in this process (0 before any)."""
    return _last_version


def after_announced(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the transaction open in `session` has committed and its events have been
    announced to the commit listeners (with no events: once it is durable), in the committing thread;
    never if it rolls back. For what must not count as heard before this process's caches heard it."""
    session.info.setdefault(_AFTER_ANNOUNCED, []).append(callback)


def _after_commit(session: Session) -> None:
    events = session.info.pop(_PENDING, None)
    after = session.info.pop(_AFTER_ANNOUNCED, None)
    if events or after:
        # A member of a SQLite group commit is committed when its group is: announced no earlier.
        when_durable(session, lambda: _announced(events, after))


def _announced(events: list[DomainEvent] | None, after: list[Callable[[], None]] | None) -> None:
    if events:
        _announce(events)
    for callback in after or ():
        callback()


def _announce(events: list[DomainEvent]) -> None:
    global _last_version
    with _version_lock:
        version = next(_version)
        _last_version = version
    for listener in list(_commit_listeners):
        try:
            listener(version, events)
        except Exception:  # a cache listener must not turn a committed change into an error
            log.exception("domain event commit listener %r failed", listener)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_AFTER_ANNOUNCED, None)


sa_event.listen(Session, "after_commit", _after_commit)
sa_event.listen(Session, "after_rollback", _after_rollback)


T = TypeVar("T")


class Port(Generic[T]):
    """Where a domain asks a higher layer something it cannot import (a question, not a command):
    the domain declares the port and calls it; the higher layer installs the answer at start-up
    (`entitle.wiring.install`). A port with contributions from several packages is a list of them."""

    def __init__(self, name: str, default: T | None = None) -> None:
        self.name = name
        self._default = default
        self._impl: T | None = default

    def install(self, impl: T | None) -> None:
        """Install an implementation (None puts back the default)."""
        self._impl = impl if impl is not None else self._default

    @property
    def impl(self) -> T:
        if self._impl is None:
            raise RuntimeError(f"port {self.name!r} has no implementation: call entitle.wiring.install() at start-up")
        return self._impl


class Contributions(Generic[T]):
    """A port several higher packages each add an answer to (in the order they are installed)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: list[T] = []

    def add(self, item: T) -> None:
        if item not in self._items:
            self._items.append(item)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))
