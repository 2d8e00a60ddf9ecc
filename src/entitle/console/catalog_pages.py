"""What the catalog pages show (products, plans and add-ons with their versions, coupons), read through
the domains' own service functions, the same ones the API answers with."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from entitle.catalog.coupons import service as coupons
from entitle.catalog.coupons.models import Coupon
from entitle.catalog.features import service as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages import service as packages
from entitle.catalog.packages import versions
from entitle.catalog.packages.models import DRAFT, PLAN, Package, PackageCharge, PackageView
from entitle.catalog.packages.service import PackageKind
from entitle.catalog.products import service as products
from entitle.catalog.products.models import Product
from entitle.console import catalog_store
from entitle.console.catalog_rules import Difference, charge_lines, differences, entitlement_lines, setting_lines
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest
from entitle.errors import NotFound
from entitle.paywall import service as paywall
from entitle.paywall.schemas import Paywall, PaywallEntitlement

EVERYTHING = PageRequest(limit=100)


@dataclass(frozen=True)
class PricingPage:
    """A product's pricing page as the paywall serves it: its plans in their order, and what one
    package shows there (None while it has no published version)."""

    plans: list[tuple[str, str]]  # (id, display name), in the order pricing pages list them
    shown: list[PaywallEntitlement] | None = None
    # The product's chosen order (`planOrder`): its plans come first, the others follow by price.
    chosen: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [ref for ref, _ in self.plans]


def _pricing_page(
    db: Database, env_id: int, product_ref: str, kind: str | None, ref: str | None, chosen: list[str] | None = None
) -> PricingPage:
    try:
        found: Paywall = paywall.get_paywall(
            db, env_id, product_ref=product_ref, customer_ref=None, resource_ref=None, country=None
        )
    except NotFound:  # an archived product has no pricing page
        return PricingPage([])
    ordered = sorted(found.plans, key=lambda p: p.order)
    shown: list[PaywallEntitlement] | None = None
    for package in ordered if kind == PLAN else found.addons:
        if package.id == ref:
            shown = package.entitlements
    return PricingPage([(p.id, p.display_name) for p in ordered], shown, list(chosen or []))


@dataclass(frozen=True)
class PackagesPage:
    packages: Page[PackageView]
    products: list[Product]


def packages_page(
    db: Database, env_id: int, kind: PackageKind, page: PageRequest, product_ref: str | None, statuses: list[str] | None
) -> PackagesPage:
    found = packages.list_packages(db, env_id, kind, page, product_ref=product_ref, statuses=statuses)
    return PackagesPage(found, list(products.list_products(db, env_id, EVERYTHING).items))


@dataclass(frozen=True)
class ProductsPage:
    products: Page[Product]
    query: str
    statuses: list[str]


def products_page(db: Database, env_id: int, query: str, statuses: list[str] | None, page: PageRequest) -> ProductsPage:
    with db.read() as s:
        found = catalog_store.search_products(s, env_id, query.strip(), statuses, page)
    return ProductsPage(found, query, statuses or [])


@dataclass(frozen=True)
class ProductPage:
    product: Product
    plans: list[PackageView]
    addons: list[PackageView]
    pricing_page: PricingPage


def product_page(db: Database, env_id: int, ref: str) -> ProductPage:
    product = products.get_product(db, env_id, ref)
    plans = packages.list_packages(db, env_id, "PLAN", EVERYTHING, product_ref=ref).items
    addons = packages.list_packages(db, env_id, "ADDON", EVERYTHING, product_ref=ref).items
    pricing_page = _pricing_page(db, env_id, ref, None, None, product.plan_order)
    return ProductPage(product, list(plans), list(addons), pricing_page)


@dataclass(frozen=True)
class PackagePage:
    kind: PackageKind
    package: PackageView
    charges: list[PackageCharge]
    features: dict[str, Feature]
    # The same product's other plans (parent plan choices) and its add-ons (compatible add-ons, dependencies).
    plans: list[PackageView]
    addons: list[PackageView]
    versions: list[Package]
    pricing_page: PricingPage
    # A draft beside the version customers get: which version that is, and what the draft changes.
    published_version: int | None = None
    entitlement_changes: list[Difference] = field(default_factory=list)
    charge_changes: list[Difference] = field(default_factory=list)
    setting_changes: list[Difference] = field(default_factory=list)

    @property
    def is_draft(self) -> bool:
        return self.package.package.status == DRAFT

    @property
    def changed(self) -> bool:
        changes = self.entitlement_changes + self.charge_changes + self.setting_changes
        return any(d.change != "unchanged" for d in changes)


def package_page(db: Database, env_id: int, kind: PackageKind, ref: str) -> PackagePage:
    current = packages.get_package(db, env_id, kind, ref)
    detail = versions.get_version(db, env_id, kind, ref, current.package.version_number)
    product_ref = current.product_ref
    known = features.list_features(db, env_id, EVERYTHING, statuses=["NEW", "ACTIVE"]).items
    plans = packages.list_packages(db, env_id, "PLAN", EVERYTHING, product_ref=product_ref).items
    addons = packages.list_packages(db, env_id, "ADDON", EVERYTHING, product_ref=product_ref).items
    page = PackagePage(
        kind=kind,
        package=current,
        charges=detail.charges,
        features={f.ref_id: f for f in known},
        plans=[p for p in plans if p.package.ref_id != ref],
        addons=[a for a in addons if a.package.ref_id != ref],
        versions=versions.list_versions(db, env_id, kind, ref),
        pricing_page=_pricing_page(
            db, env_id, product_ref, kind, ref, products.get_product(db, env_id, product_ref).plan_order
        ),
    )
    if current.package.status != DRAFT:
        return page
    published = versions.latest_published(db, env_id, kind, ref)
    if published is None:
        return page
    return replace(
        page,
        published_version=published.view.package.version_number,
        entitlement_changes=differences(
            entitlement_lines(published.view.entitlements), entitlement_lines(current.entitlements)
        ),
        charge_changes=differences(charge_lines(published.charges), charge_lines(detail.charges)),
        setting_changes=differences(setting_lines(published.view.package), setting_lines(current.package)),
    )


@dataclass(frozen=True)
class VersionPage:
    kind: PackageKind
    detail: versions.VersionDetail
    current_version: int


def version_page(db: Database, env_id: int, kind: PackageKind, ref: str, number: int) -> VersionPage:
    all_versions = versions.list_versions(db, env_id, kind, ref)
    return VersionPage(kind, versions.get_version(db, env_id, kind, ref, number), all_versions[0].version_number)


@dataclass(frozen=True)
class CouponsPage:
    coupons: Page[Coupon]
    statuses: list[str]
    coupon_type: str | None


def coupons_page(
    db: Database, env_id: int, statuses: list[str] | None, coupon_type: str | None, page: PageRequest
) -> CouponsPage:
    found = coupons.list_coupons(db, env_id, page, statuses=statuses, coupon_type=coupon_type)
    return CouponsPage(found, statuses or [], coupon_type)
