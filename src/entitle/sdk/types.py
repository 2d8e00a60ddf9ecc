"""Public result types of the SDK: plain dataclasses, no server imports."""

from __future__ import annotations

from dataclasses import dataclass
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
class EntitlementResult:
    """One feature's answer for one customer (and resource), computed locally or by the server."""

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
    requested_usage: Decimal | None = None
    requested_values: tuple[str, ...] | None = None
    reset_period: str | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None
    valid_until: datetime | None = None

    @property
    def has_access(self) -> bool:
        return self.is_granted

    @property
    def is_stale(self) -> bool:
        return self.source in (Source.STALE_CACHE, Source.FALLBACK)


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

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body


class EntitleConnectionError(EntitleError):
    """The server could not be reached (connection refused, timeout, 5xx after retries)."""
