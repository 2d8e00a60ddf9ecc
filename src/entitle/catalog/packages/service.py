"""Plan and add-on use cases, one transaction each.

Lifecycle of a package (plan or add-on):

- **Create**: a new package is version 1, status DRAFT (a `status` other than DRAFT is refused: use
  publish / archive).
- **Read**: GET and list show the package's *current* version: the draft when there is one, else the
  latest published version (else, once archived, the last version).
- **Edit**: entitlements, charges, parent plan, compatible add-ons, default trial, max quantity and
  dependencies change only on a draft; otherwise 409 FAILED_PRECONDITION says to create a draft.
  displayName, description, metadata and billingId may also be changed in place on the latest
  published version when there is no draft (they do not change what a subscription grants).
- **Draft** (`create_draft`): copies the latest published version, with its entitlements and charges,
  into version N+1 as DRAFT; returns the existing draft if there is one. `remove_draft` discards it
  (409 when the package was never published: archive it instead).
- **Publish**: validates the draft (see `_check_publishable`), makes it PUBLISHED and latest, and
  leaves older versions PUBLISHED with isLatest false (subscriptions keep pointing at them). Features
  the version uses go from NEW to ACTIVE. The migration type is recorded on the version; moving
  existing subscriptions (ALL_CUSTOMERS) is done by the subscriptions work, which reads it there.
- **Archive**: every version becomes ARCHIVED and a draft is discarded. Refused (409) while a plan is
  its product's downgradePlanId or subscriptionStartPlanId or the parent of a plan that is not
  archived, or while an add-on is compatible with, or a dependency of, a package that is not archived
  (judged on that package's draft and latest published version, see `store.live_heads_in_product`).

Referencing rules: an unknown productId or featureId is 404 NOT_FOUND; an unknown, archived or
foreign-product parentPlanId, compatibleAddonIds entry or dependency is 400 INVALID_ARGUMENT when it
is set, and 409 FAILED_PRECONDITION when it has gone bad by the time of publishing.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Literal

from sqlalchemy.orm import Session

from entitle.billing import catalog_sync as billing_sync
from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages import rules, store
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
from entitle.catalog.packages.schemas import (
    AddonCreate,
    AddonUpdate,
    ChargesIn,
    CreditEntitlementFields,
    CreditEntitlementIn,
    CreditEntitlementUpdate,
    EntitlementCommon,
    FeatureEntitlementFields,
    FeatureEntitlementIn,
    FeatureEntitlementUpdate,
    PlanCreate,
    PlanUpdate,
)
from entitle.catalog.products import store as products
from entitle.catalog.products.models import Product
from entitle.clock import utcnow
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from entitle.jobs import service as jobs
from entitle.webhooks import emit as webhooks

PackageKind = Literal["PLAN", "ADDON"]
MIGRATE_SUBSCRIPTIONS_JOB = "package.migrate_subscriptions"
NOUNS = store.NOUNS
PATHS = {PLAN: "plans", ADDON: "addons"}

__all__ = [
    "PackageKind",
    "add_entitlements",
    "archive_package",
    "create_addon",
    "create_draft",
    "create_plan",
    "get_package",
    "list_charges",
    "list_entitlements",
    "list_packages",
    "publish_package",
    "remove_draft",
    "remove_entitlement",
    "update_addon",
    "update_entitlement",
    "update_plan",
]


# ---------------------------------------------------------------------------------------------- helpers


def _label(kind: str, ref: str) -> str:
    return f"{NOUNS[kind]} '{ref}'"


def _shape(f: Feature) -> rules.FeatureShape:
    return rules.FeatureShape(
        ref_id=f.ref_id,
        feature_type=f.feature_type,
        meter_type=f.meter_type,
        enum_values=frozenset(e["value"] for e in f.enum_configuration or []),
        archived=f.archived_at is not None,
    )


def _check_status_input(kind: str, status: str | None, current: str) -> None:
    if status is not None and status != current:
        raise InvalidArgument(
            f"status cannot be set to {status} here: use POST /api/v1/{PATHS[kind]}/{{id}}/publish or /archive"
        )


def _live_product(s: Session, env_id: int, product_ref: str) -> Product:
    product = products.get(s, env_id, product_ref)
    if product.status == ARCHIVED:
        raise FailedPrecondition(f"product '{product_ref}' is archived")
    return product


def _editable(s: Session, env_id: int, kind: str, ref: str, draft_fields: set[str]) -> Package:
    """The version a PATCH changes (locked): the draft, or the latest published version when only
    display fields are sent."""
    package = store.get_current(s, env_id, kind, ref, for_update=True)
    if package.status == ARCHIVED:
        raise FailedPrecondition(f"{_label(kind, ref)} is archived")
    if draft_fields and package.status != DRAFT:
        fields = ", ".join(sorted(draft_fields))
        raise FailedPrecondition(
            f"{_label(kind, ref)} is published: {fields} can only change on a draft; "
            f"create one with POST /api/v1/{PATHS[kind]}/{ref}/draft"
        )
    return package


def _draft(s: Session, env_id: int, kind: str, ref: str) -> Package:
    return _editable(s, env_id, kind, ref, {"entitlements"})


def _check_parent(s: Session, env_id: int, plan_ref: str, product_pk: int, parent_ref: str) -> None:
    """parentPlanId: another plan of the same product, not archived, and no cycle through the
    current versions' parents."""
    if parent_ref == plan_ref:
        raise InvalidArgument("parentPlanId: a plan cannot be its own parent")
    parent = store.current(s, env_id, PLAN, parent_ref)
    if parent is None:
        raise InvalidArgument(f"parentPlanId '{parent_ref}' is not a plan")
    if parent.status == ARCHIVED:
        raise InvalidArgument(f"parentPlanId '{parent_ref}' is archived")
    if parent.product_pk != product_pk:
        raise InvalidArgument(f"parentPlanId '{parent_ref}' belongs to another product")
    parent_of = {p.ref_id: p.parent_plan_ref for p in store.current_in_product(s, env_id, PLAN, product_pk)}
    parent_of[plan_ref] = parent_ref
    try:
        rules.parent_chain(plan_ref, parent_of)
    except rules.CycleError as exc:
        raise InvalidArgument(f"parentPlanId '{parent_ref}' would make a cycle: {exc}") from exc


