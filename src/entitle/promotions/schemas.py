"""Promotional entitlement wire shapes (stigg/types/v1/customers/promotional_entitlement_*.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, model_validator

from entitle.catalog.packages.schemas import ResetFields
from entitle.http.wire import Amount, LongText, RefId, ShortText, WireModel
from entitle.promotions.models import PromotionalEntitlement

PromoPeriod = Literal["1 week", "1 month", "6 month", "1 year", "lifetime", "custom"]
PROMO_STATUSES: tuple[str, ...] = ("Active", "Expired", "Paused")


class PromotionIn(ResetFields):
    feature_id: RefId
    period: PromoPeriod
    custom_end_date: datetime | None = None
    usage_limit: int | None = Field(default=None, ge=0, le=2**53)
    has_unlimited_usage: bool | None = None
    has_soft_limit: bool | None = None
    is_visible: bool | None = None
    enum_values: list[ShortText] | None = Field(default=None, max_length=500)
    description: LongText | None = None

    @model_validator(mode="after")
    def _reset_configuration_matches(self) -> PromotionIn:
        given = {
            "MONTH": self.monthly_reset_period_configuration,
            "WEEK": self.weekly_reset_period_configuration,
            "YEAR": self.yearly_reset_period_configuration,
        }
        for period, config in given.items():
            if config is not None and self.reset_period != period:
                raise ValueError(f"a {period.lower()}ly reset configuration needs resetPeriod {period}")
        return self

    def reset_configuration(self) -> dict[str, Any] | None:
        config = {
            "MONTH": self.monthly_reset_period_configuration,
            "WEEK": self.weekly_reset_period_configuration,
            "YEAR": self.yearly_reset_period_configuration,
        }.get(self.reset_period or "")
        return config.model_dump(by_alias=True) if config is not None else None


class PromotionsGrant(WireModel):
    promotional_entitlements: list[PromotionIn] = Field(min_length=1, max_length=200)


class PromotionOut(WireModel):
    id: str
    feature_id: str
    environment_id: str
    period: str
    status: str
    is_visible: bool
    start_date: datetime
    created_at: datetime
    updated_at: datetime
    end_date: datetime | None = None
    usage_limit: Amount | None = None
    has_unlimited_usage: bool | None = None
    has_soft_limit: bool | None = None
    enum_values: list[str] | None = None
    reset_period: str | None = None
    reset_period_configuration: dict[str, Any] | None = None
    description: str | None = None
    feature_group_ids: list[str] | None = None

    @classmethod
    def of(cls, p: PromotionalEntitlement, environment: str, now: datetime) -> PromotionOut:
        return cls(
            id=str(p.pk),
            feature_id=p.feature_ref,
            environment_id=environment,
            period=p.period,
            status=p.status_at(now),
            is_visible=p.is_visible,
            start_date=p.start_date,
            created_at=p.created_at,
            updated_at=p.updated_at,
            end_date=p.end_date,
            usage_limit=Decimal(p.usage_limit) if p.usage_limit is not None else None,
            has_unlimited_usage=p.has_unlimited_usage,
            has_soft_limit=p.has_soft_limit,
            enum_values=p.enum_values,
            reset_period=p.reset_period,
            reset_period_configuration=p.reset_period_configuration,
            description=p.description,
        )
