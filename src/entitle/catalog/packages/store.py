"""Plans and add-ons storage: versions, their entitlements and charges.

The *current* version of a package is its highest version: the draft when there is one, otherwise
the latest published (or, once archived, the last) version. It is what GET and lists show.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, bindparam, exists, or_, select, text
from sqlalchemy.orm import Session, aliased

from entitle.catalog.packages.models import (
    ADDON,
    ARCHIVED,
    DRAFT,
    PLAN,
    PUBLISHED,
    Package,
    PackageCharge,
    PackageEntitlement,
    PackageView,
)
from entitle.catalog.products.models import Product
from entitle.clock import utcnow
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, paginate
from entitle.errors import AlreadyExists, InvalidArgument, NotFound

NOUNS = {PLAN: "plan", ADDON: "addon"}


def new_charge_id() -> str:
    return f"charge-{uuid.uuid4().hex}"


# ---------------------------------------------------------------------------------------------- versions


def _storable(ref: str) -> bool:
    """Ids come from paths and query strings unchecked; PostgreSQL text cannot hold NUL, so an id with
    one cannot exist (and must not reach the database, which would refuse the query)."""
    return "\x00" not in ref


def versions(session: Session, env_id: int, kind: str, ref_id: str, *, for_update: bool = False) -> list[Package]:
    """Every version of one package, oldest first."""
    if not _storable(ref_id):
        return []
    stmt = (
        select(Package)
        .where(Package.environment_id == env_id, Package.kind == kind, Package.ref_id == ref_id)
        .order_by(Package.version_number)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return list(session.scalars(stmt))


def current(session: Session, env_id: int, kind: str, ref_id: str, *, for_update: bool = False) -> Package | None:
    found = versions(session, env_id, kind, ref_id, for_update=for_update)
    return found[-1] if found else None


def get_current(session: Session, env_id: int, kind: str, ref_id: str, *, for_update: bool = False) -> Package:
    package = current(session, env_id, kind, ref_id, for_update=for_update)
    if package is None:
        raise NotFound(NOUNS[kind], ref_id)
    return package


def holder_of(session: Session, env_id: int, ref_id: str) -> str | None:
    """The kind (PLAN or ADDON) of the package, archived or not, that holds the id in the environment;
    None when it is free. One id names one package: subscriptions, widgets and the console find a plan
    or an add-on by its id alone."""
    if not _storable(ref_id):
        return None
    return session.scalars(
        select(Package.kind)
        .where(Package.environment_id == env_id, Package.kind.in_((PLAN, ADDON)), Package.ref_id == ref_id)
        .limit(1)
    ).first()


def claim_id(session: Session, env_id: int, ref_id: str) -> None:
    """Refuse (409 ALREADY_EXISTS) an id a plan or add-on of the environment holds, and keep it free until
    this transaction ends. SQLite runs one write transaction at a time; on PostgreSQL two transactions
    creating a plan and an add-on of one id would each find it free (no unique key spans the two kinds, and
    one cannot be added while older databases may hold such pairs), so they queue on a transaction lock of
    the (environment, id), in the two-key space no other lock of Entitle uses."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.blake2b(ref_id.encode(), digest_size=4).digest()
        session.execute(
            text("SELECT pg_advisory_xact_lock(:env, :ref)"),
            {"env": env_id, "ref": int.from_bytes(digest, "big", signed=True)},
        )
    held = holder_of(session, env_id, ref_id)
    if held is not None:
        raise AlreadyExists(NOUNS[held], ref_id)


# Built once (its cache key is memoized on it): provisioning reads the plan on every request.
_LATEST_PUBLISHED = select(Package).where(
    Package.environment_id == bindparam("env_id"),
    Package.kind == bindparam("kind"),
    Package.ref_id == bindparam("ref_id"),
    Package.status == PUBLISHED,
    Package.is_latest.is_(True),
)


def latest_published(session: Session, env_id: int, kind: str, ref_id: str) -> Package | None:
    if not _storable(ref_id):
        return None
    return session.scalars(_LATEST_PUBLISHED, {"env_id": env_id, "kind": kind, "ref_id": ref_id}).one_or_none()


