"""What happens to usage, announced in the transaction that counted it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from entitle.domain_events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class UsageChanged(DomainEvent):
    """The current-window usage of a metered feature is now `current` (stream clients hear it)."""

    customer_ref: str
    resource_ref: str | None
    feature_ref: str
    current: Decimal


@dataclass(frozen=True, kw_only=True)
class UsageLimitHit(DomainEvent):
    """A hard limit was reached, or a soft limit (`soft`) exceeded, in the usage window starting at
    `window_start`. Usage is never refused for a limit (the check denies access instead), so `refused`
    is always False; it stays because the `usage.limit_reached` webhook payload carries it."""

    soft: bool
    customer_pk: int
    customer_ref: str
    feature_ref: str
    resource_ref: str | None
    window_start: datetime
    window_end: datetime | None
    limit: Decimal
    current: Decimal
    refused: bool = False
