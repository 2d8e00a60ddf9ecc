from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.catalog.packages.models import PUBLISHED, Package
from entitle.catalog.products.models import Product


def live_products(session: Session, env_id: int, product_ref: str | None) -> list[Product]:
    stmt = select(Product).where(Product.environment_id == env_id, Product.status != "ARCHIVED")
    if product_ref is not None:
        stmt = stmt.where(Product.ref_id == product_ref)
    return list(session.scalars(stmt.order_by(Product.pk)))


def latest_published_in(session: Session, env_id: int, kind: str, product_pks: list[int]) -> list[Package]:
    """The version new customers get, for every published package of these products, oldest first."""
    if not product_pks:
        return []
    stmt = select(Package).where(
        Package.environment_id == env_id,
        Package.kind == kind,
        Package.product_pk.in_(product_pks),
        Package.status == PUBLISHED,
        Package.is_latest.is_(True),
    )
    return list(session.scalars(stmt.order_by(Package.pk)))