def _is_current(pkg: type[Package]) -> ColumnElement[bool]:
    higher = aliased(Package)
    return ~exists().where(
        higher.environment_id == pkg.environment_id,
        higher.kind == pkg.kind,
        higher.ref_id == pkg.ref_id,
        higher.version_number > pkg.version_number,
    )


def current_many(session: Session, env_id: int, kind: str, ref_ids: Iterable[str]) -> dict[str, Package]:
    refs = {r for r in ref_ids if _storable(r)}
    if not refs:
        return {}
    rows = session.scalars(
        select(Package).where(
            Package.environment_id == env_id,
            Package.kind == kind,
            Package.ref_id.in_(refs),
            _is_current(Package),
        )
    )
    return {p.ref_id: p for p in rows}


def current_in_product(session: Session, env_id: int, kind: str, product_pk: int) -> list[Package]:
    """The current version of every package of a product, oldest package first."""
    rows = session.scalars(
        select(Package)
        .where(
            Package.environment_id == env_id,
            Package.kind == kind,
            Package.product_pk == product_pk,
            _is_current(Package),
        )
        .order_by(Package.pk)
    )
    return list(rows)


def live_heads_in_product(session: Session, env_id: int, kind: str, product_pk: int) -> list[Package]:
    """For each package of the product that is not archived: its current version (the draft, if
    any) and its latest published version. These are the versions whose references (parent plan,
    compatible add-ons, dependencies) still matter for new business; older published versions only
    serve the subscriptions already on them."""
    rows = session.scalars(
        select(Package)
        .where(
            Package.environment_id == env_id,
            Package.kind == kind,
            Package.product_pk == product_pk,
            Package.status != ARCHIVED,
        )
        .order_by(Package.ref_id, Package.version_number)
    )
    by_ref: dict[str, list[Package]] = {}
    for row in rows:
        by_ref.setdefault(row.ref_id, []).append(row)
    heads: list[Package] = []
    for group in by_ref.values():
        heads.extend(v for v in group if v is group[-1] or (v.is_latest and v.status == PUBLISHED))
    return heads


def list_page(
    session: Session,
    env_id: int,
    kind: str,
    page: PageRequest,
    *,
    product_ref: str | None,
    statuses: list[str] | None,
    created_at: CreatedAtRange,
) -> Page[Package]:
    """One page of packages, each once, in creation order of the package (its version 1, which is
    never deleted), filtered on its current version. The page holds version-1 rows; the caller maps
    them to current versions with `current_many`, so cursors stay stable while drafts come and go."""
    cur = aliased(Package)
    matches = select(cur.pk).where(
        cur.environment_id == Package.environment_id,
        cur.kind == Package.kind,
        cur.ref_id == Package.ref_id,
        _is_current(cur),
    )
    if statuses:
        matches = matches.where(cur.status.in_(statuses))
    matches = created_at.apply(matches, cur.created_at)
    stmt = select(Package).where(
        Package.environment_id == env_id,
        Package.kind == kind,
        Package.version_number == 1,
        matches.exists(),
    )
    if product_ref is not None:
        if not _storable(product_ref):
            return Page(items=[], next=None, prev=None)
        stmt = stmt.where(
            Package.product_pk.in_(
                select(Product.pk).where(Product.environment_id == env_id, Product.ref_id == product_ref)
            )
        )
    return paginate(session, stmt, Package.pk, page)


def plan_chain(session: Session, env_id: int, plan: Package) -> list[Package]:
    """`[plan, parent, grandparent, ...]`: the given version, then the latest published version of
    each ancestor, for `rules.effective_package_entitlements`. Stops at a parent that has no published
    version, and before any plan already in the chain (publishing refuses cycles; this is a guard)."""
    chain = [plan]
    seen = {plan.ref_id}
    parent_ref = plan.parent_plan_ref
    while parent_ref is not None and parent_ref not in seen:
        parent = latest_published(session, env_id, PLAN, parent_ref)
        if parent is None:
            break
        chain.append(parent)
        seen.add(parent_ref)
        parent_ref = parent.parent_plan_ref
    return chain


