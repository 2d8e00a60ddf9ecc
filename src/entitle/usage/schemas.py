"""Usage wire shapes (stigg/types/v1/usage_*.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from entitle.events.schemas import DimensionKey, DimensionValue
from entitle.http.wire import Amount, RefId, Unsupported, WireModel


class UsageIn(WireModel):
    customer_id: RefId
    feature_id: RefId
    value: Amount
    idempotency_key: RefId | None = None
    created_at: datetime | None = None
    # Reported usage is counted, not metered: its dimensions would be kept nowhere (events carry dimensions).
    dimensions: Unsupported[dict[DimensionKey, DimensionValue]] = Field(default=None, max_length=100)
    resource_id: RefId | None = None
    update_behavior: Literal["DELTA", "SET"] = "DELTA"


class UsageReport(WireModel):
    usages: list[UsageIn] = Field(min_length=1, max_length=1000)


class UsageOut(WireModel):
    id: str
    customer_id: str
    feature_id: str
    value: Amount
    created_at: datetime
    timestamp: datetime
    current_usage: Amount | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None
    next_reset_date: datetime | None = None
    resource_id: str | None = None


class UsageReportResult(WireModel):
    usages: list[UsageOut]


class HistoryPoint(WireModel):
    timestamp: datetime
    value: Amount
    is_reset_point: bool


class HistoryTag(WireModel):
    key: str
    value: str


class HistorySeries(WireModel):
    tags: list[HistoryTag]
    points: list[HistoryPoint]


class HistoryMarker(WireModel):
    timestamp: datetime
    type: Literal["PERIODIC_RESET", "SUBSCRIPTION_CHANGE_RESET"]


class UsageHistory(WireModel):
    series: list[HistorySeries]
    markers: list[HistoryMarker]
