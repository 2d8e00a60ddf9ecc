from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.promotions.models import PromotionalEntitlement as Promo


def for_customer(session: Session, customer_pk: int) -> dict[str, Promo]:
    rows = session.scalars(select(Promo).where(Promo.customer_pk == customer_pk))
    return {p.feature_ref: p for p in rows}


def live_for_customer(session: Session, customer_pk: int, now: datetime) -> list[Promo]:
    return list(session.scalars(select(Promo).where(Promo.customer_pk == customer_pk, _is_active(now))))


def _is_active(now: datetime) -> ColumnElement[bool]:
    return and_(or_(Promo.end_date.is_(None), Promo.end_date > now), Promo.paused.is_(False))


def list_page(
    session: Session,
    customer_pk: int,
    page: PageRequest,
    *,
    statuses: list[str] | None,
    created_at: CreatedAtRange,
    now: datetime,
) -> Page[Promo]:
    stmt = select(Promo).where(Promo.customer_pk == customer_pk)
    if statuses:
        wanted: list[ColumnElement[bool]] = []
        if "Active" in statuses:
            wanted.append(_is_active(now))
        if "Expired" in statuses:
            wanted.append(and_(Promo.end_date.is_not(None), Promo.end_date <= now))
        if "Paused" in statuses:
            wanted.append(and_(Promo.paused.is_(True), or_(Promo.end_date.is_(None), Promo.end_date > now)))
        stmt = stmt.where(or_(*wanted))
    stmt = created_at.apply(stmt, Promo.created_at)
    return paginate(session, stmt, Promo.pk, page)