def _check_addon_refs(
    s: Session, env_id: int, product_pk: int, refs: list[str], field: str, self_ref: str | None = None
) -> None:
    if len(set(refs)) != len(refs):
        raise InvalidArgument(f"{field}: each add-on may appear once")
    if self_ref is not None and self_ref in refs:
        raise InvalidArgument(f"{field}: an add-on cannot depend on itself")
    found = store.current_many(s, env_id, ADDON, refs)
    for ref in refs:
        addon = found.get(ref)
        if addon is None:
            raise InvalidArgument(f"{field}: '{ref}' is not an add-on")
        if addon.status == ARCHIVED:
            raise InvalidArgument(f"{field}: add-on '{ref}' is archived")
        if addon.product_pk != product_pk:
            raise InvalidArgument(f"{field}: add-on '{ref}' belongs to another product")


def _check_dependency_cycle(s: Session, env_id: int, addon: Package, deps: list[str], *, published: bool) -> None:
    edges: dict[str, list[str]] = {}
    for other in store.current_in_product(s, env_id, ADDON, addon.product_pk):
        if published and other.status == DRAFT:
            latest = store.latest_published(s, env_id, ADDON, other.ref_id)
            edges[other.ref_id] = list(latest.dependencies or []) if latest else []
        else:
            edges[other.ref_id] = list(other.dependencies or [])
    edges[addon.ref_id] = deps
    cycle = rules.find_cycle(addon.ref_id, edges)
    if cycle is not None:
        message = f"dependencies would make a cycle: {' -> '.join(cycle)}"
        raise FailedPrecondition(message) if published else InvalidArgument(message)


def _apply_display(package: Package, req: PlanUpdate | AddonUpdate) -> None:
    fields = req.model_fields_set
    if "display_name" in fields and req.display_name is not None:
        package.display_name = req.display_name
    if "description" in fields:
        package.description = req.description
    if "billing_id" in fields:
        package.billing_id = req.billing_id
    if "metadata" in fields:
        package.metadata_ = dict(req.metadata or {})


