"""Raw event wire shapes (stigg/types/v1/event_report_params.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired

from pydantic import AfterValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

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


Dimensions = Annotated[dict[DimensionKey, DimensionValue] | None, Field(max_length=100)]


@with_config(ConfigDict(extra="forbid"))
class EventItem(TypedDict):
    """An event of a batch as validated on the hot path: `EventIn`'s fields under their wire names, as a
    plain dict. Validating a batch into dicts costs about two thirds of building a model per event (a
    batch holds 1,000); `EventsBody` falls back to `EventsReport` for anything this refuses, so a
    refusal, and what the models accept besides (their Python field names), stays theirs."""

    customerId: RefId
    eventName: RefId
    idempotencyKey: RefId
    dimensions: NotRequired[Dimensions]
    resourceId: NotRequired[RefId | None]
    timestamp: NotRequired[UsageInstant | None]


@with_config(ConfigDict(extra="forbid"))
class _EventItems(TypedDict):
    events: Annotated[list[EventItem], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]


# `EventItem` without the patterns that refuse control characters (a regular expression per string, a
# quarter of validating a batch): JSON cannot hold a control character in a string but as an escape,
# which begins with a backslash, so a body without one needs none of them (`event_items`).
_PlainRef = Annotated[str, Field(min_length=1, max_length=255)]
_PlainValue = Annotated[
    Annotated[str, Strict(), Field(max_length=1024)] | Annotated[bool, Strict()] | Annotated[DimensionNumber, Strict()],
    Field(union_mode="left_to_right"),
]
_PlainKey = Annotated[str, Field(min_length=1, max_length=255)]


@with_config(ConfigDict(extra="forbid"))
class _PlainItem(TypedDict):
    customerId: _PlainRef
    eventName: _PlainRef
    idempotencyKey: _PlainRef
    dimensions: NotRequired[Annotated[dict[_PlainKey, _PlainValue] | None, Field(max_length=100)]]
    resourceId: NotRequired[_PlainRef | None]
    timestamp: NotRequired[UsageInstant | None]


@with_config(ConfigDict(extra="forbid"))
class _PlainItems(TypedDict):
    events: Annotated[list[_PlainItem], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]


_ITEMS = TypeAdapter(_EventItems)
_PLAIN_ITEMS = TypeAdapter(_PlainItems)


def event_items(raw: bytes) -> list[EventItem] | None:
    """A batch's events validated as `EventItem`s; None when the fast shape refuses them (`EventsReport`
    then decides: it refuses with its own errors, or accepts what only it accepts)."""
    try:
        if b"\\" in raw:
            return _ITEMS.validate_json(raw)["events"]
        # Validated alike: the JSON parser refuses a control character written as itself in a string.
        plain: list[Any] = _PLAIN_ITEMS.validate_json(raw)["events"]
        return plain
    except ValidationError:
        return None


def item_of(event: EventIn) -> EventItem:
    """An `EventIn` as the hot path's `EventItem`."""
    item: dict[str, Any] = {
        "customerId": event.customer_id,
        "eventName": event.event_name,
        "idempotencyKey": event.idempotency_key,
        "dimensions": event.dimensions,
        "resourceId": event.resource_id,
        "timestamp": event.timestamp,
    }
    return item  # type: ignore[return-value]


class EventsReported(WireModel):
    """Our extension of the acknowledgement (the official client treats `data` as opaque): how many
    events of the batch were stored now, and how many were dropped as duplicates of an idempotency
    key already stored (earlier, or earlier in the same batch)."""

    new: int
    duplicates: int