# ---------------------------------------------------------------------------------------------- contents


def entitlements_of(session: Session, package_pk: int) -> list[PackageEntitlement]:
    return list(
        session.scalars(
            select(PackageEntitlement)
            .where(PackageEntitlement.package_pk == package_pk)
            .order_by(PackageEntitlement.pk)
        )
    )


def entitlements_of_many(session: Session, package_pks: Iterable[int]) -> dict[int, list[PackageEntitlement]]:
    """`entitlements_of` for several versions in one query."""
    wanted = set(package_pks)
    found: dict[int, list[PackageEntitlement]] = {pk: [] for pk in wanted}
    if wanted:
        rows = session.scalars(
            select(PackageEntitlement).where(PackageEntitlement.package_pk.in_(wanted)).order_by(PackageEntitlement.pk)
        )
        for row in rows:
            found[row.package_pk].append(row)
    return found


_CHARGES_OF = (
    select(PackageCharge).where(PackageCharge.package_pk == bindparam("package_pk")).order_by(PackageCharge.pk)
)


def charges_of(session: Session, package_pk: int) -> list[PackageCharge]:
    return list(session.scalars(_CHARGES_OF, {"package_pk": package_pk}))


def charges_page(session: Session, package_pk: int, *, overage: bool, page: PageRequest) -> Page[PackageCharge]:
    stmt = select(PackageCharge).where(PackageCharge.package_pk == package_pk, PackageCharge.is_overage.is_(overage))
    return paginate(session, stmt, PackageCharge.pk, page)


def views(session: Session, packages: list[Package]) -> list[PackageView]:
    """Attach product ids and entitlements to package rows (two queries for any number of rows)."""
    if not packages:
        return []
    found = session.execute(select(Product.pk, Product.ref_id).where(Product.pk.in_({p.product_pk for p in packages})))
    product_refs: dict[int, str] = {pk: ref for pk, ref in found}
    by_package: dict[int, list[PackageEntitlement]] = {p.pk: [] for p in packages}
    rows = session.scalars(
        select(PackageEntitlement)
        .where(PackageEntitlement.package_pk.in_(list(by_package)))
        .order_by(PackageEntitlement.pk)
    )
    for row in rows:
        by_package[row.package_pk].append(row)
    return [PackageView(p, product_refs[p.product_pk], by_package[p.pk]) for p in packages]


def view(session: Session, package: Package) -> PackageView:
    return views(session, [package])[0]


# ---------------------------------------------------------------------------------------------- writes