# ---------------------------------------------------------------------------------------------- create, read


def create_plan(db: Database, env_id: int, req: PlanCreate) -> PackageView:
    """A new plan: version 1, DRAFT, in a product that is not archived."""
    _check_status_input(PLAN, req.status, DRAFT)
    with db.transaction() as s:
        product = _live_product(s, env_id, req.product_id)
        if store.current(s, env_id, PLAN, req.id) is not None:
            raise AlreadyExists("plan", req.id)
        if req.parent_plan_id is not None:
            _check_parent(s, env_id, req.id, product.pk, req.parent_plan_id)
        plan = Package(
            environment_id=env_id,
            kind=PLAN,
            ref_id=req.id,
            product_pk=product.pk,
            version_number=1,
            status=DRAFT,
            is_latest=False,
            display_name=req.display_name,
            description=req.description,
            billing_id=req.billing_id,
            metadata_=dict(req.metadata or {}),
            pricing_type=req.pricing_type,
            parent_plan_ref=req.parent_plan_id,
            default_trial_config=req.default_trial_config.to_doc() if req.default_trial_config else None,
        )
        s.add(plan)
        s.flush()
        return PackageView(plan, product.ref_id, [])


def create_addon(db: Database, env_id: int, req: AddonCreate) -> PackageView:
    """A new add-on: version 1, DRAFT, in a product that is not archived."""
    _check_status_input(ADDON, req.status, DRAFT)
    with db.transaction() as s:
        product = _live_product(s, env_id, req.product_id)
        if store.current(s, env_id, ADDON, req.id) is not None:
            raise AlreadyExists("addon", req.id)
        addon = Package(
            environment_id=env_id,
            kind=ADDON,
            ref_id=req.id,
            product_pk=product.pk,
            version_number=1,
            status=DRAFT,
            is_latest=False,
            display_name=req.display_name,
            description=req.description,
            billing_id=req.billing_id,
            metadata_=dict(req.metadata or {}),
            pricing_type=req.pricing_type,
            max_quantity=req.max_quantity,
        )
        s.add(addon)
        s.flush()
        return PackageView(addon, product.ref_id, [])


def get_package(db: Database, env_id: int, kind: PackageKind, ref: str) -> PackageView:
    """The current version of a plan or add-on."""
    with db.read() as s:
        return store.view(s, store.get_current(s, env_id, kind, ref))


def list_packages(
    db: Database,
    env_id: int,
    kind: PackageKind,
    page: PageRequest,
    *,
    product_ref: str | None = None,
    statuses: list[str] | None = None,
    created_at: CreatedAtRange = CreatedAtRange(),
) -> Page[PackageView]:
    """Plans or add-ons, each once (its current version), oldest first; `statuses` and `created_at`
    filter on the current version, `product_ref` on the product. Archived ones are included unless
    `statuses` leaves them out."""
    with db.read() as s:
        firsts = store.list_page(
            s, env_id, kind, page, product_ref=product_ref, statuses=statuses, created_at=created_at
        )
        currents = store.current_many(s, env_id, kind, [p.ref_id for p in firsts.items])
        shown = store.views(s, [currents[p.ref_id] for p in firsts.items])
        return Page(items=shown, next=firsts.next, prev=firsts.prev)


# ---------------------------------------------------------------------------------------------- update


