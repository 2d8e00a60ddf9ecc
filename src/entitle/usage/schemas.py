"""Usage wire shapes (stigg/types/v1/usage_*.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PlainSerializer

from entitle.events.schemas import DimensionKey, DimensionValue, UsageInstant
from entitle.http.wire import RefId, Unsupported, WireModel
from entitle.usage.rules import RANGE_TEXT, usage_number


def _usage_value(value: Decimal) -> Decimal:
    kept = usage_number(value)
    if kept is None:
        raise ValueError(f"must be {RANGE_TEXT}")
    return kept


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


# A usage value on the way in: within the documented range, 12 decimal places (see `entitle.usage.rules`).
UsageValue = Annotated[Decimal, Field(allow_inf_nan=False), AfterValidator(_usage_value)]
# A usage value on the way out: whatever was stored is answered (never a failed read), as a JSON number.
Reading = Annotated[Decimal, PlainSerializer(_number, return_type=int | float, when_used="json")]


class UsageIn(WireModel):
    customer_id: RefId
    feature_id: RefId
    value: UsageValue
    idempotency_key: RefId | None = None
    created_at: UsageInstant | None = None
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
    value: Reading
    created_at: datetime
    timestamp: datetime
    current_usage: Reading | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None
    next_reset_date: datetime | None = None
    resource_id: str | None = None


class UsageReportResult(WireModel):
    usages: list[UsageOut]


class HistoryPoint(WireModel):
    timestamp: datetime
    value: Reading
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
