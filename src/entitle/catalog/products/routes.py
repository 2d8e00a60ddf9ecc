from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.catalog.products import service
from entitle.catalog.products.schemas import (
    PRODUCT_STATUSES,
    ProductCreate,
    ProductDuplicate,
    ProductOut,
    ProductUpdate,
)
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope

router = APIRouter(prefix="/api/v1/products", tags=["products"])


@router.post("", response_model=Envelope[ProductOut])
def create_product(body: ProductCreate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(ProductOut.of(service.create_product(db, key.environment_id, body)))


@router.get("", response_model=PageEnvelope[ProductOut])
def list_products(
    key: ServerKey,
    db: DB,
    page: Paging,
    created_at: CreatedAt,
    id: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    result = service.list_products(
        db,
        key.environment_id,
        page,
        ids=comma_list(id, name="id"),
        statuses=comma_list(status, PRODUCT_STATUSES, name="status"),
        created_at=created_at,
    )
    return page_envelope(result, ProductOut.of)


@router.get("/{product_id}", response_model=Envelope[ProductOut])
def get_product(product_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    """Our extension: the contract has no GET-by-id for products, but the console needs one."""
    return envelope(ProductOut.of(service.get_product(db, key.environment_id, product_id)))


@router.patch("/{product_id}", response_model=Envelope[ProductOut])
def update_product(product_id: str, body: ProductUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(ProductOut.of(service.update_product(db, key.environment_id, product_id, body)))


@router.post("/{product_id}/archive", response_model=Envelope[ProductOut])
def archive_product(product_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(ProductOut.of(service.archive_product(db, key.environment_id, product_id)))


@router.post("/{product_id}/unarchive", response_model=Envelope[ProductOut])
def unarchive_product(product_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(ProductOut.of(service.unarchive_product(db, key.environment_id, product_id)))


@router.post("/{product_id}/duplicate", response_model=Envelope[ProductOut])
def duplicate_product(product_id: str, body: ProductDuplicate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(ProductOut.of(service.duplicate_product(db, key.environment_id, product_id, body)))
