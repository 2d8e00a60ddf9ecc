"""Custom currencies: what credits are counted in ("AI credits"). One transaction per use case."""

from __future__ import annotations

from sqlalchemy import or_, select

from entitle.catalog.packages.models import Package, PackageCharge, PackageEntitlement
from entitle.clock import utcnow
from entitle.credits import store
from entitle.credits.events import CurrencyChanged
from entitle.credits.models import CustomCurrency
from entitle.credits.schemas import AssociatedEntityOut, CurrencyCreate, CurrencyOut, CurrencyUpdate, UnitsOut
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest
from entitle.domain_events import publish
from entitle.errors import AlreadyExists, FailedPrecondition


def out(c: CustomCurrency) -> CurrencyOut:
    units = None
    if c.unit_singular is not None or c.unit_plural is not None:
        units = UnitsOut(singular=c.unit_singular, plural=c.unit_plural)
    return CurrencyOut(
        id=c.ref_id,
        display_name=c.display_name,
        description=c.description,
        symbol=c.symbol,
        units=units,
        metadata=c.metadata_ or {},
        created_at=c.created_at,
        updated_at=c.updated_at,
        archived_at=c.archived_at,
    )


def get_currency(db: Database, env_id: int, ref_id: str) -> CurrencyOut:
    with db.read() as s:
        return out(store.get_currency(s, env_id, ref_id))


def create_currency(db: Database, env_id: int, req: CurrencyCreate) -> CurrencyOut:
    with db.transaction() as s:
        if store.find_currency(s, env_id, req.id) is not None:
            raise AlreadyExists("custom currency", req.id)
        currency = CustomCurrency(
            environment_id=env_id,
            ref_id=req.id,
            display_name=req.display_name,
            description=req.description or None,
            symbol=req.symbol or None,
            unit_singular=req.units.singular if req.units else None,
            unit_plural=req.units.plural if req.units else None,
            metadata_=dict(req.metadata or {}),
        )
        s.add(currency)
        s.flush()
        publish(s, CurrencyChanged(env_id=env_id, currency_ref=req.id))
        return out(currency)


def update_currency(db: Database, env_id: int, ref_id: str, req: CurrencyUpdate) -> CurrencyOut:
    fields = req.model_fields_set
    with db.transaction() as s:
        currency = store.get_currency(s, env_id, ref_id)
        if currency.archived_at is not None:
            raise FailedPrecondition(f"custom currency '{ref_id}' is archived; unarchive it first")
        if "display_name" in fields and req.display_name is not None:
            currency.display_name = req.display_name
        if "description" in fields:
            currency.description = req.description or None
        if "symbol" in fields:
            currency.symbol = req.symbol or None
        if "metadata" in fields:
            currency.metadata_ = dict(req.metadata or {})
        if "units" in fields and req.units is not None:
            currency.unit_singular, currency.unit_plural = req.units.singular, req.units.plural
        currency.updated_at = utcnow()
        publish(s, CurrencyChanged(env_id=env_id, currency_ref=ref_id))
        return out(currency)


def list_currencies(db: Database, env_id: int, page: PageRequest, statuses: list[str] | None) -> Page[CurrencyOut]:
    with db.read() as s:
        found = store.list_currencies(s, env_id, page, statuses or ["ACTIVE"])
        return Page([out(c) for c in found.items], found.next, found.prev)


def set_archived(db: Database, env_id: int, ref_id: str, archived: bool) -> CurrencyOut:
    """Idempotent. An archived currency takes no new grants; existing balances stay usable."""
    with db.transaction() as s:
        currency = store.get_currency(s, env_id, ref_id)
        if (currency.archived_at is not None) != archived:
            currency.archived_at = utcnow() if archived else None
            currency.updated_at = utcnow()
            publish(s, CurrencyChanged(env_id=env_id, currency_ref=ref_id))
        publish(s, CurrencyChanged(env_id=env_id, currency_ref=ref_id))
        return out(currency)


def associated_entities(db: Database, env_id: int, ref_id: str) -> list[AssociatedEntityOut]:
    """Plans and add-ons whose current versions grant or price in this currency."""
    with db.read() as s:
        store.get_currency(s, env_id, ref_id)
        entitled = select(PackageEntitlement.package_pk).where(
            PackageEntitlement.environment_id == env_id,
            PackageEntitlement.entitlement_type == "CREDIT",
            PackageEntitlement.ref_id == ref_id,
        )
        priced = select(PackageCharge.package_pk).where(
            PackageCharge.environment_id == env_id,
            or_(
                PackageCharge.credit_rate_currency_ref == ref_id,
                PackageCharge.top_up_custom_currency_ref == ref_id,
                PackageCharge.custom_currency_ref == ref_id,
            ),
        )
        rows = s.scalars(
            select(Package)
            .where(Package.pk.in_(entitled.union(priced)), Package.status != "ARCHIVED")
            .order_by(Package.kind.desc(), Package.ref_id, Package.version_number.desc())
        )
        seen: set[tuple[str, str]] = set()
        found: list[AssociatedEntityOut] = []
        for p in rows:
            if (p.kind, p.ref_id) in seen:
                continue
            seen.add((p.kind, p.ref_id))
            kind = "Plan" if p.kind == "PLAN" else "Addon"
            found.append(AssociatedEntityOut(id=p.ref_id, display_name=p.display_name, type=kind))
        return found
