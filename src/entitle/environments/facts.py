"""What an environment is known NOT to have, kept per process: no enabled webhook endpoint, no billing
integration of a vendor, nothing in its catalog that grants credits.

Every write transaction that provisions a customer asked the database each of these, inside SQLite's
write lock, and in most environments the answer is "none" on every request. A `Fact` remembers that
"none" for an environment, and only that: when the answer is "some", every transaction reads the rows
as before, so nothing a row says is ever served from memory. A fact can only become false by a row
being written (a new endpoint, integration or credit-granting entitlement or price): the domain that
owns the row calls `Fact.broken` from the ORM's flush of it (`after_insert`/`after_update`; a Core or
raw-SQL write of those tables would skip it, and `tests/test_environment_facts_writes.py` refuses one), which

- drops the fact in this process at once, and again once the transaction is durably committed
  (`SettingsChanged`, a domain event: `entitle.domain_events.on_commit`), so a write is visible to the
  next read of this process;
- and, through the push adapter's subscriber, writes an internal `settings.changed` row to the change
  log in the same transaction, which every other process's hub reads (`entitle.push.feed`) and drops
  the fact there.

The hub reads the log within the push latency (docs/push.md); a transaction does not wait for it: it
trusts a fact only once the log has no `settings.changed` row of the environment above what its hub has
applied (`settings_changed_after`, one indexed read per transaction and environment over the rows of the
last moments, installed by the push adapter), so what any process committed before is seen.

A process keeps a fact only while its hub is caught up with the change log for that database (as the
entitlement snapshot does): a new process, or one whose hub may have missed rows, keeps nothing and
reads every time. A fact is kept only if nothing was dropped since the transaction that read it began
(`_version`): a read whose snapshot of the database predates a change is never kept after it.
Memory is bounded by environments x facts (a few bytes each).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import URL, Engine, event, make_url
from sqlalchemy.orm import Session, SessionTransaction

from entitle.domain_events import DomainEvent, Port, on_commit, publish

_BEGUN = "entitle.environments.facts.begun"
_CHECKED = "entitle.environments.facts.checked"
# Per (database, environment, fact, key): the facts known true. Read without the lock (a dict lookup is
# atomic under the GIL); changed under it.
_known: set[tuple[str, int, str, Hashable]] = set()
_lock = threading.Lock()
_version = 0
# The databases whose change log this process's hubs are caught up with (each hub's feed by its id).
_live: dict[str, set[int]] = {}
_facts: dict[str, Fact] = {}
# Per database: the change log's id up to which every `settings.changed` row has been applied here.
_heard_up_to: dict[str, int] = {}

settings_changed_after: Port[Callable[[Session, int, int], bool]] = Port("facts.settings_changed_after")
"""Whether the change log holds a `settings.changed` row of the environment above an id, as the session
sees it (installed by the push adapter, which owns the log)."""
_database_of_engine: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, kw_only=True)
class SettingsChanged(DomainEvent):
    """A row that may break the fact `fact` of the environment was written (internal: heard by this
    process's facts at commit, by the others through the change log)."""

    fact: str


def database_key(url: URL | str) -> str:
    """The change log's name for a database (its URL as text), as the hub's feed and the writer agree."""
    return make_url(url).render_as_string(hide_password=False)


def database_of(engine: Engine) -> str:
    """`database_key` of an engine's URL, worked out once per engine."""
    found = _database_of_engine.get(engine)
    if found is None:
        found = _database_of_engine[engine] = database_key(engine.url)
    return found


class Fact:
    """One kind of "none" (`name`, unique in the process), known per environment and `key`."""

    def __init__(self, name: str) -> None:
        if name in _facts:
            raise ValueError(f"fact {name!r} is declared twice")
        self.name = name
        _facts[name] = self

    def holds(self, session: Session, env_id: int, key: Hashable = None) -> bool:
        """Known true for the session's database (False: not known, read the database). A change another
        process committed and this one's hub has not read yet is found in the log itself (one indexed
        query per transaction and environment, over the rows of the last moments), so the answer is as
        exact as the read it replaces."""
        database = database_of(session.get_bind().engine)
        heard = _heard_up_to.get(database, 0)  # first: every row up to it was applied to `_known` below
        if not heard or (database, env_id, self.name, key) not in _known:
            return False
        return _unchanged_since(session, database, env_id, heard)

    def learned(self, session: Session, env_id: int, key: Hashable = None) -> None:
        """The session's transaction read that the fact is true: kept, unless its hub is not caught up or
        a fact was dropped since the transaction began (its read may predate that change)."""
        database = database_of(session.get_bind().engine)
        begun = session.info.get(_BEGUN)
        with _lock:
            if _live.get(database) and begun == (session.get_transaction(), _version):
                _known.add((database, env_id, self.name, key))

    def broken(self, session: Session, env_id: int) -> None:
        """A row of the session's transaction may make the fact false in the environment (called from
        the flush that writes it): dropped here now and at commit, and in every process through the
        change log."""
        _drop(lambda known: known[1] == env_id and known[2] == self.name)
        publish(session, SettingsChanged(env_id=env_id, fact=self.name))


def _unchanged_since(session: Session, database: str, env_id: int, heard: int) -> bool:
    # Asked once per transaction and environment: its answer holds for the transaction's reads.
    transaction = session.get_transaction()
    checked: tuple[Any, dict[tuple[str, int], bool]] | None = session.info.get(_CHECKED)
    if checked is None or checked[0] is not transaction:
        checked = (transaction, {})
        session.info[_CHECKED] = checked
    answers = checked[1]
    found = answers.get((database, env_id))
    if found is None:
        found = answers[(database, env_id)] = not settings_changed_after.impl(session, env_id, heard)
    return found


def heard_up_to(database: str, log_id: int) -> None:
    """The hub's feed applied every row of the database's change log up to `log_id`."""
    with _lock:
        _heard_up_to[database] = max(_heard_up_to.get(database, 0), log_id)


def _drop(which: Any) -> None:
    global _version
    with _lock:
        _version += 1
        gone = {known for known in _known if which(known)}
        _known.difference_update(gone)


def dropped(database: str, env_id: int, fact: str) -> None:
    """Another process changed what the fact rests on (its `settings.changed` row, read by the hub)."""
    _drop(lambda known: known[0] == database and known[1] == env_id and known[2] == fact)


def lost(database: str, feed: object) -> None:
    """The feed's hub may have missed changes: forget the database's facts, keep none until `caught_up`."""
    global _version
    with _lock:
        _version += 1
        _live.get(database, set()).discard(id(feed))
        _known.difference_update({known for known in _known if known[0] == database})


def heard(database: str) -> int:
    """The change log's id up to which this process has heard the database's changes (0: its hub is not
    caught up, or has read no row yet: no fact holds)."""
    return _heard_up_to.get(database, 0) if _live.get(database) else 0


def caught_up(database: str, feed: object) -> None:
    global _version
    with _lock:
        _version += 1
        _live.setdefault(database, set()).add(id(feed))


def committed(_version_: int, events: Sequence[DomainEvent]) -> None:
    """`on_commit`: this process's own change, durable now (dropped in every database of the process:
    the event does not say which, and dropping too much only costs a read)."""
    for changed in events:
        if isinstance(changed, SettingsChanged):
            _drop(lambda known, changed=changed: known[1] == changed.env_id and known[2] == changed.fact)


def _began(session: Session, transaction: SessionTransaction, _connection: Any) -> None:
    # A savepoint begun later reads what the transaction's snapshot shows: the outer beginning counts.
    if not transaction.nested:
        session.info[_BEGUN] = (transaction, _version)


event.listen(Session, "after_begin", _began)
on_commit(committed)
