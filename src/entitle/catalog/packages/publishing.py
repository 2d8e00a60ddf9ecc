"""Drafts, publishing and archiving of plans and add-ons: a published version never changes; a draft is
the next version, validated as a whole when it is published."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages import rules, store
from entitle.catalog.packages.events import PackagePublished, ParentPlansChanged
from entitle.catalog.packages.models import (
    ADDON,
    ARCHIVED,
    DRAFT,
    PLAN,
    PUBLISHED,
    Package,
    PackageView,
)
from entitle.catalog.packages.service import (
    MIGRATE_SUBSCRIPTIONS_JOB,
    NOUNS,
    PATHS,
    PackageKind,
    check_dependency_cycle,
    feature_shape,
    package_label,
)
from entitle.catalog.products.models import Product
from entitle.clock import utcnow
from entitle.db import Database
from entitle.domain_events import publish
from entitle.errors import FailedPrecondition, InvalidArgument, NotFound
from entitle.jobs import service as jobs


def create_draft(db: Database, env_id: int, kind: PackageKind, ref: str) -> PackageView:
    """The package's draft: the existing one, or a copy of the latest published version as N+1."""
    with db.transaction() as s:
        package = store.get_current(s, env_id, kind, ref, for_update=True)
        if package.status == DRAFT:
            return store.view(s, package)
        if package.status == ARCHIVED:
            raise FailedPrecondition(f"{package_label(kind, ref)} is archived")
        draft = store.copy_version(s, package, version_number=package.version_number + 1)
        return store.view(s, draft)


def remove_draft(db: Database, env_id: int, kind: PackageKind, ref: str) -> str:
    """Discard the draft; the latest published version becomes current again. Returns the id."""
    with db.transaction() as s:
        all_versions = store.versions(s, env_id, kind, ref, for_update=True)
        if not all_versions:
            raise NotFound(NOUNS[kind], ref)
        draft = all_versions[-1]
        if draft.status == ARCHIVED:
            raise FailedPrecondition(f"{package_label(kind, ref)} is archived")
        if draft.status != DRAFT:
            raise NotFound(f"draft of {NOUNS[kind]}", ref)
        if not any(v.status == PUBLISHED for v in all_versions):
            raise FailedPrecondition(
                f"{package_label(kind, ref)} has never been published, so its draft is all there is; archive it instead"
            )
        s.delete(draft)
        return ref


def publish_package(db: Database, env_id: int, kind: PackageKind, ref: str, migration_type: str) -> str:
    """Publish the draft (validated by `_check_publishable`); returns the task id.

    The previous latest version stays PUBLISHED with isLatest false. NEW_CUSTOMERS leaves existing
    subscriptions where they are; ALL_CUSTOMERS enqueues a job that moves every open subscription on
    an older version onto this one (the taskId names it). A package published without ever
    choosing a pricing type is FREE.
    """
    with db.transaction() as s:
        package = store.get_current(s, env_id, kind, ref, for_update=True)
        if package.status == ARCHIVED:
            raise FailedPrecondition(f"{package_label(kind, ref)} is archived")
        if package.status != DRAFT:
            raise FailedPrecondition(
                f"{package_label(kind, ref)} has no draft to publish; "
                f"create one with POST /api/v1/{PATHS[kind]}/{ref}/draft"
            )
        product = s.get(Product, package.product_pk)
        if product is None or product.status == ARCHIVED:
            raise FailedPrecondition(f"the product of {package_label(kind, ref)} is archived")
        used = _check_publishable(s, env_id, package)
        previous = store.latest_published(s, env_id, kind, ref)
        if previous is not None:
            if kind == PLAN:  # plans built on this one inherit from its latest version: now this one
                publish(s, ParentPlansChanged(env_id=env_id, parent_refs=[ref]))
            previous.is_latest = False
            s.flush()
        now = utcnow()
        package.status = PUBLISHED
        package.is_latest = True
        package.published_at = now
        package.updated_at = now
        package.publish_task_id = str(uuid.uuid4())
        package.migration_type = migration_type
        if package.pricing_type is None:
            package.pricing_type = "FREE"
        for feature in used:
            if feature.feature_status == "NEW":
                feature.feature_status = "ACTIVE"
                feature.updated_at = now
        if migration_type == "ALL_CUSTOMERS" and previous is not None:
            # Moving every subscription is a task, not part of this request: one durable job.
            jobs.enqueue(
                s,
                env_id,
                MIGRATE_SUBSCRIPTIONS_JOB,
                {"kind": kind, "ref": ref, "task": package.publish_task_id},
                dedupe_key=f"migrate-all:{package.pk}",
            )
        publish(s, PackagePublished(env_id=env_id, package=package))
        return package.publish_task_id


