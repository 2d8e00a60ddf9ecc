"""Coupon wire shapes (stigg/types/v1/coupon*.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from entitle.catalog.coupons.models import Coupon
from entitle.http.wire import Amount, LongText, Metadata, RefId, ShortText, WireModel
from entitle.money import CURRENCIES, Currency

CouponType = Literal["FIXED", "PERCENTAGE"]
COUPON_STATUSES: tuple[str, ...] = ("ACTIVE", "ARCHIVED")
COUPON_TYPES: tuple[str, ...] = ("FIXED", "PERCENTAGE")


class AmountOff(WireModel):
    amount: Amount
    currency: Currency


class CouponCreate(WireModel):
    """The client always sends every key, the unused ones as null; absent keys mean the same."""

    id: RefId
    name: ShortText = Field(min_length=1)
    description: LongText | None = None
    duration_in_months: int | None = Field(default=None, ge=1, le=1200, strict=True)
    metadata: Metadata | None = None
    percent_off: Amount | None = None
    amounts_off: list[AmountOff] | None = Field(default=None, max_length=len(CURRENCIES))


class CouponUpdate(WireModel):
    name: ShortText | None = Field(default=None, min_length=1)
    description: LongText | None = None
    metadata: Metadata | None = None


class AmountOffOut(WireModel):
    amount: Amount
    currency: str


class CouponOut(WireModel):
    id: str
    name: str
    status: str
    type: str
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    percent_off: Amount | None = None
    amounts_off: list[AmountOffOut] | None = None
    duration_in_months: int | None = None
    metadata: dict[str, str]
    source: str
    billing_id: str | None = None
    billing_link_url: str | None = None

    @classmethod
    def of(cls, c: Coupon) -> CouponOut:
        amounts: list[dict[str, Any]] | None = None
        if c.amounts_off is not None:
            amounts = [{"amount": Decimal(a["amount"]), "currency": a["currency"]} for a in c.amounts_off]
        return cls.model_validate(
            {
                "id": c.ref_id,
                "name": c.name,
                "status": c.status,
                "type": c.coupon_type,
                "created_at": c.created_at,
                "updated_at": c.updated_at,
                "description": c.description,
                "percent_off": c.percent_off,
                "amounts_off": amounts,
                "duration_in_months": c.duration_in_months,
                "metadata": c.metadata_ or {},
                "source": c.source,
                "billing_id": c.billing_id,
                "billing_link_url": c.billing_link_url,
            }
        )