def update_plan(db: Database, env_id: int, ref: str, req: PlanUpdate) -> PackageView:
    """PATCH a plan; see the module docstring for which fields need a draft."""
    fields = req.model_fields_set - ({"charges"} if req.charges is None else set())
    draft_fields = fields & {"parent_plan_id", "compatible_addon_ids", "default_trial_config", "charges"}
    with db.transaction() as s:
        plan = _editable(s, env_id, PLAN, ref, {_WIRE[f] for f in draft_fields})
        _apply_display(plan, req)
        if "parent_plan_id" in fields:
            if req.parent_plan_id is not None:
                _check_parent(s, env_id, plan.ref_id, plan.product_pk, req.parent_plan_id)
            plan.parent_plan_ref = req.parent_plan_id
        if "compatible_addon_ids" in fields:
            ids = list(req.compatible_addon_ids) if req.compatible_addon_ids is not None else None
            if ids:
                _check_addon_refs(s, env_id, plan.product_pk, ids, "compatibleAddonIds")
            plan.compatible_addon_ids = ids
        if "default_trial_config" in fields:
            trial = req.default_trial_config
            plan.default_trial_config = trial.to_doc() if trial else None
        if req.charges is not None:
            _set_charges(s, env_id, plan, req.charges)
        plan.updated_at = utcnow()
        s.flush()
        return store.view(s, plan)


def update_addon(db: Database, env_id: int, ref: str, req: AddonUpdate) -> PackageView:
    """PATCH an add-on; see the module docstring for which fields need a draft. `status` may only
    repeat the current status (publish and archive have their own endpoints)."""
    fields = req.model_fields_set - ({"charges"} if req.charges is None else set())
    draft_fields = fields & {"max_quantity", "dependencies", "charges"}
    with db.transaction() as s:
        addon = _editable(s, env_id, ADDON, ref, {_WIRE[f] for f in draft_fields})
        if "status" in fields:
            _check_status_input(ADDON, req.status, addon.status)
        _apply_display(addon, req)
        if "max_quantity" in fields:
            addon.max_quantity = req.max_quantity
        if "dependencies" in fields:
            deps = list(req.dependencies) if req.dependencies is not None else None
            if deps:
                _check_addon_refs(s, env_id, addon.product_pk, deps, "dependencies", self_ref=addon.ref_id)
                _check_dependency_cycle(s, env_id, addon, deps, published=False)
            addon.dependencies = deps
        if req.charges is not None:
            _set_charges(s, env_id, addon, req.charges)
        addon.updated_at = utcnow()
        s.flush()
        return store.view(s, addon)


_WIRE = {
    "parent_plan_id": "parentPlanId",
    "compatible_addon_ids": "compatibleAddonIds",
    "default_trial_config": "defaultTrialConfig",
    "charges": "charges",
    "max_quantity": "maxQuantity",
    "dependencies": "dependencies",
}


