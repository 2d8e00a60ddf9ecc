"""Plan and add-on use cases, one transaction each.

Lifecycle of a package (plan or add-on):

- **Create**: a new package is version 1, status DRAFT (a `status` other than DRAFT is refused: use
  publish / archive). Its id must be free in the environment: a plan and an add-on never share one,
  archived or not (409 ALREADY_EXISTS), since subscriptions, widgets and the console name a package
  by its id alone.
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

from typing import Literal

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages import pricing_rules, rules, store
from entitle.catalog.packages.models import (
    ADDON,
    ARCHIVED,
    DRAFT,
    PLAN,
    Package,
    PackageCharge,
    PackageEntitlement,
    PackageView,
)
from entitle.catalog.packages.schemas import (
    AddonCreate,
    AddonUpdate,
    ChargesIn,
    PlanCreate,
    PlanUpdate,
)
from entitle.catalog.products import store as products
from entitle.catalog.products.models import Product
from entitle.clock import utcnow
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.errors import FailedPrecondition, InvalidArgument

PackageKind = Literal["PLAN", "ADDON"]


MIGRATE_SUBSCRIPTIONS_JOB = "package.migrate_subscriptions"


NOUNS = store.NOUNS


PATHS = {PLAN: "plans", ADDON: "addons"}


def package_label(kind: str, ref: str) -> str:
    return f"{NOUNS[kind]} '{ref}'"


def feature_shape(f: Feature) -> rules.FeatureShape:
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


def editable(s: Session, env_id: int, kind: str, ref: str, draft_fields: set[str]) -> Package:
    """The version a PATCH changes (locked): the draft, or the latest published version when only
    display fields are sent."""
    package = store.get_current(s, env_id, kind, ref, for_update=True)
    if package.status == ARCHIVED:
        raise FailedPrecondition(f"{package_label(kind, ref)} is archived")
    if draft_fields and package.status != DRAFT:
        fields = ", ".join(sorted(draft_fields))
        raise FailedPrecondition(
            f"{package_label(kind, ref)} is published: {fields} can only change on a draft; "
            f"create one with POST /api/v1/{PATHS[kind]}/{ref}/draft"
        )
    return package


def draft_of(s: Session, env_id: int, kind: str, ref: str) -> Package:
    return editable(s, env_id, kind, ref, {"entitlements"})


def check_parent(s: Session, env_id: int, plan_ref: str, product_pk: int, parent_ref: str) -> None:
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


def check_addon_refs(
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


def check_dependency_cycle(s: Session, env_id: int, addon: Package, deps: list[str], *, published: bool) -> None:
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


def create_plan(db: Database, env_id: int, req: PlanCreate) -> PackageView:
    """A new plan: version 1, DRAFT, in a product that is not archived."""
    _check_status_input(PLAN, req.status, DRAFT)
    with db.transaction() as s:
        product = _live_product(s, env_id, req.product_id)
        store.claim_id(s, env_id, req.id)
        if req.parent_plan_id is not None:
            check_parent(s, env_id, req.id, product.pk, req.parent_plan_id)
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
        store.claim_id(s, env_id, req.id)
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


def update_plan(db: Database, env_id: int, ref: str, req: PlanUpdate) -> PackageView:
    """PATCH a plan; see the module docstring for which fields need a draft."""
    fields = req.model_fields_set - ({"charges"} if req.charges is None else set())
    draft_fields = fields & {"parent_plan_id", "compatible_addon_ids", "default_trial_config", "charges"}
    with db.transaction() as s:
        plan = editable(s, env_id, PLAN, ref, {_WIRE[f] for f in draft_fields})
        _apply_display(plan, req)
        if "parent_plan_id" in fields:
            if req.parent_plan_id is not None:
                check_parent(s, env_id, plan.ref_id, plan.product_pk, req.parent_plan_id)
            plan.parent_plan_ref = req.parent_plan_id
        if "compatible_addon_ids" in fields:
            ids = list(req.compatible_addon_ids) if req.compatible_addon_ids is not None else None
            if ids:
                check_addon_refs(s, env_id, plan.product_pk, ids, "compatibleAddonIds")
            plan.compatible_addon_ids = ids
        if "default_trial_config" in fields:
            trial = req.default_trial_config
            plan.default_trial_config = trial.to_doc() if trial else None
        if req.charges is not None:
            set_charges(s, env_id, plan, req.charges)
        plan.updated_at = utcnow()
        s.flush()
        return store.view(s, plan)


def update_addon(db: Database, env_id: int, ref: str, req: AddonUpdate) -> PackageView:
    """PATCH an add-on; see the module docstring for which fields need a draft. `status` may only
    repeat the current status (publish and archive have their own endpoints)."""
    fields = req.model_fields_set - ({"charges"} if req.charges is None else set())
    draft_fields = fields & {"max_quantity", "dependencies", "charges"}
    with db.transaction() as s:
        addon = editable(s, env_id, ADDON, ref, {_WIRE[f] for f in draft_fields})
        if "status" in fields:
            _check_status_input(ADDON, req.status, addon.status)
        _apply_display(addon, req)
        if "max_quantity" in fields:
            addon.max_quantity = req.max_quantity
        if "dependencies" in fields:
            deps = list(req.dependencies) if req.dependencies is not None else None
            if deps:
                check_addon_refs(s, env_id, addon.product_pk, deps, "dependencies", self_ref=addon.ref_id)
                check_dependency_cycle(s, env_id, addon, deps, published=False)
            addon.dependencies = deps
        if req.charges is not None:
            set_charges(s, env_id, addon, req.charges)
        addon.updated_at = utcnow()
        s.flush()
        return store.view(s, addon)


def new_entitlement(env_id: int, package: Package, entitlement_type: str, ref: str) -> PackageEntitlement:
    return PackageEntitlement(
        environment_id=env_id,
        package_pk=package.pk,
        entitlement_type=entitlement_type,
        ref_id=ref,
        behavior="Increment",
        is_granted=True,
        hidden_from_widgets=[],
    )


_WIRE = {
    "parent_plan_id": "parentPlanId",
    "compatible_addon_ids": "compatibleAddonIds",
    "default_trial_config": "defaultTrialConfig",
    "charges": "charges",
    "max_quantity": "maxQuantity",
    "dependencies": "dependencies",
}


def set_charges(s: Session, env_id: int, package: Package, req: ChargesIn) -> None:
    """Replace the draft's pricing (pricing_rules.check_pricing). Charges keep their ids when a price for the
    same key exists; an overage model's `entitlement` (or `creditEntitlement`) sets that entitlement
    on the draft, replacing its limit fields if the entitlement exists."""
    refs: set[str] = {pm.feature_id for pm in req.pricing_models if pm.feature_id}
    for om in req.overage_pricing_models:
        if om.feature_id:
            refs.add(om.feature_id)
        if om.entitlement is not None:
            refs.add(om.entitlement.feature_id)
    known = {ref: feature_shape(f) for ref, f in features.get_many(s, env_id, sorted(refs)).items()}
    pricing_rules.check_pricing(req, known)

    existing = store.charges_of(s, package.pk)
    ids = {pricing_rules.key_of_charge(c): c.charge_id for c in existing}
    for c in existing:
        s.delete(c)
    s.flush()
    now = utcnow()
    for spec in pricing_rules.expand_charges(req):
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
            row = entitlements.get(("FEATURE", oe.feature_id)) or new_entitlement(
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
            # The custom currency id is stored as given (currencies live above the catalog); subscriptions
            # are granted it as any CREDIT entitlement (entitle.credits.recurring).
            row = entitlements.get(("CREDIT", ce.custom_currency_id)) or new_entitlement(
                env_id, package, "CREDIT", ce.custom_currency_id
            )
            row.amount = ce.amount
            row.cadence = ce.cadence
            row.updated_at = now
            s.add(row)
            entitlements[("CREDIT", ce.custom_currency_id)] = row
    s.flush()


def list_charges(
    db: Database, env_id: int, kind: PackageKind, ref: str, page: PageRequest, *, overage: bool = False
) -> Page[PackageCharge]:
    """The current version's base charges (or, with `overage`, its overage charges)."""
    with db.read() as s:
        package = store.get_current(s, env_id, kind, ref)
        return store.charges_page(s, package.pk, overage=overage, page=page)
