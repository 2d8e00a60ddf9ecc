"""The one rule for reusing what earlier writes of an environment resolved before their transaction
(ingestion's `usage.counting.prepare`, usage reports' `usage.ahead`): kept per process, it is believed
only as of the change-log mark it was read at, less the customers the log names since."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

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