def _set_charges(s: Session, env_id: int, package: Package, req: ChargesIn) -> None:
    """Replace the draft's pricing (rules.check_pricing). Charges keep their ids when a price for the
    same key exists; an overage model's `entitlement` (or `creditEntitlement`) sets that entitlement
    on the draft, replacing its limit fields if the entitlement exists."""
    refs: set[str] = {pm.feature_id for pm in req.pricing_models if pm.feature_id}
    for om in req.overage_pricing_models:
        if om.feature_id:
            refs.add(om.feature_id)
        if om.entitlement is not None:
            refs.add(om.entitlement.feature_id)
    known = {ref: _shape(f) for ref, f in features.get_many(s, env_id, sorted(refs)).items()}
    rules.check_pricing(req, known)

    existing = store.charges_of(s, package.pk)
    ids = {rules.key_of_charge(c): c.charge_id for c in existing}
    for c in existing:
        s.delete(c)
    s.flush()
    now = utcnow()
    for spec in rules.expand_charges(req):
        s.add(
            PackageCharge(
                environment_id=env_id,
                package_pk=package.pk,
                charge_id=ids.get(spec.key) or store.new_charge_id(),
                is_overage=spec.is_overage,
                billing_model=spec.billing_model,
                billing_cadence=spec.billing_cadence,
                billing_period=spec.billing_period,
                billing_country_code=spec.billing_country_code,
                feature_ref=spec.feature_ref,
                custom_currency_ref=spec.custom_currency_ref,
                price_amount=spec.price_amount,
                price_currency=spec.price_currency,
                tiers=spec.tiers,
                tiers_mode=spec.tiers_mode,
                block_size=spec.block_size,
                min_unit_quantity=spec.min_unit_quantity,
                max_unit_quantity=spec.max_unit_quantity,
                reset_period=spec.reset_period,
                reset_period_configuration=spec.reset_period_configuration,
                credit_grant_cadence=spec.credit_grant_cadence,
                credit_rate_amount=spec.credit_rate_amount,
                credit_rate_currency_ref=spec.credit_rate_currency_ref,
                credit_rate_cost_formula=spec.credit_rate_cost_formula,
                top_up_custom_currency_ref=spec.top_up_custom_currency_ref,
                created_at=now,
                updated_at=now,
            )
        )
    package.pricing_type = req.pricing_type
    package.overage_billing_period = req.overage_billing_period
    package.pricing_billing_id = req.billing_id

    entitlements = {(e.entitlement_type, e.ref_id): e for e in store.entitlements_of(s, package.pk)}
    for om in req.overage_pricing_models:
        if om.entitlement is not None:
            oe = om.entitlement
            row = entitlements.get(("FEATURE", oe.feature_id)) or _new_entitlement(
                env_id, package, "FEATURE", oe.feature_id
            )
            row.usage_limit = oe.usage_limit
            row.has_unlimited_usage = bool(oe.has_unlimited_usage)
            row.has_soft_limit = bool(oe.has_soft_limit)
            row.reset_period = oe.reset_period
            row.reset_period_configuration = rules.reset_configuration(oe.reset_period, *oe.anchors())
            row.updated_at = now
            s.add(row)
            entitlements[("FEATURE", oe.feature_id)] = row
        if om.credit_entitlement is not None:
            ce = om.credit_entitlement
            # Credits come later: the custom currency id is stored as given, not checked.
            row = entitlements.get(("CREDIT", ce.custom_currency_id)) or _new_entitlement(
                env_id, package, "CREDIT", ce.custom_currency_id
            )
            row.amount = ce.amount
            row.cadence = ce.cadence
            row.updated_at = now
            s.add(row)
            entitlements[("CREDIT", ce.custom_currency_id)] = row
    s.flush()


# ------------------------------------------------------------------------------------- drafts, publish, archive


