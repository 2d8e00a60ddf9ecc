"""Shared wire shapes: camelCase models, the `data` envelope, cursor pages, exact amounts."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class WireModel(BaseModel):
    """Base of every request and response body: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _number(value: Decimal) -> int | float:
    # The contract's amounts are JSON numbers; inside we keep Decimal and only convert at the edge.
    return int(value) if value == value.to_integral_value() else float(value)


def _bounded(value: Decimal) -> Decimal:
    if abs(value) >= Decimal(10) ** 24:
        raise ValueError("amount is too large")
    if value.as_tuple().exponent < -12:  # type: ignore[operator]
        value = value.quantize(Decimal("1e-12"))
    return value


Amount = Annotated[
    Decimal,
    Field(allow_inf_nan=False),
    AfterValidator(_bounded),
    PlainSerializer(_number, return_type=int | float, when_used="json"),
]

# Identifiers chosen by the customer ("plan-pro"). NUL is refused: PostgreSQL text cannot hold it.
RefId = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")]
ShortText = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00]*$")]
LongText = Annotated[str, Field(max_length=10_000, pattern=r"^[^\x00]*$")]
Metadata = dict[
    Annotated[str, Field(max_length=255, pattern=r"^[^\x00]*$")],
    Annotated[str, Field(max_length=5000, pattern=r"^[^\x00]*$")],
]
Int64 = Annotated[int, Field(ge=-(2**53), le=2**53)]
NonNegInt = Annotated[int, Field(ge=0, le=2**53)]


class Envelope(WireModel, Generic[T]):
    data: T


class Pagination(WireModel):
    next: str | None = None
    prev: str | None = None


class PageEnvelope(WireModel, Generic[T]):
    data: list[T]
    pagination: Pagination


class IdOnly(WireModel):
    id: str


class TaskResult(WireModel):
    task_id: str | None = None


def envelope(data: Any) -> dict[str, Any]:
    return {"data": data}


def page_envelope(page: Any, convert: Any) -> dict[str, Any]:
    """`{"data": [...], "pagination": {"next", "prev"}}` from a store Page."""
    return {"data": [convert(item) for item in page.items], "pagination": {"next": page.next, "prev": page.prev}}
