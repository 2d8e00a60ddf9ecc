"""Catalog sync through the outbox: a published plan or add-on version becomes a provider product and prices.

1. `package_published` runs inside the publish transaction: when the environment has an integration,
   it marks the version's link PENDING and enqueues one `billing.sync_package` job (the job exists if
   and only if the publish committed). Jobs of one plan or add-on run in publish order (ordering key).
2. The job reads the version, its charges and what the nearest earlier synced version got, calls the
   provider (outside any transaction) with idempotency keys derived from the job, and records the
   product and price ids in `billing_links` (SUCCESS; NO_SYNC_REQUIRED with the reason for a free or
   custom-priced version, and for a charge the provider does not bill — a minimum spend, credits; ERROR
   with the reason for a charge whose amounts the provider cannot reproduce exactly, e.g. fractional
   tier bounds). The charge -> price mapping is `rules.charge_shape` (docs/stripe.md, "Charge kinds").
3. A failed call leaves the version's link ERROR with the provider's message and re-raises, so the job
   queue retries with backoff and finally dead-letters the job; a retry replays the provider's saved
   answers to the calls that had already gone through, so nothing is created twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.billing import rules, store, usage_sync
from entitle.billing.models import (
    ERROR,
    NO_SYNC_REQUIRED,
    PACKAGE,
    PACKAGE_CHARGE,
    PENDING,
    STRIPE,
    SUCCESS,
    BillingLink,
    Integration,
)
from entitle.billing.provider import CatalogEntity, Interval, PriceSpec, SyncedCatalogEntity, SyncedPrice
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import ADDON, PLAN, Package, PackageCharge
from entitle.catalog.products.models import Product
from entitle.config import console_page_url, load_settings
from entitle.db import Database
from entitle.environments.models import Environment
from entitle.jobs.service import JobContext, enqueue, register

SYNC_PACKAGE_JOB = "billing.sync_package"
SUPPORTED_MODELS = ("FLAT_FEE", "PER_UNIT", "USAGE_BASED", "CREDIT_BASED")  # CREDIT_BASED: credit charges
INTERVALS: dict[str, Interval] = {"MONTHLY": "month", "ANNUALLY": "year"}
PATHS = {PLAN: "plans", ADDON: "addons"}


def entity_name(product: Product, package: Package) -> str:
    """`<Product> <Plan> Plan` or `<Product> <Add-on> Add-on`."""
    return f"{product.display_name} {package.display_name} {'Plan' if package.kind == PLAN else 'Add-on'}"


def package_published(session: Session, env_id: int, package: Package) -> None:
    """On `PackagePublished`, in the publishing transaction: enqueue the sync to every connected integration
    (each provider account needs its own products and prices)."""
    for integration in store.active_integrations(session, env_id, STRIPE):
        enqueue_package_sync(session, integration, package)


def enqueue_package_sync(session: Session, integration: Integration, package: Package) -> None:
    product = session.get(Product, package.product_pk)
    assert product is not None
    store.put_link(session, integration, PACKAGE, package.pk, PENDING)
    ref_digest = hashlib.sha256(package.ref_id.encode()).hexdigest()[:32]
    enqueue(
        session,
        package.environment_id,
        SYNC_PACKAGE_JOB,
        # Names are taken now, so every retry sends the provider the same parameters (an idempotent
        # replay must match the first request) even if a display name is edited meanwhile.
        {
            "integrationPk": integration.pk,
            "packagePk": package.pk,
            "name": entity_name(product, package),
            "description": package.description,
        },
        ordering_key=f"billing:{integration.pk}:{package.kind}:{ref_digest}",
        dedupe_key=f"billing-sync:{integration.pk}:{PACKAGE}:{package.pk}",
    )


@dataclass(frozen=True)
class _Plan:
    """What one run of the job will do, read in one short transaction."""

    entity: CatalogEntity
    previous: SyncedCatalogEntity | None
    archive_replaced: bool
    charge_pks: dict[str, int]  # price key (charge id) -> package_charges.pk
    unsupported: dict[int, str]  # package_charges.pk -> why the provider cannot bill it (ERROR)
    no_sync_reason: str | None
    not_billed: dict[int, str] = field(default_factory=dict)  # package_charges.pk -> why (NO_SYNC_REQUIRED)


@register(SYNC_PACKAGE_JOB)
def sync_package(db: Database, ctx: JobContext) -> None:
    settings = load_settings()
    box = secret_box(settings.data_dir)
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        package = s.get(Package, int(ctx.payload["packagePk"]))
        if integration is None or package is None or integration.environment_id != ctx.environment_id:
            return  # disconnected, or the package is gone: nothing left to sync
        done = store.link(s, integration.pk, PACKAGE, package.pk)
        if done is not None and done.sync_state in (SUCCESS, NO_SYNC_REQUIRED):
            return  # recorded by an earlier run
        plan = _read(s, integration, package, ctx.payload, settings.console_base_url)
    if plan.no_sync_reason is not None:
        with db.transaction() as s:
            store.put_link(s, integration, PACKAGE, package.pk, NO_SYNC_REQUIRED, reason=plan.no_sync_reason)
        return
    provider = provider_for(integration, box)
    try:
        synced = provider.sync_catalog_entity(
            plan.entity, plan.previous, archive_replaced=plan.archive_replaced, idempotency_key=ctx.idempotency_key
        )
    except Exception as exc:
        with db.transaction() as s:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            store.put_link(s, integration, PACKAGE, package.pk, ERROR, reason=f"{reason} (attempt {ctx.attempt})")
        raise
    _record(db, integration, package, plan, synced)


def _read(s: Session, integration: Integration, package: Package, payload: dict[str, Any], console: str) -> _Plan:
    env = s.get(Environment, package.environment_id)
    product = s.get(Product, package.product_pk)
    assert env is not None and product is not None
    url = console_page_url(console, package.kind, package.ref_id)
    common = {
        "entitleEntityUrl": url,
        "entitleEnvironment": env.name,
        "entitleEntityType": package.kind,
        "entitleEntityId": package.ref_id,
        "entitleProductId": product.ref_id,
        "entitleVersion": str(package.version_number),
    }
    entity_kind = cast(Literal["PLAN", "ADDON"], package.kind)
    if package.pricing_type in ("FREE", "CUSTOM"):
        reason = f"{package.pricing_type.lower()} {PATHS[package.kind][:-1]}: nothing to bill through the provider"
        return _Plan(CatalogEntity(entity_kind, payload["name"], None, {}, ()), None, False, {}, {}, reason)
    specs: list[PriceSpec] = []
    charge_pks: dict[str, int] = {}
    unsupported: dict[int, str] = {}
    not_billed: dict[int, str] = {}
    for charge in packages.charges_of(s, package.pk):
        why_not = rules.not_billed(charge)
        if why_not is not None:
            not_billed[charge.pk] = why_not
            continue
        spec_or_reason = _price_spec(package, charge, common)
        if isinstance(spec_or_reason, str):
            unsupported[charge.pk] = spec_or_reason
        else:
            specs.append(spec_or_reason)
            charge_pks[spec_or_reason.key] = charge.pk
    entity = CatalogEntity(
        kind=entity_kind,
        name=payload["name"],
        description=payload.get("description") or None,
        metadata=rules.clip_metadata(common),
        prices=tuple(specs),
    )
    previous, earlier = _previous(s, integration, package)
    return _Plan(entity, previous, earlier and package.is_latest, charge_pks, unsupported, None, not_billed)


def _price_spec(package: Package, charge: PackageCharge, common: dict[str, str]) -> PriceSpec | str:
    """The provider price of one charge (`rules.charge_shape`: per unit, per block, tiered; metered on
    the feature's meter for a usage-based or overage charge), or why the provider cannot bill it."""
    if charge.billing_model not in SUPPORTED_MODELS:
        return f"{charge.billing_model} charges have no provider price"
    shape = rules.charge_shape(charge)
    if isinstance(shape, str):
        return f"the provider cannot bill this charge exactly: {shape}"
    meter = None
    if charge.billing_model == "USAGE_BASED":
        if not charge.feature_ref or charge.billing_cadence == "ONE_OFF":
            return "a usage-based charge needs a metered feature and a recurring period"
        # A metered price backed by the feature's provider meter (usage reported by usage_sync); an
        # overage charge has its own meter, fed only the usage past the included amount.
        meter = usage_sync.meter_spec(common["entitleEnvironment"], charge.feature_ref, overage=charge.is_overage)
    currency = rules.charge_currency(charge)
    interval = None if charge.billing_cadence == "ONE_OFF" else INTERVALS[charge.billing_period]
    country = f" {charge.billing_country_code}" if charge.billing_country_code else ""
    metadata = {
        **common,
        "entitleChargeId": charge.charge_id,
        "entitleBillingModel": charge.billing_model,
        "entitleBillingPeriod": charge.billing_period,
    }
    if charge.is_overage:
        metadata["entitleOverage"] = "true"
    if charge.billing_country_code:
        metadata["entitleCountry"] = charge.billing_country_code
    period = {"MONTHLY": "monthly", "ANNUALLY": "annual"}.get(charge.billing_period, charge.billing_period.lower())
    overage = " overage" if charge.is_overage else ""
    return PriceSpec(
        key=charge.charge_id,
        currency=currency,
        unit_amount_minor=shape.unit_amount_minor if shape.unit_amount_minor is not None else Decimal(0),
        interval=interval,
        nickname=f"{package.display_name}{overage} {period}{country}"[:250],
        metadata=rules.clip_metadata(metadata),
        meter=meter,
        tiers=shape.tiers,
        tiers_mode=shape.tiers_mode,
        divide_by=shape.divide_by,
    )


def _previous(s: Session, integration: Integration, package: Package) -> tuple[SyncedCatalogEntity | None, bool]:
    """What the nearest earlier synced version got (and True), else a later one's product only (and False).

    A later version is synced first only when this version's job was dead and retried afterwards: it
    then reuses that version's product but neither reuses nor archives its prices.
    """
    rows = s.execute(
        select(Package, BillingLink)
        .join(BillingLink, BillingLink.entity_pk == Package.pk)
        .where(
            Package.environment_id == package.environment_id,
            Package.kind == package.kind,
            Package.ref_id == package.ref_id,
            Package.pk != package.pk,
            BillingLink.integration_pk == integration.pk,
            BillingLink.entity_kind == PACKAGE,
            BillingLink.sync_state == SUCCESS,
        )
        .order_by(Package.version_number.desc())
    ).all()
    if not rows:
        return None, False
    earlier = [(v, link) for v, link in rows if v.version_number < package.version_number]
    version, product_link = earlier[0] if earlier else rows[0]
    assert product_link.billing_id is not None
    prices: dict[str, SyncedPrice] = {}
    if earlier:
        charges = {c.pk: c for c in packages.charges_of(s, version.pk)}
        for pk, charge_link in store.links(s, integration.pk, PACKAGE_CHARGE, charges).items():
            if charge_link.sync_state == SUCCESS and charge_link.billing_id:
                fingerprint = dict(charge_link.details.get("fingerprint") or {})
                prices[charges[pk].charge_id] = SyncedPrice(charge_link.billing_id, fingerprint)
    return SyncedCatalogEntity(product_id=product_link.billing_id, prices=prices), bool(earlier)


def _record(
    db: Database, integration: Integration, package: Package, plan: _Plan, synced: SyncedCatalogEntity | None
) -> None:
    with db.transaction() as s:
        if synced is None:
            store.put_link(s, integration, PACKAGE, package.pk, NO_SYNC_REQUIRED, reason="no billing provider")
            return
        for key, charge_pk in plan.charge_pks.items():
            price = synced.prices[key]
            store.put_link(
                s,
                integration,
                PACKAGE_CHARGE,
                charge_pk,
                SUCCESS,
                billing_id=price.billing_id,
                details={"fingerprint": price.fingerprint},
            )
        for charge_pk, reason in plan.unsupported.items():
            store.put_link(s, integration, PACKAGE_CHARGE, charge_pk, ERROR, reason=reason)
        for charge_pk, reason in plan.not_billed.items():
            store.put_link(s, integration, PACKAGE_CHARGE, charge_pk, NO_SYNC_REQUIRED, reason=reason)
        for old in store.links_by_billing_id(s, integration.pk, PACKAGE_CHARGE, synced.archived):
            old.details = {**old.details, "archived": True}
        store.put_link(
            s,
            integration,
            PACKAGE,
            package.pk,
            SUCCESS,
            billing_id=synced.product_id,
            details={"name": plan.entity.name},
        )