def copy_version(
    session: Session,
    source: Package,
    *,
    version_number: int,
    ref_id: str | None = None,
    product_pk: int | None = None,
) -> Package:
    """A new DRAFT version copied from `source`, with its entitlements and charges (charges keep their
    ids within one package; a copy into another package gets new ids)."""
    now = utcnow()
    same_package = ref_id is None or ref_id == source.ref_id
    copy = Package(
        environment_id=source.environment_id,
        kind=source.kind,
        ref_id=ref_id or source.ref_id,
        product_pk=product_pk or source.product_pk,
        version_number=version_number,
        status=DRAFT,
        is_latest=False,
        display_name=source.display_name,
        description=source.description,
        billing_id=source.billing_id,
        metadata_=dict(source.metadata_ or {}),
        pricing_type=source.pricing_type,
        parent_plan_ref=source.parent_plan_ref,
        compatible_addon_ids=list(source.compatible_addon_ids) if source.compatible_addon_ids is not None else None,
        default_trial_config=dict(source.default_trial_config) if source.default_trial_config else None,
        max_quantity=source.max_quantity,
        dependencies=list(source.dependencies) if source.dependencies is not None else None,
        overage_billing_period=source.overage_billing_period,
        pricing_billing_id=source.pricing_billing_id,
        created_at=now,
        updated_at=now,
    )
    session.add(copy)
    session.flush()
    for e in entitlements_of(session, source.pk):
        session.add(
            PackageEntitlement(
                environment_id=e.environment_id,
                package_pk=copy.pk,
                entitlement_type=e.entitlement_type,
                ref_id=e.ref_id,
                behavior=e.behavior,
                is_granted=e.is_granted,
                hidden_from_widgets=list(e.hidden_from_widgets or []),
                is_custom=e.is_custom,
                order=e.order,
                description=e.description,
                display_name_override=e.display_name_override,
                has_soft_limit=e.has_soft_limit,
                usage_limit=e.usage_limit,
                has_unlimited_usage=e.has_unlimited_usage,
                reset_period=e.reset_period,
                reset_period_configuration=e.reset_period_configuration,
                enum_values=list(e.enum_values) if e.enum_values is not None else None,
                amount=e.amount,
                cadence=e.cadence,
                dependency_feature_ref=e.dependency_feature_ref,
                created_at=now,
                updated_at=now,
            )
        )
    for c in charges_of(session, source.pk):
        session.add(
            PackageCharge(
                environment_id=c.environment_id,
                package_pk=copy.pk,
                charge_id=c.charge_id if same_package else new_charge_id(),
                is_overage=c.is_overage,
                billing_model=c.billing_model,
                billing_cadence=c.billing_cadence,
                billing_period=c.billing_period,
                billing_country_code=c.billing_country_code,
                feature_ref=c.feature_ref,
                price_amount=c.price_amount,
                price_currency=c.price_currency,
                tiers=c.tiers,
                tiers_mode=c.tiers_mode,
                block_size=c.block_size,
                min_unit_quantity=c.min_unit_quantity,
                max_unit_quantity=c.max_unit_quantity,
                reset_period=c.reset_period,
                reset_period_configuration=c.reset_period_configuration,
                credit_grant_cadence=c.credit_grant_cadence,
                credit_rate_amount=c.credit_rate_amount,
                credit_rate_currency_ref=c.credit_rate_currency_ref,
                credit_rate_cost_formula=c.credit_rate_cost_formula,
                top_up_custom_currency_ref=c.top_up_custom_currency_ref,
                custom_currency_ref=c.custom_currency_ref,
                billing_id=c.billing_id,
                created_at=now,
                updated_at=now,
            )
        )
    session.flush()
    return copy


def archive_versions(session: Session, all_versions: list[Package]) -> None:
    """Archive a package: every version becomes ARCHIVED, except that a draft of a package that was
    published is discarded (a never-published package is only its draft, which is archived)."""
    now = utcnow()
    was_published = any(v.status == PUBLISHED for v in all_versions)
    for v in all_versions:
        if v.status == DRAFT and was_published:
            session.delete(v)
        elif v.status != ARCHIVED:
            v.status = ARCHIVED
            v.updated_at = now
    session.flush()


# ------------------------------------------------------------------------------------- used by products, features


def feature_in_use(session: Session, env_id: int, feature_ref: str) -> set[str]:
    """Packages (any version that is not archived) whose entitlements or prices use the feature,
    as "plan 'x'" / "addon 'y'" labels."""
    by_entitlement = (
        select(Package.kind, Package.ref_id)
        .join(PackageEntitlement, PackageEntitlement.package_pk == Package.pk)
        .where(
            Package.environment_id == env_id,
            Package.status != ARCHIVED,
            or_(
                and_(PackageEntitlement.entitlement_type == "FEATURE", PackageEntitlement.ref_id == feature_ref),
                PackageEntitlement.dependency_feature_ref == feature_ref,
            ),
        )
    )
    by_charge = (
        select(Package.kind, Package.ref_id)
        .join(PackageCharge, PackageCharge.package_pk == Package.pk)
        .where(Package.environment_id == env_id, Package.status != ARCHIVED, PackageCharge.feature_ref == feature_ref)
    )
    users: set[str] = set()
    for stmt in (by_entitlement, by_charge):
        for kind, ref in session.execute(stmt).all():
            users.add(f"{NOUNS[kind]} '{ref}'")
    return users