def create_draft(db: Database, env_id: int, kind: PackageKind, ref: str) -> PackageView:
    """The package's draft: the existing one, or a copy of the latest published version as N+1."""
    with db.transaction() as s:
        package = store.get_current(s, env_id, kind, ref, for_update=True)
        if package.status == DRAFT:
            return store.view(s, package)
        if package.status == ARCHIVED:
            raise FailedPrecondition(f"{_label(kind, ref)} is archived")
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
            raise FailedPrecondition(f"{_label(kind, ref)} is archived")
        if draft.status != DRAFT:
            raise NotFound(f"draft of {NOUNS[kind]}", ref)
        if not any(v.status == PUBLISHED for v in all_versions):
            raise FailedPrecondition(
                f"{_label(kind, ref)} has never been published, so its draft is all there is; archive it instead"
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
            raise FailedPrecondition(f"{_label(kind, ref)} is archived")
        if package.status != DRAFT:
            raise FailedPrecondition(
                f"{_label(kind, ref)} has no draft to publish; create one with POST /api/v1/{PATHS[kind]}/{ref}/draft"
            )
        product = s.get(Product, package.product_pk)
        if product is None or product.status == ARCHIVED:
            raise FailedPrecondition(f"the product of {_label(kind, ref)} is archived")
        used = _check_publishable(s, env_id, package)
        previous = store.latest_published(s, env_id, kind, ref)
        if previous is not None:
            if kind == PLAN:  # plans built on this one inherit from its latest version: now this one
                webhooks.plan_inheritance_changed(s, env_id, [ref])
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
        billing_sync.package_published(s, env_id, package)  # a provider sync job, when one is connected
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
    label = _label(package.kind, package.ref_id)
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
                    _shape(known[e.ref_id]),
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
            _check_dependency_cycle(s, env_id, package, deps, published=True)
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
        label = _label(kind, ref)
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
        store.archive_versions(s, all_versions)
        return store.view(s, store.get_current(s, env_id, kind, ref))


def list_charges(
    db: Database, env_id: int, kind: PackageKind, ref: str, page: PageRequest, *, overage: bool = False
) -> Page[PackageCharge]:
    """The current version's base charges (or, with `overage`, its overage charges)."""
    with db.read() as s:
        package = store.get_current(s, env_id, kind, ref)
        return store.charges_page(s, package.pk, overage=overage, page=page)


# ---------------------------------------------------------------------------------------------- entitlements


def _new_entitlement(env_id: int, package: Package, entitlement_type: str, ref: str) -> PackageEntitlement:
    return PackageEntitlement(
        environment_id=env_id,
        package_pk=package.pk,
        entitlement_type=entitlement_type,
        ref_id=ref,
        behavior="Increment",
        is_granted=True,
        hidden_from_widgets=[],
    )


def _apply_common(row: PackageEntitlement, req: EntitlementCommon) -> None:
    fields = req.model_fields_set
    if "behavior" in fields and req.behavior is not None:
        row.behavior = req.behavior
    if "is_granted" in fields and req.is_granted is not None:
        row.is_granted = req.is_granted
    if "is_custom" in fields:
        row.is_custom = req.is_custom
    if "order" in fields:
        row.order = req.order
    if "description" in fields:
        row.description = req.description
    if "display_name_override" in fields:
        row.display_name_override = req.display_name_override
    if "hidden_from_widgets" in fields:
        row.hidden_from_widgets = list(dict.fromkeys(req.hidden_from_widgets or []))
    if "has_soft_limit" in fields:
        row.has_soft_limit = req.has_soft_limit


def _apply_feature(row: PackageEntitlement, req: FeatureEntitlementFields, feature: Feature | None) -> None:
    """Merge the sent fields into the row, then check the result against the feature. Sending a
    usageLimit clears hasUnlimitedUsage and the other way round, unless both are sent."""
    if feature is None:
        raise NotFound("feature", row.ref_id)
    fields = req.model_fields_set
    _apply_common(row, req)
    if "usage_limit" in fields:
        row.usage_limit = Decimal(req.usage_limit) if req.usage_limit is not None else None
        if req.usage_limit is not None and "has_unlimited_usage" not in fields:
            row.has_unlimited_usage = False
    if "has_unlimited_usage" in fields:
        row.has_unlimited_usage = req.has_unlimited_usage
        if req.has_unlimited_usage and "usage_limit" not in fields:
            row.usage_limit = None
    reset_fields = {
        "reset_period",
        "monthly_reset_period_configuration",
        "weekly_reset_period_configuration",
        "yearly_reset_period_configuration",
    }
    if fields & reset_fields:
        period = req.reset_period if "reset_period" in fields else row.reset_period
        anchors = req.anchors()
        if not fields & (reset_fields - {"reset_period"}) and period == row.reset_period:
            kept = (row.reset_period_configuration or {}).get("accordingTo")
            slot = {"MONTH": 0, "WEEK": 1, "YEAR": 2}.get(period or "")
            if kept is not None and slot is not None:
                anchors = tuple(kept if i == slot else None for i in range(3))  # type: ignore[assignment]
        row.reset_period_configuration = rules.reset_configuration(period, *anchors)
        row.reset_period = period
    if "enum_values" in fields:
        row.enum_values = list(req.enum_values) if req.enum_values is not None else None
    rules.check_feature_entitlement(
        _shape(feature),
        usage_limit=row.usage_limit,
        has_unlimited_usage=bool(row.has_unlimited_usage),
        has_soft_limit=bool(row.has_soft_limit),
        reset_period=row.reset_period,
        enum_values=row.enum_values,
    )


def _apply_credit(row: PackageEntitlement, req: CreditEntitlementFields, known: dict[str, Feature]) -> None:
    """Credit entitlements are stored as sent. Credits come later: the custom currency id is not
    checked yet. A dependencyFeatureId must be a feature that is not archived."""
    fields = req.model_fields_set
    _apply_common(row, req)
    if "amount" in fields:
        row.amount = req.amount
    if "cadence" in fields and req.cadence is not None:
        row.cadence = req.cadence
    if "dependency_feature_id" in fields:
        ref = req.dependency_feature_id
        if ref is not None:
            feature = known.get(ref)
            if feature is None:
                raise NotFound("feature", ref)
            if feature.archived_at is not None:
                raise InvalidArgument(f"dependencyFeatureId: feature '{ref}' is archived")
        row.dependency_feature_ref = ref


def add_entitlements(
    db: Database, env_id: int, kind: PackageKind, ref: str, items: list[FeatureEntitlementIn | CreditEntitlementIn]
) -> list[PackageEntitlement]:
    """Add entitlements to the draft; one already on the draft is 409 ALREADY_EXISTS (change it with
    PATCH), and each (type, id) may appear once per request. All or nothing."""
    keys = [(i.type, i.id) for i in items]
    if len(set(keys)) != len(keys):
        raise InvalidArgument("each entitlement may appear once per request")
    with db.transaction() as s:
        package = _draft(s, env_id, kind, ref)
        existing = {(e.entitlement_type, e.ref_id) for e in store.entitlements_of(s, package.pk)}
        refs = [i.id for i in items if isinstance(i, FeatureEntitlementIn)]
        refs += [
            i.dependency_feature_id for i in items if isinstance(i, CreditEntitlementIn) and i.dependency_feature_id
        ]
        known = features.get_many(s, env_id, refs)
        rows: list[PackageEntitlement] = []
        now = utcnow()
        for item in items:
            if (item.type, item.id) in existing:
                raise AlreadyExists(f"{item.type.lower()} entitlement", item.id)
            row = _new_entitlement(env_id, package, item.type, item.id)
            if isinstance(item, FeatureEntitlementIn):
                _apply_feature(row, item, known.get(item.id))
            else:
                _apply_credit(row, item, known)
            row.created_at = now
            row.updated_at = now
            s.add(row)
            rows.append(row)
        package.updated_at = now
        s.flush()
        return rows


def list_entitlements(db: Database, env_id: int, kind: PackageKind, ref: str) -> list[PackageEntitlement]:
    """The current version's own entitlements (not those inherited from parent plans)."""
    with db.read() as s:
        return store.entitlements_of(s, store.get_current(s, env_id, kind, ref).pk)


def update_entitlement(
    db: Database,
    env_id: int,
    kind: PackageKind,
    ref: str,
    entitlement_ref: str,
    req: FeatureEntitlementUpdate | CreditEntitlementUpdate,
) -> PackageEntitlement:
    """Change one entitlement of the draft (found by type and id); the result is re-checked whole."""
    with db.transaction() as s:
        package = _draft(s, env_id, kind, ref)
        found = {(e.entitlement_type, e.ref_id): e for e in store.entitlements_of(s, package.pk)}
        row = found.get((req.type, entitlement_ref))
        if row is None:
            other = "CREDIT" if req.type == "FEATURE" else "FEATURE"
            if (other, entitlement_ref) in found:
                raise InvalidArgument(f"entitlement '{entitlement_ref}' is a {other} entitlement, not {req.type}")
            raise NotFound("entitlement", entitlement_ref)
        if isinstance(req, FeatureEntitlementUpdate):
            _apply_feature(row, req, features.find(s, env_id, row.ref_id))
        else:
            dep = req.dependency_feature_id
            _apply_credit(row, req, features.get_many(s, env_id, [dep] if dep else []))
        now = utcnow()
        row.updated_at = now
        package.updated_at = now
        s.flush()
        return row


def remove_entitlement(
    db: Database, env_id: int, kind: PackageKind, ref: str, entitlement_ref: str
) -> PackageEntitlement:
    """Remove one entitlement from the draft and return it. When a feature and a custom currency share
    the id, the feature entitlement goes first."""
    with db.transaction() as s:
        package = _draft(s, env_id, kind, ref)
        found = {(e.entitlement_type, e.ref_id): e for e in store.entitlements_of(s, package.pk)}
        row = found.get(("FEATURE", entitlement_ref)) or found.get(("CREDIT", entitlement_ref))
        if row is None:
            raise NotFound("entitlement", entitlement_ref)
        s.delete(row)
        package.updated_at = utcnow()
        s.flush()
        return row
