"""Raw event wire shapes (stigg/types/v1/event_report_params.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, Strict

from entitle.http.wire import RefId, WireModel


def _utc(value: datetime) -> datetime:
    """Naive means UTC (as the official client sends it); an offset that moves the instant out of
    years 1-9999 is refused here, naming the field, rather than failing later."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the date is outside the supported range") from exc


# Which instants may be counted is a rule of time (`entitle.events.rules`), checked by the services.
UsageInstant = Annotated[datetime, AfterValidator(_utc)]
# Meters read numbers out of dimensions: NaN and infinities are not numbers a counter can hold.
DimensionNumber = Annotated[float, Field(allow_inf_nan=False)]
# Each member strict and tried in order: a JSON string is a string, true/false a boolean, any other number a
# number, as the default "smart" union decides, without first trying every member (a batch of 1,000 events
# holds thousands of dimension values; this is a fifth of validating it).
DimensionValue = Annotated[
    Annotated[str, Strict(), Field(max_length=1024, pattern=r"^[^\x00]*$")]
    | Annotated[bool, Strict()]
    | Annotated[DimensionNumber, Strict()],
    Field(union_mode="left_to_right"),
]
DimensionKey = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]

MAX_EVENTS_PER_REQUEST = 5000


class EventIn(WireModel):
    customer_id: RefId
    event_name: RefId
    idempotency_key: RefId
    dimensions: dict[DimensionKey, DimensionValue] | None = Field(default=None, max_length=100)
    resource_id: RefId | None = None
    timestamp: UsageInstant | None = None


class EventsReport(WireModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class EventsReported(WireModel):
    """Our extension of the acknowledgement (the official client treats `data` as opaque): how many
    events of the batch were stored now, and how many were dropped as duplicates of an idempotency
    key already stored (earlier, or earlier in the same batch)."""

    new: int
    duplicates: int