def _check_publishable(s: Session, env_id: int, package: Package) -> list[Feature]:
    """What must hold to publish (409 FAILED_PRECONDITION otherwise); returns the features used.

    - every feature an entitlement, a price or a credit dependency uses exists, is not archived, and
      each feature entitlement still fits its feature (e.g. its enum values still exist);
    - PAID has at least one charge; FREE and CUSTOM have none;
    - plan: the parent plan has a published version, is not archived, is in the same product, and the
      chain of published parents has no cycle; compatible add-ons exist, are not archived and are in
      the same product;
    - add-on: dependencies exist, are not archived, are in the same product, and make no cycle.
    """
    label = package_label(package.kind, package.ref_id)
    entitlements = store.entitlements_of(s, package.pk)
    charges = store.charges_of(s, package.pk)
    refs = {e.ref_id for e in entitlements if e.entitlement_type == "FEATURE"}
    refs |= {e.dependency_feature_ref for e in entitlements if e.dependency_feature_ref}
    refs |= {c.feature_ref for c in charges if c.feature_ref}
    known = features.get_many(s, env_id, sorted(refs))
    for ref in sorted(refs):
        feature = known.get(ref)
        if feature is None:
            raise FailedPrecondition(f"{label} uses feature '{ref}', which no longer exists")
        if feature.archived_at is not None:
            raise FailedPrecondition(f"{label} uses feature '{ref}', which is archived")
    for e in entitlements:
        if e.entitlement_type == "FEATURE":
            try:
                rules.check_feature_entitlement(
                    feature_shape(known[e.ref_id]),
                    usage_limit=e.usage_limit,
                    has_unlimited_usage=bool(e.has_unlimited_usage),
                    has_soft_limit=bool(e.has_soft_limit),
                    reset_period=e.reset_period,
                    enum_values=e.enum_values,
                )
            except InvalidArgument as exc:
                raise FailedPrecondition(f"{label}: {exc.message}") from exc
    if package.pricing_type == "PAID" and not charges:
        raise FailedPrecondition(f"{label} is PAID but has no prices; set charges first")
    if package.pricing_type in ("FREE", "CUSTOM", None) and charges:
        raise FailedPrecondition(f"{label} is {package.pricing_type or 'FREE'} but has prices")
    if package.kind == PLAN:
        _check_publishable_plan(s, env_id, package, label)
    else:
        deps = list(package.dependencies or [])
        _check_live_addons(s, env_id, package, deps, "dependency", label)
        if deps:
            check_dependency_cycle(s, env_id, package, deps, published=True)
    return list(known.values())


def _check_live_addons(s: Session, env_id: int, package: Package, refs: list[str], what: str, label: str) -> None:
    found = store.current_many(s, env_id, ADDON, refs)
    for ref in refs:
        addon = found.get(ref)
        if addon is None or addon.status == ARCHIVED:
            raise FailedPrecondition(f"{label}: {what} add-on '{ref}' {'is archived' if addon else 'does not exist'}")
        if addon.product_pk != package.product_pk:
            raise FailedPrecondition(f"{label}: {what} add-on '{ref}' belongs to another product")


def _check_publishable_plan(s: Session, env_id: int, plan: Package, label: str) -> None:
    if plan.parent_plan_ref is not None:
        parent_ref = plan.parent_plan_ref
        parent = store.latest_published(s, env_id, PLAN, parent_ref)
        if parent is None:
            raise FailedPrecondition(f"{label}: parent plan '{parent_ref}' has no published version (or is archived)")
        if parent.product_pk != plan.product_pk:
            raise FailedPrecondition(f"{label}: parent plan '{parent_ref}' belongs to another product")
        parent_of: dict[str, str | None] = {}
        for other in store.current_in_product(s, env_id, PLAN, plan.product_pk):
            published = other if other.status == PUBLISHED else store.latest_published(s, env_id, PLAN, other.ref_id)
            parent_of[other.ref_id] = published.parent_plan_ref if published is not None else None
        parent_of[plan.ref_id] = parent_ref
        try:
            rules.parent_chain(plan.ref_id, parent_of)
        except rules.CycleError as exc:
            raise FailedPrecondition(f"{label}: parent plans make a cycle: {exc}") from exc
    _check_live_addons(s, env_id, plan, list(plan.compatible_addon_ids or []), "compatible", label)


def archive_package(db: Database, env_id: int, kind: PackageKind, ref: str) -> PackageView:
    """Archive every version (a draft is discarded); refused while the package is still referenced
    (see the module docstring). Archiving an archived package returns it unchanged."""
    with db.transaction() as s:
        all_versions = store.versions(s, env_id, kind, ref, for_update=True)
        if not all_versions:
            raise NotFound(NOUNS[kind], ref)
        if all_versions[-1].status == ARCHIVED:
            return store.view(s, all_versions[-1])
        product_pk = all_versions[-1].product_pk
        label = package_label(kind, ref)
        if kind == PLAN:
            product = s.get(Product, product_pk)
            settings = product.product_settings if product is not None else {}
            for role in ("downgradePlanId", "subscriptionStartPlanId"):
                if settings.get(role) == ref:
                    raise FailedPrecondition(f"{label} is its product's {role}; change the product settings first")
            children = sorted(
                {
                    p.ref_id
                    for p in store.live_heads_in_product(s, env_id, PLAN, product_pk)
                    if p.parent_plan_ref == ref and p.ref_id != ref
                }
            )
            if children:
                raise FailedPrecondition(f"{label} is the parent of plan(s) {', '.join(children)}")
        else:
            plans = sorted(
                {
                    p.ref_id
                    for p in store.live_heads_in_product(s, env_id, PLAN, product_pk)
                    if ref in (p.compatible_addon_ids or [])
                }
            )
            if plans:
                raise FailedPrecondition(f"{label} is a compatible add-on of plan(s) {', '.join(plans)}")
            dependants = sorted(
                {
                    a.ref_id
                    for a in store.live_heads_in_product(s, env_id, ADDON, product_pk)
                    if ref in (a.dependencies or []) and a.ref_id != ref
                }
            )
            if dependants:
                raise FailedPrecondition(f"{label} is a dependency of add-on(s) {', '.join(dependants)}")
        if kind == PLAN:  # plans still built on one of its versions inherit nothing from it any more
            publish(s, ParentPlansChanged(env_id=env_id, parent_refs=[ref]))
        store.archive_versions(s, all_versions)
        return store.view(s, store.get_current(s, env_id, kind, ref))
