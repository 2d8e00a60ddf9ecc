"""A new customer's first subscriptions: the one requested with it (`subscriptionParams`), and for every
other product whose customer journey starts on a free plan or a trial, that plan. One transaction with
the customer itself, so a refused subscription leaves no customer behind."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session, make_transient_to_detached

from entitle.catalog.packages.models import PLAN, PUBLISHED, Package
from entitle.catalog.products.models import Product
from entitle.customers import service as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.rows import PreparedSelect, new_row
from entitle.environments.service import KeyRead
from entitle.subscriptions import ports
from entitle.subscriptions.provisioning import provision_unanswered
from entitle.subscriptions.schemas import CustomerProvisionWithSubscription, SubscriptionProvision, TrialOverride
from entitle.subscriptions.validation import product_of_plan

_E = TypeVar("_E")

# Built once (their cache keys are memoized on them): every new customer reads them.
_PUBLISHED_PRODUCTS = select(Product).where(
    Product.environment_id == bindparam("env_id"), Product.status == "PUBLISHED"
)
# The same products, each beside the latest published version of the requested plan if it is that
# plan's product (one statement instead of two: provisioning then reads neither the plan nor its product).
# Plain columns, sent prepared (`db.rows.PreparedSelect`): loading them as ORM entities cost several times
# the query (~0.15 ms of CPU per new customer); each row becomes detached entities (below).
# What provisioning reads of them (a column left out is expired on the detached entity: reading it
# raises, it never reads as None).
_PRODUCT_COLUMNS = tuple(
    Product.__table__.c[name]
    for name in ("pk", "environment_id", "ref_id", "status", "multiple_subscriptions", "product_settings")
)
_PLAN_COLUMNS = tuple(
    Package.__table__.c[name]
    for name in (
        "pk",
        "environment_id",
        "kind",
        "ref_id",
        "product_pk",
        "version_number",
        "status",
        "is_latest",
        "display_name",
        "pricing_type",
        "parent_plan_ref",
        "compatible_addon_ids",
        "default_trial_config",
        "created_at",
    )
)
_PUBLISHED_PRODUCTS_AND_PLAN = PreparedSelect(
    select(*_PRODUCT_COLUMNS, *(column.label(f"plan_{column.key}") for column in _PLAN_COLUMNS))
    .select_from(Product)
    .outerjoin(
        Package,
        and_(
            Package.product_pk == Product.pk,
            Package.environment_id == Product.environment_id,
            Package.kind == PLAN,
            Package.ref_id == bindparam("plan_ref"),
            Package.status == PUBLISHED,
            Package.is_latest.is_(True),
        ),
    )
    .where(Product.environment_id == bindparam("env_id"), Product.status == "PUBLISHED")
    .order_by(Product.pk)
)
# Per entity: (attribute, position in the row) of each of its table's columns.
_PRODUCT_FIELDS = tuple(
    (Product.__mapper__.get_property_by_column(column).key, i) for i, column in enumerate(_PRODUCT_COLUMNS)
)
_PLAN_FIELDS = tuple(
    (Package.__mapper__.get_property_by_column(column).key, len(_PRODUCT_COLUMNS) + i)
    for i, column in enumerate(_PLAN_COLUMNS)
)

_PLAN_KEY = next(i for attribute, i in _PLAN_FIELDS if attribute == "pk")


def _detached(cls: type[_E], fields: tuple[tuple[str, int], ...], row: Any) -> _E:
    """The entity of one row's columns, as a query loading only those would have loaded it but in no
    session: each reads as read, and anything else (another column, a relationship) raises rather than
    loading (`make_transient_to_detached`). Provisioning only reads them."""
    # Made as the ORM's loading makes an entity (`new_row`: no constructor, no attribute events), then
    # keyed and committed as loaded.
    entity = new_row(cls, **{attribute: row[i] for attribute, i in fields})
    make_transient_to_detached(entity)
    return entity


def provision_customer(
    db: Database, caller: int | KeyRead, req: CustomerProvisionWithSubscription
) -> customers.CustomerView:
    """`caller`: the environment, or the request's API key, read as the transaction's first statement
    (before it, when a billing provider is asked something first: it is asked for a known caller only)."""
    if isinstance(caller, int):
        return _provision_customer(db, caller, req)
    try:
        asks_provider = bool(customers.given_payment_method(req)) or _promotion_code(req) is not None
        return _provision_customer(db, caller.read().environment_id if asks_provider else caller, req)
    finally:
        caller.record_use()


def _provision_customer(
    db: Database, caller: int | KeyRead, req: CustomerProvisionWithSubscription
) -> customers.CustomerView:
    env_id = caller if isinstance(caller, int) else None
    # What only the billing provider can answer is asked first: no lock is held while it answers.
    checked = None if env_id is None else customers.check_payment_method(db, env_id, req.id, req)
    prefetched = {} if env_id is None else _prefetch_promotion_code(db, env_id, req)
    with customers.refusing_taken_id(db, lambda: env_id, req.id), db.transaction() as s:
        if env_id is None:
            assert isinstance(caller, KeyRead)
            env_id = caller.environment_of(s)
        s.info.update(prefetched)
        customer = customers.create_customer(s, env_id, req, payment_method=checked, look_up=False)
        start_journey(s, env_id, customer, req)
        # A new customer's integration links are the ones it was given (none: nothing to read).
        return customers.view(s, customer, links=None if req.integrations else [])


def start_journey(s: Session, env_id: int, customer: Customer, req: CustomerProvisionWithSubscription) -> None:
    """`customer`: inserted by this transaction (it holds no subscription yet)."""
    # Read first: provisioning then finds the requested plan and its product among them, not in other reads
    # (a plan not found beside a published product is looked for again, and refused, by provisioning).
    plan: Package | None = None
    plan_product: Product | None = None
    if req.subscription_params is None:
        published = list(s.scalars(_PUBLISHED_PRODUCTS, {"env_id": env_id}))
    else:
        params = {"env_id": env_id, "plan_ref": req.subscription_params.plan_id}
        published = []
        for row in _PUBLISHED_PRODUCTS_AND_PLAN.all(s.connection(), params):
            product = _detached(Product, _PRODUCT_FIELDS, row)
            published.append(product)
            if row[_PLAN_KEY] is not None:  # the plan's version, beside its product
                plan, plan_product = _detached(Package, _PLAN_FIELDS, row), product
    requested_product: int | None = None
    if req.subscription_params is not None:
        params = req.subscription_params.model_dump(exclude_unset=True)
        provision = SubscriptionProvision(customer_id=customer.ref_id, **params)
        sub = provision_unanswered(
            s, env_id, provision, created=customer, newcomer=True, plan=plan, product=plan_product
        )
        requested_product = sub.product_pk
    # One subscription per product (the requested one's is skipped), so each is the customer's first there.
    for product in published:
        settings = product.product_settings or {}
        setup, plan_ref = settings.get("subscriptionStartSetup"), settings.get("subscriptionStartPlanId")
        if product.pk == requested_product or setup not in ("FREE_PLAN", "TRIAL_PERIOD") or not plan_ref:
            continue
        if product_of_plan(s, env_id, plan_ref) != product.pk:
            continue  # the start plan is not published (yet): nothing to start on
        trial = TrialOverride(is_trial=True) if setup == "TRIAL_PERIOD" else None
        provision_unanswered(
            s,
            env_id,
            SubscriptionProvision(customer_id=customer.ref_id, plan_id=plan_ref, trial_override_configuration=trial),
            created=customer,
            newcomer=True,
            product=product,  # read above (found in the session's identity map before, not read again)
        )


def _promotion_code(req: CustomerProvisionWithSubscription) -> str | None:
    params = req.subscription_params
    code = params.applied_coupon.promotion_code if params is not None and params.applied_coupon else None
    return code or None


def _prefetch_promotion_code(db: Database, env_id: int, req: CustomerProvisionWithSubscription) -> dict[str, Any]:
    params = req.subscription_params
    code = _promotion_code(req)
    if params is None or code is None:
        return {}
    information = params.billing_information.wire() if params.billing_information else None
    linked = next((link.id for link in req.integrations or [] if link.vendor_identifier == "STRIPE"), None)
    return ports.billing.impl.prefetch_promotion_code(
        db, env_id, req.id, information, code, customer_integration=linked
    )
