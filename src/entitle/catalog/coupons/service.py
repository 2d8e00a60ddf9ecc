"""Coupon use cases, one transaction each. A coupon is a discount: a percentage, or fixed amounts per currency."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from entitle.catalog.coupons import store
from entitle.catalog.coupons.events import CouponArchived, CouponCreated
from entitle.catalog.coupons.models import Coupon
from entitle.catalog.coupons.schemas import AmountOff, CouponCreate, CouponUpdate
from entitle.clock import utcnow
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.domain_events import publish
from entitle.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from entitle.money import minor_unit_exponent

_PERCENT_PLACES = 2
_HUNDRED = Decimal(100)


def _amounts(items: list[AmountOff]) -> list[dict[str, Any]]:
    if not items:
        raise InvalidArgument("amountsOff needs at least one amount")
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for item in items:
        if item.currency in seen:
            raise InvalidArgument(f"amountsOff lists currency {item.currency} twice")
        seen.add(item.currency)
        if item.amount <= 0:
            raise InvalidArgument(f"amountsOff {item.currency}: the amount must be greater than 0")
        exponent = minor_unit_exponent(item.currency)
        if item.amount != item.amount.quantize(Decimal(1).scaleb(-exponent)):
            raise InvalidArgument(f"amountsOff {item.currency}: at most {exponent} decimal place(s) for this currency")
        # A decimal string: JSON keeps it exact, where a number would pass through a float.
        out.append({"currency": item.currency, "amount": format(item.amount.normalize(), "f")})
    return out


def _discount(req: CouponCreate) -> tuple[str, Decimal | None, list[dict[str, Any]] | None]:
    if (req.percent_off is None) == (req.amounts_off is None):
        raise InvalidArgument("provide exactly one of percentOff or amountsOff")
    if req.percent_off is not None:
        if not 0 < req.percent_off <= _HUNDRED:
            raise InvalidArgument("percentOff must be greater than 0 and at most 100")
        # Stripe keeps a coupon's percentage to two decimal places: a finer one would be rounded there (or
        # refused by the sync, after the coupon was acknowledged here), and invoices would disagree with us.
        exponent = req.percent_off.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -_PERCENT_PLACES:
            raise InvalidArgument(f"percentOff: at most {_PERCENT_PLACES} decimal places")
        return "PERCENTAGE", req.percent_off, None
    return "FIXED", None, _amounts(req.amounts_off or [])


def create_coupon(db: Database, env_id: int, req: CouponCreate) -> Coupon:
    coupon_type, percent_off, amounts_off = _discount(req)
    with db.transaction() as s:
        if store.find(s, env_id, req.id) is not None:
            raise AlreadyExists("coupon", req.id)
        coupon = Coupon(
            environment_id=env_id,
            ref_id=req.id,
            name=req.name,
            description=req.description,
            coupon_type=coupon_type,
            percent_off=percent_off,
            amounts_off=amounts_off,
            duration_in_months=req.duration_in_months,
            metadata_=dict(req.metadata or {}),
            status="ACTIVE",
            source="STIGG",
        )
        s.add(coupon)
        s.flush()
        publish(s, CouponCreated(env_id=env_id, coupon=coupon))
        return coupon


def get_coupon(db: Database, env_id: int, ref_id: str) -> Coupon:
    with db.read() as s:
        return store.get(s, env_id, ref_id)


def update_coupon(db: Database, env_id: int, ref_id: str, req: CouponUpdate) -> Coupon:
    """Name, description and metadata only: the discount itself never changes once customers may hold it."""
    fields = req.model_fields_set
    with db.transaction() as s:
        coupon = store.get(s, env_id, ref_id)
        if coupon.status == "ARCHIVED":
            raise FailedPrecondition(f"coupon '{ref_id}' is archived")
        if "name" in fields and req.name is not None:
            coupon.name = req.name
        if "description" in fields:
            coupon.description = req.description
        if "metadata" in fields:
            coupon.metadata_ = dict(req.metadata or {})
        coupon.updated_at = utcnow()
        return coupon


def list_coupons(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    ids: list[str] | None = None,
    statuses: list[str] | None = None,
    coupon_type: str | None = None,
    created_at: CreatedAtRange = CreatedAtRange(),
) -> Page[Coupon]:
    with db.read() as s:
        return store.list_page(
            s, env_id, page, ids=ids, statuses=statuses, coupon_type=coupon_type, created_at=created_at
        )


def archive_coupon(db: Database, env_id: int, ref_id: str) -> Coupon:
    """Idempotent; an archived coupon stays readable but can no longer be given to customers."""
    with db.transaction() as s:
        coupon = store.get(s, env_id, ref_id)
        if coupon.status != "ARCHIVED":
            coupon.status = "ARCHIVED"
            coupon.updated_at = utcnow()
            publish(s, CouponArchived(env_id=env_id, coupon=coupon))
        return coupon
