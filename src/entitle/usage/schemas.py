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


class UsageCreditOut(WireModel):
    """The credits one usage of a credit-priced feature drew (0 for a replayed report) and the balance after."""

    consumed: Reading
    currency_id: str
    current_usage: Reading
    usage_limit: Reading
    timestamp: datetime
    usage_period_end: datetime | None = None


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
    credit: UsageCreditOut | None = None


class WalletBalanceOut(WireModel):
    """v2: one wallet's balance after the request, listed once however many measurements drew from it."""

    currency_id: str
    customer_id: str
    current_usage: Reading
    usage_limit: Reading
    timestamp: datetime
    resource_id: str | None = None
    usage_period_end: datetime | None = None


class UsageReportResult(WireModel):
    usages: list[UsageOut]
    credits: list[WalletBalanceOut] | None = None

    @classmethod
    def of(cls, usages: list[UsageOut]) -> UsageReportResult:
        """The last balance each wallet (customer, resource, currency) reached in the request."""
        wallets: dict[tuple[str, str | None, str], WalletBalanceOut] = {}
        for u in usages:
            if u.credit is not None:
                wallets[(u.customer_id, u.resource_id, u.credit.currency_id)] = WalletBalanceOut(
                    currency_id=u.credit.currency_id,
                    customer_id=u.customer_id,
                    current_usage=u.credit.current_usage,
                    usage_limit=u.credit.usage_limit,
                    timestamp=u.credit.timestamp,
                    resource_id=u.resource_id,
                    usage_period_end=u.credit.usage_period_end,
                )
        return cls(usages=usages, credits=list(wallets.values()) or None)


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
