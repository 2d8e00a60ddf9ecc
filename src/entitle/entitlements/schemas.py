"""EntitlementResult (stigg/types/v1/customer_check_entitlement_response.py and friends)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from entitle.credits.schemas import CreditCheckResult
from entitle.http.wire import WireModel
from entitle.usage.schemas import Reading


class FeatureRef(WireModel):
    id: str
    display_name: str
    feature_status: str
    feature_type: str
    feature_units: str | None = None
    feature_units_plural: str | None = None


class EntitlementResult(WireModel):
    """Amounts are answered as stored (`Reading`): what was accepted can always be read back."""

    type: Literal["FEATURE"] = "FEATURE"
    is_granted: bool
    access_denied_reason: str | None = None
    current_usage: Reading | None = None
    usage_limit: Reading | None = None
    has_unlimited_usage: bool | None = None
    has_soft_limit: bool | None = None
    enum_values: list[str] | None = None
    requested_usage: Reading | None = None
    requested_values: list[str] | None = None
    reset_period: str | None = None
    usage_period_anchor: datetime | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None
    valid_until: datetime | None = None
    entitlement_updated_at: datetime | None = None
    feature: FeatureRef | None = None


class CustomerEntitlements(WireModel):
    """The features first (by id, each as its check answers it), then the CREDIT entitlements (by currency
    id, each as the currency check answers it)."""

    entitlements: list[Annotated[EntitlementResult | CreditCheckResult, Field(discriminator="type")]]
    access_denied_reason: str | None = None
    # Entitle's own (docs/credits.md): the listed features priced in credits, whose answer follows a balance
    # the FEATURE result does not show; the SDK asks the server for them instead of answering from its cache.
    credit_priced_features: list[str] = Field(default_factory=list)
