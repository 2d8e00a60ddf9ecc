"""What happens to promotional entitlements, announced in the transaction that did it."""

from __future__ import annotations

from dataclasses import dataclass

from entitle.domain_events import DomainEvent
from entitle.promotions.models import PromotionalEntitlement


@dataclass(frozen=True, kw_only=True)
class PromotionEvent(DomainEvent):
    customer_ref: str
    rows: tuple[PromotionalEntitlement, ...]


@dataclass(frozen=True, kw_only=True)
class PromotionsGranted(PromotionEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class PromotionsRevoked(PromotionEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class PromotionExpired(PromotionEvent):
    """A promotion reached its end date (one row)."""
