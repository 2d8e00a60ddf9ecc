"""Shared wire shapes: camelCase models, the `data` envelope, cursor pages, exact amounts, and the
markers that refuse contract fields Entitle does not implement (`Unsupported`, `unsupported_values`)."""

from __future__ import annotations

from decimal import Context, Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationInfo
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError
from starlette.responses import Response

T = TypeVar("T")


class WireModel(BaseModel):
    """Base of every request and response body: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _number(value: Decimal) -> int | float:
    # The contract's amounts are JSON numbers; inside we keep Decimal and only convert at the edge.
    return int(value) if value == value.to_integral_value() else float(value)


# Enough digits for the largest amount kept to 12 decimal places (24 + 12): the default context's 28
# would make quantizing a large amount with many decimals an InvalidOperation (a 500), not a rounding.
_AMOUNT_CONTEXT = Context(prec=40)


def _bounded(value: Decimal) -> Decimal:
    if abs(value) >= Decimal(10) ** 24:
        raise ValueError("amount is too large")
    if value.as_tuple().exponent < -12:  # type: ignore[operator]
        value = value.quantize(Decimal("1e-12"), context=_AMOUNT_CONTEXT)
        if abs(value) >= Decimal(10) ** 24:  # rounded up to the bound
            raise ValueError("amount is too large")
    return value


Amount = Annotated[
    Decimal,
    Field(allow_inf_nan=False),
    AfterValidator(_bounded),
    PlainSerializer(_number, return_type=int | float, when_used="json"),
]
# An Amount of at least 0 that may be left out: the bound sits on the number itself, so a nullable field's
# JSON schema shows it as `minimum` (a constraint added around Amount would not reach the number).
NonNegAmount = Annotated[
    Decimal,
    Field(allow_inf_nan=False, ge=0),
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


def _http_url(value: str) -> str:
    """An absolute http(s) URL a client library can use: a host, a port in range, no whitespace or control
    characters (a URL that only fails when it is used, in a job or a later request, is refused now)."""
    from urllib.parse import urlsplit

    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    bad_port = ValueError("the port must be a number from 1 to 65535")
    try:
        port = parts.port  # parsed lazily: an out-of-range or non-numeric port raises only here
    except ValueError:
        raise bad_port from None
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise bad_port
    if ":" not in parts.hostname and any(not label for label in parts.hostname.rstrip(".").split(".")):
        raise ValueError("the host name has an empty label")
    return value


HttpUrl = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_http_url)]


# -- fields of the contract Entitle does not implement ---------------------------------------------------
#
# A request field is honoured or refused, never accepted and dropped. A field Entitle does not implement
# is declared with `Unsupported[...]` (default None): sent with a value, the request gets 400
# UNSUPPORTED_FIELD naming its JSON path (`entitle.http.errors` turns the validation error into that
# answer); absent or null, it is fine. Implementing one is then a one-line change of its type (and the
# row of docs/compatibility.md that lists it). `unsupported_values` does the same for some values of a
# field that is otherwise honoured.

UNSUPPORTED_FIELD = "unsupported_field"
"""The pydantic error type both markers raise; the error handlers answer it with UNSUPPORTED_FIELD."""

STORED = {"stored": True}
"""Validation context for a request Entitle stored itself and reads back later (a scheduled plan change):
it may hold a field accepted before that field was refused. Such a field never had an effect, so it is
dropped instead of failing the stored change."""


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def refuse_value(value: Any, info: ValidationInfo) -> Any:
    """The check `Unsupported` installs (named, so a document generated from the models can leave the field out)."""
    if value is None or _stored(info):
        return None
    raise PydanticCustomError(UNSUPPORTED_FIELD, "not supported by Entitle yet; leave it out or send null")


Unsupported = Annotated[T | None, BeforeValidator(refuse_value)]
"""A contract field Entitle refuses when it carries a value: `price_overrides: Unsupported[list[X]] = None`.
Works on query parameters too: `Annotated[Unsupported[str], Query(alias="groupBy")] = None`."""


class RefusedValues:
    """The check `unsupported_values` installs; `refused` stays readable, so a document generated from the
    models (the Salesforce OpenAPI document) can leave those values out."""

    def __init__(self, refused: tuple[str, ...]) -> None:
        self.refused = refused

    def __call__(self, value: Any, info: ValidationInfo) -> Any:
        if value in self.refused and not _stored(info):
            raise PydanticCustomError(
                UNSUPPORTED_FIELD, "the value {value} is not supported by Entitle yet", {"value": value}
            )
        return value


def unsupported_values(*refused: str) -> AfterValidator:
    """Refuse these values of a field whose other values are honoured:
    `Annotated[Literal["FEATURE", "CREDIT"], unsupported_values("CREDIT")]`."""
    return AfterValidator(RefusedValues(refused))


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


def enveloped_response(data: BaseModel) -> Response:
    """`{"data": data}` written as the route's `response_model` would write it (camelCase, nulls kept),
    without what FastAPI does for a plain function's return value: validate the model just built
    again, in one more worker-thread hop, before writing it."""
    body = data.__pydantic_serializer__.to_json(data, by_alias=True)
    return Response(content=b'{"data":' + body + b"}", media_type="application/json")


def page_envelope(page: Any, convert: Any) -> dict[str, Any]:
    """`{"data": [...], "pagination": {"next", "prev"}}` from a store Page."""
    return {"data": [convert(item) for item in page.items], "pagination": {"next": page.next, "prev": page.prev}}
