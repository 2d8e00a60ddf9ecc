"""Raw event wire shapes (stigg/types/v1/event_report_params.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from entitle.http.wire import RefId, WireModel

DimensionValue = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00]*$")] | bool | float
DimensionKey = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]

MAX_EVENTS_PER_REQUEST = 5000


class EventIn(WireModel):
    customer_id: RefId
    event_name: RefId
    idempotency_key: RefId
    dimensions: dict[DimensionKey, DimensionValue] | None = Field(default=None, max_length=100)
    resource_id: RefId | None = None
    timestamp: datetime | None = None


class EventsReport(WireModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)
