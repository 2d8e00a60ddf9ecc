"""Public result types of the SDK: plain immutable values, no server imports."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Source(StrEnum):
    """Where an entitlement answer came from."""

    CACHE = "CACHE"  # the local cache, known to be current (kept fresh by the push stream or within its TTL)
    SERVER = "SERVER"  # fetched from the server for this call (a cache miss or an invalidated entry)
    STALE_CACHE = "STALE_CACHE"  # the server is unreachable: the last known state, possibly out of date
    FALLBACK = "FALLBACK"  # the server is unreachable and nothing is known: a configured fallback or "no access"


#: `access_denied_reason` of the default answer when the server is unreachable and there is neither a
#: last known state nor a configured fallback for the feature.
UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class FallbackEntitlement:
    """What to answer for a feature when the server is unreachable and nothing is cached.

    `has_access=False` denies; otherwise a requested usage above `usage_limit` (when set and not
    unlimited) or requested values outside `enum_values` (when set) are denied.
    """

    has_access: bool = True
    usage_limit: Decimal | int | None = None
    has_unlimited_usage: bool = False
    has_soft_limit: bool = False
    enum_values: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """Everything an `EntitlementResult` says but what was requested: one per state, feature and verdict
    in the cache, shared by every answer that verdict gives (see `EntitlementResult`)."""

    customer_id: str
    feature_id: str
    resource_id: str | None
    is_granted: bool
    source: Source
    access_denied_reason: str | None = None
    feature_type: str | None = None
    current_usage: Decimal | None = None
    usage_limit: Decimal | None = None
    has_unlimited_usage: bool = False
    has_soft_limit: bool = False
    enum_values: tuple[str, ...] | None = None
    reset_period: str | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None
    valid_until: datetime | None = None


_ANSWER_FIELDS = tuple(Answer.__dataclass_fields__)
FIELDS = (*_ANSWER_FIELDS[:12], "requested_usage", "requested_values", *_ANSWER_FIELDS[12:])


class EntitlementResult:
    """One feature's answer for one customer (and resource), computed locally or by the server.

    Immutable, compared and hashed by its fields (`FIELDS`), like a frozen dataclass. Not one: an answer
    is the request's two values (`requested_usage`, `requested_values`) beside a shared `Answer`, so the
    cache's hot path (`sdk/state.py::cached_answer`) makes one by setting three slots, a fraction of the
    cost of a frozen dataclass's `__init__` of eighteen fields (and a requested usage given as an int is
    made a Decimal only when read).
    """

    __slots__ = ("_answer", "_usage", "requested_values")
    _answer: Answer
    _usage: Decimal | int | float | None  # as requested: made a Decimal when read
    requested_values: tuple[str, ...] | None

    def __init__(
        self,
        customer_id: str,
        feature_id: str,
        resource_id: str | None,
        is_granted: bool,
        source: Source,
        access_denied_reason: str | None = None,
        feature_type: str | None = None,
        current_usage: Decimal | None = None,
        usage_limit: Decimal | None = None,
        has_unlimited_usage: bool = False,
        has_soft_limit: bool = False,
        enum_values: tuple[str, ...] | None = None,
        requested_usage: Decimal | None = None,
        requested_values: tuple[str, ...] | None = None,
        reset_period: str | None = None,
        usage_period_start: datetime | None = None,
        usage_period_end: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> None:
        answer = Answer(
            customer_id=customer_id,
            feature_id=feature_id,
            resource_id=resource_id,
            is_granted=is_granted,
            source=source,
            access_denied_reason=access_denied_reason,
            feature_type=feature_type,
            current_usage=current_usage,
            usage_limit=usage_limit,
            has_unlimited_usage=has_unlimited_usage,
            has_soft_limit=has_soft_limit,
            enum_values=enum_values,
            reset_period=reset_period,
            usage_period_start=usage_period_start,
            usage_period_end=usage_period_end,
            valid_until=valid_until,
        )
        _set_answer(self, answer)
        _set_usage(self, requested_usage)
        _set_values(self, requested_values)

    @classmethod
    def of(
        cls, answer: Answer, requested_usage: Decimal | int | float | None, requested_values: tuple[str, ...] | None
    ) -> EntitlementResult:
        """`answer` for this request (no copy of it)."""
        result = _new(cls)
        _set_answer(result, answer)
        _set_usage(result, requested_usage)
        _set_values(result, requested_values)
        return result

    @property
    def answer(self) -> Answer:
        return self._answer

    @property
    def requested_usage(self) -> Decimal | None:
        usage = self._usage
        if usage is None or type(usage) is Decimal:
            return usage
        return Decimal(usage) if isinstance(usage, int) else Decimal(str(usage))

    @property
    def customer_id(self) -> str:
        return self._answer.customer_id

    @property
    def feature_id(self) -> str:
        return self._answer.feature_id

    @property
    def resource_id(self) -> str | None:
        return self._answer.resource_id

    @property
    def is_granted(self) -> bool:
        return self._answer.is_granted

    @property
    def source(self) -> Source:
        return self._answer.source

    @property
    def access_denied_reason(self) -> str | None:
        return self._answer.access_denied_reason

    @property
    def feature_type(self) -> str | None:
        return self._answer.feature_type

    @property
    def current_usage(self) -> Decimal | None:
        return self._answer.current_usage

    @property
    def usage_limit(self) -> Decimal | None:
        return self._answer.usage_limit

    @property
    def has_unlimited_usage(self) -> bool:
        return self._answer.has_unlimited_usage

    @property
    def has_soft_limit(self) -> bool:
        return self._answer.has_soft_limit

    @property
    def enum_values(self) -> tuple[str, ...] | None:
        return self._answer.enum_values

    @property
    def reset_period(self) -> str | None:
        return self._answer.reset_period

    @property
    def usage_period_start(self) -> datetime | None:
        return self._answer.usage_period_start

    @property
    def usage_period_end(self) -> datetime | None:
        return self._answer.usage_period_end

    @property
    def valid_until(self) -> datetime | None:
        return self._answer.valid_until

    @property
    def has_access(self) -> bool:
        return self._answer.is_granted

    @property
    def is_stale(self) -> bool:
        return self.source in (Source.STALE_CACHE, Source.FALLBACK)

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in `FIELDS` order (what `dataclasses.asdict` gives for a dataclass)."""
        return {name: getattr(self, name) for name in FIELDS}

    def _key(self) -> tuple[Any, ...]:
        return (self._answer, self.requested_usage, self.requested_values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntitlementResult) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field '{name}'")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field '{name}'")

    def __reduce__(self) -> tuple[Any, ...]:
        return (EntitlementResult.of, (self._answer, self.requested_usage, self.requested_values))


