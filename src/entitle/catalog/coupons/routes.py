from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.catalog.coupons import service
from entitle.catalog.coupons.schemas import COUPON_STATUSES, CouponCreate, CouponOut, CouponType, CouponUpdate
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope

router = APIRouter(prefix="/api/v1/coupons", tags=["coupons"])


@router.post("", response_model=Envelope[CouponOut])
def create_coupon(body: CouponCreate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(CouponOut.of(service.create_coupon(db, key.environment_id, body)))


@router.get("", response_model=PageEnvelope[CouponOut])
def list_coupons(
    key: ServerKey,
    db: DB,
    page: Paging,
    created_at: CreatedAt,
    id: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query()] = None,
    type: Annotated[CouponType | None, Query()] = None,
) -> dict[str, Any]:
    result = service.list_coupons(
        db,
        key.environment_id,
        page,
        ids=comma_list(id, name="id"),
        statuses=comma_list(status, COUPON_STATUSES, name="status"),
        coupon_type=type,
        created_at=created_at,
    )
    return page_envelope(result, CouponOut.of)


@router.get("/{coupon_id}", response_model=Envelope[CouponOut])
def get_coupon(coupon_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(CouponOut.of(service.get_coupon(db, key.environment_id, coupon_id)))


@router.patch("/{coupon_id}", response_model=Envelope[CouponOut])
def update_coupon(coupon_id: str, body: CouponUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(CouponOut.of(service.update_coupon(db, key.environment_id, coupon_id, body)))


@router.post("/{coupon_id}/archive", response_model=Envelope[CouponOut])
def archive_coupon(coupon_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(CouponOut.of(service.archive_coupon(db, key.environment_id, coupon_id)))
