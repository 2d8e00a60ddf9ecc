from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.catalog.products.models import Product
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.errors import NotFound


def find(session: Session, env_id: int, ref_id: str) -> Product | None:
    return session.scalars(
        select(Product).where(Product.environment_id == env_id, Product.ref_id == ref_id)
    ).one_or_none()


def get(session: Session, env_id: int, ref_id: str) -> Product:
    product = find(session, env_id, ref_id)
    if product is None:
        raise NotFound("product", ref_id)
    return product


def list_page(
    session: Session,
    env_id: int,
    page: PageRequest,
    *,
    ids: list[str] | None,
    statuses: list[str] | None,
    created_at: CreatedAtRange,
) -> Page[Product]:
    stmt = select(Product).where(Product.environment_id == env_id)
    if ids:
        stmt = stmt.where(Product.ref_id.in_(ids))
    if statuses:
        stmt = stmt.where(Product.status.in_(statuses))
    stmt = created_at.apply(stmt, Product.created_at)
    return paginate(session, stmt, Product.pk, page)