def plan_product_ref(session: Session, env_id: int, plan_ref: str) -> str | None:
    """The product of a plan that is not archived; None when there is no such plan (products use this
    to check downgradePlanId / subscriptionStartPlanId)."""
    plan = current(session, env_id, PLAN, plan_ref)
    if plan is None or plan.status == ARCHIVED:
        return None
    product = session.get(Product, plan.product_pk)
    return product.ref_id if product is not None else None


def archive_product_packages(session: Session, env_id: int, product_pk: int) -> None:
    """Archiving a product archives all its plans and add-ons (drafts of published ones are discarded).
    The per-package refusals (parent of a live plan, ...) do not apply: everything goes together. Each
    version it archives keeps the status it had, for `restore_product_packages`."""
    rows = session.scalars(
        select(Package)
        .where(Package.environment_id == env_id, Package.product_pk == product_pk)
        .order_by(Package.kind, Package.ref_id, Package.version_number)
        .with_for_update()
    )
    grouped: dict[tuple[str, str], list[Package]] = {}
    for row in rows:
        grouped.setdefault((row.kind, row.ref_id), []).append(row)
    for group in grouped.values():
        for version in group:
            if version.status != ARCHIVED:
                version.archived_from_status = version.status
        archive_versions(session, group)


def restore_product_packages(session: Session, env_id: int, product_pk: int) -> list[str]:
    """Unarchiving a product: every version its archive archived gets back the status it had (a published
    version PUBLISHED, the latest one still latest; a never-published package its draft); a package that
    was archived on its own stays archived. Returns the plans brought back."""
    rows = session.scalars(
        select(Package)
        .where(
            Package.environment_id == env_id,
            Package.product_pk == product_pk,
            Package.archived_from_status.is_not(None),
        )
        .order_by(Package.pk)
        .with_for_update()
    )
    now = utcnow()
    plans: list[str] = []
    for version in rows:
        version.status = version.archived_from_status or version.status
        version.archived_from_status = None
        version.updated_at = now
        if version.kind == PLAN and version.ref_id not in plans:
            plans.append(version.ref_id)
    session.flush()
    return plans


def duplicate_product_packages(session: Session, env_id: int, source_product_pk: int, target_product_pk: int) -> None:
    """Copy the plans and add-ons of a product (each one's current version, archived ones skipped) into
    another product, as version-1 drafts with ids prefixed by the target product's id:
    plan 'pro' of a product duplicated as 'acme-v2' becomes 'acme-v2-pro'. Parent plans, compatible
    add-ons, add-on dependencies and the product's plan order are re-pointed at the copies."""
    target = session.get(Product, target_product_pk)
    if target is None:
        raise NotFound("product", str(target_product_pk))
    sources = {
        kind: [p for p in current_in_product(session, env_id, kind, source_product_pk) if p.status != ARCHIVED]
        for kind in (PLAN, ADDON)
    }
    renamed = {kind: {p.ref_id: f"{target.ref_id}-{p.ref_id}" for p in rows} for kind, rows in sources.items()}
    for kind, rows in sources.items():
        for source in rows:
            new_ref = renamed[kind][source.ref_id]
            if len(new_ref) > 255:
                raise InvalidArgument(
                    f"the copy of {NOUNS[kind]} '{source.ref_id}' would get an id over 255 characters"
                )
            claim_id(session, env_id, new_ref)
            copy = copy_version(session, source, version_number=1, ref_id=new_ref, product_pk=target_product_pk)
            if copy.parent_plan_ref is not None:
                copy.parent_plan_ref = renamed[PLAN].get(copy.parent_plan_ref)
            if copy.compatible_addon_ids is not None:
                copy.compatible_addon_ids = [
                    renamed[ADDON][a] for a in copy.compatible_addon_ids if a in renamed[ADDON]
                ]
            if copy.dependencies is not None:
                copy.dependencies = [renamed[ADDON][a] for a in copy.dependencies if a in renamed[ADDON]]
    source_product = session.get(Product, source_product_pk)
    if source_product is not None and source_product.plan_order:
        # The copy's pricing pages list its plans as the source's do.
        target.plan_order = [renamed[PLAN][r] for r in source_product.plan_order if r in renamed[PLAN]] or None
    session.flush()
