from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.clock import utcnow
from entitle.environments.service import Principal
from entitle.http.deps import DB, CreatedAt, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope
from entitle.promotions import service
from entitle.promotions.models import PromotionalEntitlement
from entitle.promotions.schemas import PROMO_STATUSES, PromotionOut, PromotionsGrant

router = APIRouter(prefix="/api/v1/customers/{customer_id}/promotional-entitlements", tags=["customers"])


def _out(key: Principal) -> Any:
    now = utcnow()
    return lambda row: PromotionOut.of(row, key.environment_name, now)


@router.post("", response_model=Envelope[list[PromotionOut]])
def grant_promotions(customer_id: str, body: PromotionsGrant, key: ServerKey, db: DB) -> dict[str, Any]:
    rows = service.grant(db, key.environment_id, customer_id, body.promotional_entitlements)
    return envelope([_out(key)(r) for r in rows])


@router.get("", response_model=PageEnvelope[PromotionOut])
def list_promotions(
    customer_id: str,
    key: ServerKey,
    db: DB,
    page: Paging,
    created_at: CreatedAt,
    status: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    statuses = comma_list(status, PROMO_STATUSES, name="status")
    result = service.list_promotions(
        db, key.environment_id, customer_id, page, statuses=statuses, created_at=created_at
    )
    return page_envelope(result, _out(key))


@router.delete("/{feature_id}", response_model=Envelope[PromotionOut])
def revoke_promotion(customer_id: str, feature_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    row: PromotionalEntitlement = service.revoke(db, key.environment_id, customer_id, feature_id)
    return envelope(_out(key)(row))
