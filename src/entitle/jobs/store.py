from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from entitle.db.pagination import Page, PageRequest, paginate
from entitle.jobs.models import DEAD, PENDING, RUNNING, Job


def by_dedupe_key(session: Session, env_id: int, dedupe_key: str) -> Job | None:
    return session.scalars(select(Job).where(Job.environment_id == env_id, Job.dedupe_key == dedupe_key)).one_or_none()


def used_dedupe_keys(session: Session, env_id: int, keys: list[str]) -> list[str]:
    """Which of `keys` a job of the environment already has."""
    stmt = select(Job.dedupe_key).where(Job.environment_id == env_id, Job.dedupe_key.in_(keys))
    return [k for k in session.scalars(stmt) if k is not None]


def claimable(session: Session, now: datetime, limit: int) -> list[Job]:
    """Due jobs nobody holds, oldest first, skipping any whose ordering key has an older unfinished job.

    On PostgreSQL rows are locked with SKIP LOCKED, so concurrent workers never take the same job;
    SQLite serializes writers with BEGIN IMMEDIATE, which gives the same guarantee.
    """
    earlier = aliased(Job)
    blocked = exists().where(
        earlier.ordering_key == Job.ordering_key,
        earlier.pk < Job.pk,
        earlier.status.in_((PENDING, RUNNING)),
    )
    stmt = (
        select(Job)
        .where(
            or_(
                and_(Job.status == PENDING, Job.run_at <= now),
                and_(Job.status == RUNNING, Job.locked_until < now),  # a worker died holding it
            ),
            or_(Job.ordering_key.is_(None), ~blocked),
        )
        .order_by(Job.run_at, Job.pk)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def any_claimable(session: Session, now: datetime) -> bool:
    """Whether some job may be claimable now: due or with an expired lease (ordering keys are not
    considered, so it may say yes when `claimable` then finds nothing, never the reverse)."""
    stmt = select(
        exists().where(
            or_(
                and_(Job.status == PENDING, Job.run_at <= now),
                and_(Job.status == RUNNING, Job.locked_until < now),
            )
        )
    )
    return bool(session.scalar(stmt))


def get(session: Session, pk: int, *, for_update: bool = False) -> Job | None:
    stmt = select(Job).where(Job.pk == pk)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def list_page(session: Session, env_id: int | None, page: PageRequest, statuses: list[str] | None) -> Page[Job]:
    stmt = select(Job)
    if env_id is not None:
        stmt = stmt.where(Job.environment_id == env_id)
    if statuses:
        stmt = stmt.where(Job.status.in_(statuses))
    return paginate(session, stmt, Job.pk, page)


def dead_count(session: Session) -> int:
    return len(list(session.scalars(select(Job.pk).where(Job.status == DEAD))))
