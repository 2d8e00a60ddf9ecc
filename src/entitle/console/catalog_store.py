"""The console's catalog search (the API lists products by id; people look for them by name)."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from entitle.catalog.products.models import Product
from entitle.db.pagination import Page, PageRequest, paginate


def _like(query: str) -> str:
    return "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_products(
    s: Session, env_id: int, query: str, statuses: list[str] | None, page: PageRequest
) -> Page[Product]:
    """Products whose id, name or description contains `query` (any case), optionally of some statuses."""
    stmt = select(Product).where(Product.environment_id == env_id)
    if statuses:
        stmt = stmt.where(Product.status.in_(statuses))
    if query:
        like = _like(query)
        stmt = stmt.where(
            or_(
                func.lower(Product.ref_id).like(like, escape="\\"),
                func.lower(Product.display_name).like(like, escape="\\"),
                func.lower(func.coalesce(Product.description, "")).like(like, escape="\\"),
            )
        )
    return paginate(s, stmt, Product.pk, page)
