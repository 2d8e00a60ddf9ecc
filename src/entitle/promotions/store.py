from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from entitle.customers.models import Customer
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.promotions.models import PromotionalEntitlement as Promo


def for_customer(session: Session, customer_pk: int) -> dict[str, Promo]:
    rows = session.scalars(select(Promo).where(Promo.customer_pk == customer_pk))
    return {p.feature_ref: p for p in rows}


def live_for_customer(session: Session, customer_pk: int, now: datetime) -> list[Promo]:
    return list(session.scalars(select(Promo).where(Promo.customer_pk == customer_pk, _is_active(now))))


def live_for_customers(session: Session, customer_pks: Iterable[int], now: datetime) -> dict[int, list[Promo]]:
    """`live_for_customer` for several customers in one query."""
    found: dict[int, list[Promo]] = defaultdict(list)
    wanted = set(customer_pks)
    if wanted:
        for promo in session.scalars(select(Promo).where(Promo.customer_pk.in_(wanted), _is_active(now))):
            found[promo.customer_pk].append(promo)
    return found


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


def promotion_holders(session: Session, env_id: int, feature_ref: str, now: datetime) -> list[str]:
    """Customers (not archived) holding a promotional entitlement to the feature that has not expired."""
    return list(
        session.scalars(
            select(Customer.ref_id)
            .join(Promo, Promo.customer_pk == Customer.pk)
            .where(
                Promo.environment_id == env_id,
                Promo.feature_ref == feature_ref,
                or_(Promo.end_date.is_(None), Promo.end_date > now),
                Customer.archived_at.is_(None),
            )
            .order_by(Customer.ref_id)
        )
    )
