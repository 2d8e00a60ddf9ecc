from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.http.deps import DB, CustomerQueryKey
from entitle.http.wire import Envelope, envelope
from entitle.paywall import service
from entitle.paywall.schemas import Paywall

router = APIRouter(prefix="/api/v1/paywall", tags=["paywall"])


@router.get("", response_model=Envelope[Paywall])
def get_paywall(
    key: CustomerQueryKey,
    db: DB,
    product_id: Annotated[str | None, Query(alias="productId", min_length=1, max_length=255)] = None,
    customer_id: Annotated[str | None, Query(alias="customerId", min_length=1, max_length=255)] = None,
    resource_id: Annotated[str | None, Query(alias="resourceId", min_length=1, max_length=255)] = None,
    billing_country_code: Annotated[str | None, Query(alias="billingCountryCode", min_length=1, max_length=16)] = None,
) -> dict[str, Any]:
    paywall = service.get_paywall(
        db,
        key.environment_id,
        product_ref=product_id,
        customer_ref=customer_id,
        resource_ref=resource_id,
        country=billing_country_code,
    )
    return envelope(paywall)
