"""The one rule for reusing what earlier writes of an environment resolved before their transaction
(ingestion's `usage.counting.prepare`, usage reports' `usage.ahead`): kept per process, it is believed
only as of the change-log mark it was read at, less the customers the log names since."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Generic, Protocol, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy.orm import Session

from entitle.db import Database
from entitle.usage import ports

KEPT_OWNERS = 10_000  # owners (customer, resource) kept per environment
KEPT_MARK_DISTANCE = 5_000  # a mark further back is not worth reading the changes since: all is read again


def changed_since_kept(
    s: Session,
    env_id: int,
    *,
    kept_mark: int,
    kept_at: datetime,
    valid_until: datetime | None,
    mark: int,
    now: datetime,
) -> frozenset[str] | None:
    """The customers whose grants changed since what was kept (at `kept_at`, as of `kept_mark`); None when
    nothing kept may be used: read in another order than the clock's or the log's, too far back, past the
    first end (of a subscription or promotion) it rests on, or after a feature of the environment changed.
    Read after `mark`, in the same read."""
    if not kept_at <= now or not kept_mark <= mark or mark - kept_mark > KEPT_MARK_DISTANCE:
        return None
    if valid_until is not None and now >= valid_until:
        return None
    return ports.grant_changes.impl.changed_since(s, env_id, kept_mark)


class Resolution(Protocol):
    """What a kept resolution must tell about itself for the rule to judge it."""

    @property
    def mark(self) -> int: ...  # the change-log mark it was read as of
    @property
    def at(self) -> datetime: ...  # the instant it was read at
    @property
    def valid_until(self) -> datetime | None: ...  # the first end it rests on (None: none comes)


R = TypeVar("R", bound=Resolution)


class KeptPerEnvironment(Generic[R]):
    """One resolution per database and environment, kept by this process for the environment's next
    writes, and handed back only with the customers `changed_since_kept` names since it was kept."""

    def __init__(self) -> None:
        self._kept: WeakKeyDictionary[Database, dict[int, R]] = WeakKeyDictionary()
        self._lock = threading.Lock()

    def keep(self, db: Database, env_id: int, resolution: R) -> None:
        with self._lock:
            self._kept.setdefault(db, {})[env_id] = resolution

    def kept(self, db: Database, env_id: int) -> R | None:
        """The resolution kept, as it was kept (not judged)."""
        with self._lock:
            return self._kept.get(db, {}).get(env_id)

    def since(self, s: Session, db: Database, env_id: int, mark: int, now: datetime) -> tuple[R, frozenset[str]] | None:
        """The kept resolution and the customers whose grants changed since; None when none is kept or
        it may not be used. Read after `mark`, in the same read."""
        kept = self.kept(db, env_id)
        if kept is None:
            return None
        changed = changed_since_kept(
            s, env_id, kept_mark=kept.mark, kept_at=kept.at, valid_until=kept.valid_until, mark=mark, now=now
        )
        return None if changed is None else (kept, changed)
