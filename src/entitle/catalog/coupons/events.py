"""What happens to coupons, announced in the transaction that did it."""

from __future__ import annotations

from dataclasses import dataclass

from entitle.catalog.coupons.models import Coupon
from entitle.domain_events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class CouponCreated(DomainEvent):
    coupon: Coupon


@dataclass(frozen=True, kw_only=True)
class CouponArchived(DomainEvent):
    """Customers who hold it keep their discount; it can no longer be given."""

    coupon: Coupon
