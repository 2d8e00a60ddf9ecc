"""Product use cases. A product groups plans and add-ons and owns the customer journey."""

from __future__ import annotations

from sqlalchemy.orm import Session

from entitle.catalog.products import ports, store
from entitle.catalog.products.events import ProductArchived, ProductDuplicated, ProductUnarchived
from entitle.catalog.products.models import DEFAULT_PRODUCT_SETTINGS, Product
from entitle.catalog.products.schemas import ProductCreate, ProductDuplicate, ProductSettings, ProductUpdate
from entitle.clock import utcnow
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.domain_events import publish
from entitle.errors import AlreadyExists, FailedPrecondition, InvalidArgument


def create_product(db: Database, env_id: int, req: ProductCreate) -> Product:
    with db.transaction() as s:
        if store.find(s, env_id, req.id) is not None:
            raise AlreadyExists("product", req.id)
        product = Product(
            environment_id=env_id,
            ref_id=req.id,
            display_name=req.display_name,
            description=req.description,
            metadata_=dict(req.metadata or {}),
            multiple_subscriptions=req.multiple_subscriptions,
            product_settings=dict(DEFAULT_PRODUCT_SETTINGS),
        )
        s.add(product)
        s.flush()
        return product


def _check_settings(s: Session, env_id: int, product: Product, settings: ProductSettings) -> None:
    def plan_of_product(plan_ref: str, role: str) -> None:
        owner = ports.plan_owner.impl(s, env_id, plan_ref)
        if owner is None:
            raise InvalidArgument(f"{role} '{plan_ref}' is not a plan")
        if owner != product.ref_id:
            raise InvalidArgument(f"{role} '{plan_ref}' belongs to product '{owner}', not '{product.ref_id}'")

    if settings.subscription_end_setup == "DOWNGRADE_TO_FREE":
        if not settings.downgrade_plan_id:
            raise InvalidArgument("subscriptionEndSetup DOWNGRADE_TO_FREE needs downgradePlanId")
        plan_of_product(settings.downgrade_plan_id, "downgradePlanId")
    if settings.subscription_start_setup in ("FREE_PLAN", "TRIAL_PERIOD"):
        if not settings.subscription_start_plan_id:
            raise InvalidArgument(
                f"subscriptionStartSetup {settings.subscription_start_setup} needs subscriptionStartPlanId"
            )
        plan_of_product(settings.subscription_start_plan_id, "subscriptionStartPlanId")


def _check_plan_order(s: Session, env_id: int, product: Product, plan_refs: list[str]) -> None:
    if len(set(plan_refs)) != len(plan_refs):
        raise InvalidArgument("planOrder: each plan may appear once")
    for plan_ref in plan_refs:
        owner = ports.plan_owner.impl(s, env_id, plan_ref)
        if owner is None:
            raise InvalidArgument(f"planOrder: '{plan_ref}' is not a plan (or it is archived)")
        if owner != product.ref_id:
            raise InvalidArgument(f"planOrder: plan '{plan_ref}' belongs to product '{owner}', not '{product.ref_id}'")


def update_product(db: Database, env_id: int, ref_id: str, req: ProductUpdate) -> Product:
    fields = req.model_fields_set
    with db.transaction() as s:
        product = store.get(s, env_id, ref_id)
        if product.status == "ARCHIVED":
            raise FailedPrecondition(f"product '{ref_id}' is archived; unarchive it first")
        if "display_name" in fields and req.display_name is not None:
            product.display_name = req.display_name
        if "description" in fields:
            product.description = req.description
        if "metadata" in fields:
            product.metadata_ = dict(req.metadata or {})
        if "multiple_subscriptions" in fields and req.multiple_subscriptions is not None:
            product.multiple_subscriptions = req.multiple_subscriptions
        if "product_settings" in fields and req.product_settings is not None:
            _check_settings(s, env_id, product, req.product_settings)
            product.product_settings = req.product_settings.model_dump(by_alias=True)
        if "usage_reset_cutoff_rule" in fields:
            rule = req.usage_reset_cutoff_rule
            product.usage_reset_cutoff_rule = rule.model_dump(by_alias=True) if rule else None
        if "plan_order" in fields:
            _check_plan_order(s, env_id, product, list(req.plan_order or []))
            product.plan_order = list(req.plan_order) if req.plan_order else None
        product.updated_at = utcnow()
        return product


def list_products(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    ids: list[str] | None = None,
    statuses: list[str] | None = None,
    created_at: CreatedAtRange = CreatedAtRange(),
) -> Page[Product]:
    with db.read() as s:
        return store.list_page(s, env_id, page, ids=ids, statuses=statuses, created_at=created_at)


def get_product(db: Database, env_id: int, ref_id: str) -> Product:
    with db.read() as s:
        return store.get(s, env_id, ref_id)


def archive_product(db: Database, env_id: int, ref_id: str) -> Product:
    """Archiving a product archives its plans and add-ons with it, in the same transaction."""
    with db.transaction() as s:
        product = store.get(s, env_id, ref_id)
        if product.status != "ARCHIVED":
            publish(s, ProductArchived(env_id=env_id, product=product))  # its plans and add-ons go with it
            product.status = "ARCHIVED"
            product.updated_at = utcnow()
        return product


def unarchive_product(db: Database, env_id: int, ref_id: str) -> Product:
    """Unarchiving a product brings back, as they were, the plans and add-ons its archive archived (not
    those archived on their own before), in the same transaction."""
    with db.transaction() as s:
        product = store.get(s, env_id, ref_id)
        if product.status != "PUBLISHED":
            product.status = "PUBLISHED"
            product.updated_at = utcnow()
            publish(s, ProductUnarchived(env_id=env_id, product=product))  # its plans and add-ons come back
        return product


def duplicate_product(db: Database, env_id: int, ref_id: str, req: ProductDuplicate) -> Product:
    """Copy a product with its plans and add-ons (as drafts of the copy) under a new id."""
    with db.transaction() as s:
        source = store.get(s, env_id, ref_id)
        if store.find(s, env_id, req.target_id) is not None:
            raise AlreadyExists("product", req.target_id)
        copy = Product(
            environment_id=env_id,
            ref_id=req.target_id,
            display_name=req.display_name or source.display_name,
            description=req.description if "description" in req.model_fields_set else source.description,
            metadata_=dict(source.metadata_ or {}),
            multiple_subscriptions=source.multiple_subscriptions,
            product_settings=dict(DEFAULT_PRODUCT_SETTINGS),
            usage_reset_cutoff_rule=source.usage_reset_cutoff_rule,
        )
        s.add(copy)
        s.flush()
        publish(s, ProductDuplicated(env_id=env_id, source=source, copy=copy))  # its plans and add-ons too
        return copy
