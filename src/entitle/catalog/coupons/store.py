from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.catalog.coupons.models import Coupon
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.errors import NotFound


def find(session: Session, env_id: int, ref_id: str) -> Coupon | None:
    return session.scalars(select(Coupon).where(Coupon.environment_id == env_id, Coupon.ref_id == ref_id)).one_or_none()


def get(session: Session, env_id: int, ref_id: str) -> Coupon:
    coupon = find(session, env_id, ref_id)
    if coupon is None:
        raise NotFound("coupon", ref_id)
    return coupon


def list_page(
    session: Session,
    env_id: int,
    page: PageRequest,
    *,
    ids: list[str] | None,
    statuses: list[str] | None,
    coupon_type: str | None,
    created_at: CreatedAtRange,
) -> Page[Coupon]:
    stmt = select(Coupon).where(Coupon.environment_id == env_id)
    if ids:
        stmt = stmt.where(Coupon.ref_id.in_(ids))
    if statuses:
        stmt = stmt.where(Coupon.status.in_(statuses))
    if coupon_type:
        stmt = stmt.where(Coupon.coupon_type == coupon_type)
    stmt = created_at.apply(stmt, Coupon.created_at)
    return paginate(session, stmt, Coupon.pk, page)
