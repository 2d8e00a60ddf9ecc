from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.catalog.features.models import Feature
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.errors import NotFound


def find(session: Session, env_id: int, ref_id: str) -> Feature | None:
    return session.scalars(
        select(Feature).where(Feature.environment_id == env_id, Feature.ref_id == ref_id)
    ).one_or_none()


def get(session: Session, env_id: int, ref_id: str) -> Feature:
    feature = find(session, env_id, ref_id)
    if feature is None:
        raise NotFound("feature", ref_id)
    return feature


def get_many(session: Session, env_id: int, ref_ids: list[str]) -> dict[str, Feature]:
    if not ref_ids:
        return {}
    rows = session.scalars(select(Feature).where(Feature.environment_id == env_id, Feature.ref_id.in_(set(ref_ids))))
    return {f.ref_id: f for f in rows}


def list_page(
    session: Session,
    env_id: int,
    page: PageRequest,
    *,
    ids: list[str] | None,
    feature_types: list[str] | None,
    meter_types: list[str] | None,
    statuses: list[str] | None,
    created_at: CreatedAtRange,
    archived: bool = False,
) -> Page[Feature]:
    """Live features; `archived`: the archived ones instead (the API lists live ones only)."""
    live = Feature.archived_at.is_not(None) if archived else Feature.archived_at.is_(None)
    stmt = select(Feature).where(Feature.environment_id == env_id, live)
    if ids:
        stmt = stmt.where(Feature.ref_id.in_(ids))
    if feature_types:
        stmt = stmt.where(Feature.feature_type.in_(feature_types))
    if meter_types:
        stmt = stmt.where(Feature.meter_type.in_(meter_types))
    if statuses:
        stmt = stmt.where(Feature.feature_status.in_(statuses))
    stmt = created_at.apply(stmt, Feature.created_at)
    return paginate(session, stmt, Feature.pk, page)


def metered_with_meter(session: Session, env_id: int) -> list[Feature]:
    """Live features whose usage comes from raw events through a meter."""
    rows = session.scalars(
        select(Feature).where(
            Feature.environment_id == env_id, Feature.archived_at.is_(None), Feature.meter.is_not(None)
        )
    )
    return [f for f in rows if f.meter]
