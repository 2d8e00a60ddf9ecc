"""The one rule for reusing what earlier writes of an environment resolved before their transaction
(ingestion's `usage.counting.prepare`, usage reports' `usage.ahead`): kept per process, it is believed
only as of the change-log mark it was read at, less the customers the log names since.

What is kept holds plain values (`KeptGrant`: a grant as a tuple of atoms), never an ORM row nor a
dataclass: up to `KEPT_OWNERS` owners per environment stay alive for good, and every object the
collector tracks among them is traversed by each full collection. The collector stops tracking a tuple
of atoms or of such tuples, and a dict of those, when a full collection passes over it (never a tuple
holding a dict, however plain: grants are kept as a tuple). No ORM row outlives the session that read
it: a batch gets its owners' customers back as their pks and ids, and their grants (`grants_of`); a
customer archived since is among those the log names (archiving announces a change of its grants)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Generic, Protocol, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy.orm import Session

from entitle.catalog.features.models import Feature
from entitle.catalog.packages.allowance import Allowance
from entitle.db import Database
from entitle.grants.engine import Grant
from entitle.usage import ports

KEPT_OWNERS = 10_000  # owners (customer, resource) kept per environment
KEPT_MARK_DISTANCE = 5_000  # a mark further back is not worth reading the changes since: all is read again
# What was kept longer ago is read again: the change log it is judged by keeps its rows for 24 hours
# (`entitle.push.service.RETENTION`), and a change pruned from it would go unseen (a customer archived,
# a promotion granted). Far below that, whatever the clocks of the writer and the pruner say.
KEPT_AGE = timedelta(hours=1)

# A grant kept: its feature's id, its usage anchor, when it was updated, then its allowance's fields in
# their order.
KeptGrant = tuple[
    str, datetime, datetime, Decimal | None, bool, bool, frozenset[str] | None, str | None, str | None, datetime | None
]
KeptGrants = tuple[KeptGrant, ...]

# Allowances got back, one per distinct terms (most customers of an environment share theirs). Bounded:
# forgotten wholesale when full.
_ALLOWANCES: dict[tuple[object, ...], Allowance] = {}
_ALLOWANCES_HELD = 1_000


def kept_grants(grants: dict[str, Grant]) -> KeptGrants:
    """Grants (by feature id) as kept."""
    kept: list[KeptGrant] = []
    for ref, grant in grants.items():
        a = grant.allowance
        kept.append(
            (
                ref,
                grant.usage_anchor,
                grant.updated_at,
                a.usage_limit,
                a.has_unlimited,
                a.has_soft_limit,
                a.enum_values,
                a.reset_period,
                a.reset_anchor,
                a.valid_until,
            )
        )
    return tuple(kept)


def grants_of(kept: KeptGrants, features: dict[str, Feature]) -> dict[str, Grant]:
    """The grants kept, by feature id, of these features (by id): each kept grant's feature is among them."""
    grants: dict[str, Grant] = {}
    for ref, anchor, updated_at, *terms in kept:
        key = tuple(terms)
        allowance = _ALLOWANCES.get(key)
        if allowance is None:
            if len(_ALLOWANCES) >= _ALLOWANCES_HELD:
                _ALLOWANCES.clear()
            allowance = _ALLOWANCES[key] = Allowance(*terms)  # type: ignore[arg-type]
        grants[ref] = Grant(features[ref], allowance, anchor, updated_at)
    return grants


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
    first end (of a subscription or promotion) it rests on, after a feature of the environment changed, or
    longer ago than `KEPT_AGE`. Read after `mark`, in the same read."""
    if not kept_at <= now or now - kept_at > KEPT_AGE:
        return None
    if not kept_mark <= mark or mark - kept_mark > KEPT_MARK_DISTANCE:
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

    def forget(self, db: Database, env_id: int) -> None:
        with self._lock:
            self._kept.get(db, {}).pop(env_id, None)

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