# The slots' own setters: they bypass the frozen `__setattr__` (for `__init__` and the cache's hot path).
_new = object.__new__
_set_answer = vars(EntitlementResult)["_answer"].__set__
_set_usage = vars(EntitlementResult)["_usage"].__set__
_set_values = vars(EntitlementResult)["requested_values"].__set__


@dataclass(frozen=True, slots=True)
class ReportedUsage:
    """The server's answer to one usage report: the counter after it."""

    id: str
    customer_id: str
    feature_id: str
    resource_id: str | None
    value: Decimal
    current_usage: Decimal | None
    usage_period_start: datetime | None
    usage_period_end: datetime | None
    next_reset_date: datetime | None


class EntitleError(Exception):
    """The server refused a call (`status`, machine-readable `code`), or could not be reached."""

    def __init__(
        self,
        text: str,
        *,
        status: int | None = None,
        code: str | None = None,
        body: Any = None,
        message: str | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.body = body
        # The server's own message (its error envelope's), as docs/sdk.md promises beside `status` and
        # `code`; without an envelope (unreachable, a proxy's page), the text above.
        self.message = message if message is not None else text


class EntitleConnectionError(EntitleError):
    """The server could not be reached (connection refused, timeout, 5xx after retries)."""


@dataclass(frozen=True, slots=True)
class CreditBalance:
    """A customer's balance in one custom currency (`usage_limit - current_usage`; negative while
    overdrawn). `current_usage` counts what active reservations hold (`reserved`)."""

    customer_id: str
    currency_id: str
    resource_id: str | None
    usage_limit: Decimal
    current_usage: Decimal
    reserved: Decimal
    source: Source

    @property
    def balance(self) -> Decimal:
        return self.usage_limit - self.current_usage


@dataclass(frozen=True, slots=True)
class CreditReservation:
    """The answer to `reserve`: granted with the hold placed, or refused (`InsufficientCredits`)."""

    is_granted: bool
    access_denied_reason: str | None
    reservation_id: str | None
    amount: Decimal | None
    expires_at: datetime | None
    status: str | None  # ACTIVE, or RELEASED once `release`d
    consumed_amount: Decimal | None
    balance: CreditBalance
