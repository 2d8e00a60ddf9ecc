"""Product wire shapes (stigg/types/v1/product*.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from entitle.catalog.products.models import Product
from entitle.http.wire import LongText, Metadata, RefId, ShortText, Unsupported, WireModel

PRODUCT_STATUSES: tuple[str, ...] = ("PUBLISHED", "ARCHIVED")
PLAN_ORDER_MAX = 500


class ProductSettingsOut(WireModel):
    subscription_cancellation_time: Literal["END_OF_BILLING_PERIOD", "IMMEDIATE", "SPECIFIC_DATE"]
    subscription_end_setup: Literal["DOWNGRADE_TO_FREE", "CANCEL_SUBSCRIPTION"]
    subscription_start_setup: Literal["PLAN_SELECTION", "TRIAL_PERIOD", "FREE_PLAN"]
    downgrade_plan_id: RefId | None = None
    subscription_start_plan_id: RefId | None = None
    prorate_at_end_of_billing_period: bool | None = None


class ProductSettings(ProductSettingsOut):
    # A cancellation at period end charges nothing more; there is no proration at the end to choose.
    prorate_at_end_of_billing_period: Unsupported[bool] = None


class UsageResetCutoffRule(WireModel):
    behavior: Literal["NEVER_RESET", "ALWAYS_RESET", "BILLING_PERIOD_CHANGE"]


class ProductCreate(WireModel):
    id: RefId
    display_name: ShortText = Field(min_length=1)
    description: LongText | None = None
    metadata: Metadata | None = None
    multiple_subscriptions: bool = False


class ProductUpdate(WireModel):
    display_name: ShortText | None = Field(default=None, min_length=1)
    description: LongText | None = None
    metadata: Metadata | None = None
    multiple_subscriptions: bool | None = None
    product_settings: ProductSettings | None = None
    # Usage resets follow each entitlement's reset period; a plan change never resets usage early.
    usage_reset_cutoff_rule: Unsupported[UsageResetCutoffRule] = None
    # Our extension: the plans pricing pages list first, in this order (null or [] clears it).
    plan_order: list[RefId] | None = Field(default=None, max_length=PLAN_ORDER_MAX)


class ProductDuplicate(WireModel):
    target_id: RefId
    display_name: ShortText | None = Field(default=None, min_length=1)
    description: LongText | None = None


class ProductOut(WireModel):
    id: str
    display_name: str
    metadata: dict[str, str]
    multiple_subscriptions: bool
    status: str
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    product_settings: ProductSettingsOut | None = None
    usage_reset_cutoff_rule: UsageResetCutoffRule | None = None
    # Our extension (see ProductUpdate.plan_order).
    plan_order: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, p: Product) -> ProductOut:
        data: dict[str, Any] = {
            "id": p.ref_id,
            "display_name": p.display_name,
            "metadata": p.metadata_ or {},
            "multiple_subscriptions": p.multiple_subscriptions,
            "status": p.status,
            "created_at": p.created_at,
            "updated_at": p.updated_at,
            "description": p.description,
            "product_settings": p.product_settings,
            "usage_reset_cutoff_rule": p.usage_reset_cutoff_rule,
            "plan_order": list(p.plan_order or []),
        }
        return cls.model_validate(data)
