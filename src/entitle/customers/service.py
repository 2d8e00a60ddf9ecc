"""Customer use cases, one transaction each.

Archiving is a tombstone: name and email are erased, the customer disappears from reads and
lists, and its id can never be provisioned again (a 409 that the client must not retry).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.billing import customer_sync as billing_customers
from entitle.billing import store as billing_store
from entitle.billing.models import CUSTOMER as CUSTOMER_LINK
from entitle.billing.store import SyncState
from entitle.catalog.coupons import store as coupons
from entitle.clock import utcnow
from entitle.customers import store
from entitle.customers.models import Customer, CustomerIntegration
from entitle.customers.schemas import (
    CustomerFields,
    CustomerImport,
    CustomerProvision,
    CustomerUpdate,
    IntegrationLink,
    LinkBody,
    PaymentMethodAttach,
)
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from entitle.webhooks import emit as webhooks


class CustomerArchived(FailedPrecondition):
    code = "CUSTOMER_ARCHIVED"

    def __init__(self, ref_id: str) -> None:
        super().__init__(f"customer '{ref_id}' was archived; its id cannot be provisioned again")


@dataclass(frozen=True)
class CustomerView:
    customer: Customer
    links: list[CustomerIntegration]
    # Its sync with each billing integration (`syncStates`, our extension).
    sync_states: list[SyncState] = field(default_factory=list)


def _view(s: Session, customer: Customer) -> CustomerView:
    states = billing_store.sync_states_of(s, CUSTOMER_LINK, [customer.pk]).get(customer.pk, [])
    return CustomerView(customer, store.links_of(s, [customer.pk]).get(customer.pk, []), states)


def _apply_fields(s: Session, env_id: int, customer: Customer, req: CustomerFields) -> None:
    fields = req.model_fields_set
    for name in ("name", "email", "billing_id", "billing_currency", "language", "timezone"):
        if name in fields:
            setattr(customer, name, getattr(req, name))
    if "coupon_id" in fields:
        # "" clears the coupon, as the contract's `couponId: str | "" | null` allows.
        customer.coupon_ref = req.coupon_id or None
        if customer.coupon_ref:
            _check_coupon(s, env_id, customer.coupon_ref)
    if "metadata" in fields:
        customer.metadata_ = dict(req.metadata or {})
    if "passthrough" in fields:
        customer.passthrough = req.passthrough.model_dump(by_alias=True, exclude_none=True) if req.passthrough else None


def _check_coupon(s: Session, env_id: int, coupon_ref: str) -> None:
    coupon = coupons.find(s, env_id, coupon_ref)
    if coupon is None:
        raise InvalidArgument(f"coupon '{coupon_ref}' does not exist")
    if coupon.status != "ACTIVE":
        raise InvalidArgument(f"coupon '{coupon_ref}' is archived")


def _replace_links(s: Session, env_id: int, customer: Customer, links: list[IntegrationLink]) -> None:
    seen: set[str] = set()
    for link in links:
        if link.id in seen:
            raise InvalidArgument(f"integration '{link.id}' is listed twice")
        seen.add(link.id)
    for existing in store.links_of(s, [customer.pk]).get(customer.pk, []):
        s.delete(existing)
    s.flush()
    for link in links:
        s.add(
            CustomerIntegration(
                environment_id=env_id,
                customer_pk=customer.pk,
                integration_id=link.id,
                vendor_identifier=link.vendor_identifier,
                synced_entity_id=link.synced_entity_id,
            )
        )


def provision_customer(db: Database, env_id: int, req: CustomerProvision) -> CustomerView:
    with db.transaction() as s:
        existing = store.find(s, env_id, req.id)
        if existing is not None:
            if existing.archived_at is not None:
                raise CustomerArchived(req.id)
            raise AlreadyExists("customer", req.id)
        customer = Customer(environment_id=env_id, ref_id=req.id, metadata_={})
        _apply_fields(s, env_id, customer, req)
        if req.default_payment_method is not None:
            customer.default_payment_method = req.default_payment_method.model_dump(by_alias=True)
        s.add(customer)
        s.flush()
        if req.integrations:
            _replace_links(s, env_id, customer, req.integrations)
            s.flush()
        webhooks.customer_changed(s, "customer.created", customer)
        if _stripe_info(req):
            billing_customers.billing_info_passed(s, customer)  # synced now, ahead of its subscriptions
        _start_journey(s, env_id, customer, req)
        return _view(s, customer)


def _stripe_info(req: CustomerFields) -> bool:
    """Whether billing information for Stripe was passed (address, tax ids, payment method, ...).

    A `defaultPaymentMethod` given on creation is not enough on its own: it is attached when the
    customer's first paid subscription makes the Stripe customer (`POST .../payment-method` syncs at once).
    """
    return req.passthrough is not None and req.passthrough.stripe is not None


def _start_journey(s: Session, env_id: int, customer: Customer, req: CustomerProvision) -> None:
    """Give a new customer its first subscriptions: the requested one (`subscriptionParams`), and for
    every other product whose journey starts on a free plan or a trial, that plan."""
    from entitle.catalog.products.models import Product
    from entitle.subscriptions.schemas import SubscriptionProvision, TrialOverride
    from entitle.subscriptions.service import product_of_plan, provision_in

    requested_product: int | None = None
    if req.subscription_params is not None:
        params = req.subscription_params.model_dump(exclude_unset=True)
        result = provision_in(s, env_id, SubscriptionProvision(customer_id=customer.ref_id, **params))
        requested_product = result.view.sub.product_pk
    for product in s.scalars(select(Product).where(Product.environment_id == env_id, Product.status == "PUBLISHED")):
        settings = product.product_settings or {}
        setup, plan_ref = settings.get("subscriptionStartSetup"), settings.get("subscriptionStartPlanId")
        if product.pk == requested_product or setup not in ("FREE_PLAN", "TRIAL_PERIOD") or not plan_ref:
            continue
        if product_of_plan(s, env_id, plan_ref) != product.pk:
            continue  # the start plan is not published (yet): nothing to start on
        trial = TrialOverride(is_trial=True) if setup == "TRIAL_PERIOD" else None
        provision_in(
            s,
            env_id,
            SubscriptionProvision(customer_id=customer.ref_id, plan_id=plan_ref, trial_override_configuration=trial),
        )


def get_customer(db: Database, env_id: int, ref_id: str) -> CustomerView:
    with db.read() as s:
        return _view(s, store.get_live(s, env_id, ref_id))


def update_customer(db: Database, env_id: int, ref_id: str, req: CustomerUpdate) -> CustomerView:
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id, for_update=True)
        _apply_fields(s, env_id, customer, req)
        if "integrations" in req.model_fields_set:
            _replace_links(s, env_id, customer, req.integrations or [])
        customer.updated_at = utcnow()
        s.flush()
        webhooks.customer_changed(s, "customer.updated", customer)
        if "passthrough" in req.model_fields_set and _stripe_info(req):
            billing_customers.billing_info_passed(s, customer)
        return _view(s, customer)


def attach_payment_method(db: Database, env_id: int, ref_id: str, req: PaymentMethodAttach) -> CustomerView:
    """The application collected a payment method itself (e.g. Stripe Elements): it becomes the
    customer's default, and the customer is synced so the provider charges it."""
    from entitle.billing import store as billing
    from entitle.billing.service import IntegrationMismatch

    if req.vendor_identifier != "STRIPE":
        raise InvalidArgument(f"vendorIdentifier {req.vendor_identifier} is not a billing provider Entitle connects")
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id, for_update=True)
        # `STRIPE` names the integration billing the customer; an integration id must be that one (or,
        # for a customer bound to none yet, any connected one: the customer is then billed there).
        binding = billing.customer_binding(s, customer)
        named = req.integration_id == "STRIPE"
        integration = binding.integration if named else billing.integration_in(s, env_id, req.integration_id)
        if integration is None:
            raise NotFound("integration", req.integration_id)
        if not named and binding.excludes(integration):
            raise IntegrationMismatch(
                f"customer '{ref_id}' is billed by another integration than '{req.integration_id}'"
            )
        customer.default_payment_method = {"billingId": req.payment_method_id, "type": "CARD"}
        if req.billing_currency is not None:
            customer.billing_currency = req.billing_currency
        customer.updated_at = utcnow()
        s.flush()
        webhooks.customer_changed(s, "customer.updated", customer)
        billing_customers.billing_info_passed(s, customer, integration)
        return _view(s, customer)


def detach_payment_method(db: Database, env_id: int, ref_id: str) -> CustomerView:
    """Forget the customer's default payment method (it stays at the provider)."""
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id, for_update=True)
        customer.default_payment_method = None
        customer.updated_at = utcnow()
        s.flush()
        webhooks.customer_changed(s, "customer.updated", customer)
        return _view(s, customer)


def list_customers(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    email: str | None = None,
    name: str | None = None,
    created_at: CreatedAtRange = CreatedAtRange(),
) -> tuple[Page[Customer], dict[int, list[CustomerIntegration]], dict[int, list[SyncState]]]:
    with db.read() as s:
        result = store.list_page(s, env_id, page, email=email, name=name, created_at=created_at)
        pks = [c.pk for c in result.items]
        return result, store.links_of(s, pks), billing_store.sync_states_of(s, CUSTOMER_LINK, pks)


def archive_customer(db: Database, env_id: int, ref_id: str) -> CustomerView:
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id, for_update=True)
        customer.archived_at = utcnow()
        customer.updated_at = customer.archived_at
        customer.name = None
        customer.email = None
        from entitle.subscriptions.service import end_all_for_archived_customer

        end_all_for_archived_customer(s, customer)
        webhooks.customer_changed(s, "customer.archived", customer)
        return _view(s, customer)


def unarchive_customer(db: Database, env_id: int, ref_id: str) -> CustomerView:
    with db.transaction() as s:
        customer = store.find(s, env_id, ref_id)
        if customer is None:
            raise NotFound("customer", ref_id)
        if customer.archived_at is not None:
            customer.archived_at = None
            customer.updated_at = utcnow()
            s.flush()
            # Its checks answered "customer not found" while archived; its live grants count again.
            from entitle.subscriptions.models import Subscription

            held = select(Subscription.resource_ref).where(
                Subscription.customer_pk == customer.pk, Subscription.resource_ref.is_not(None)
            )
            webhooks.customer_unarchived(s, customer, sorted({r for r in s.scalars(held.distinct()) if r}))
        return _view(s, customer)


def import_customers(db: Database, env_id: int, req: CustomerImport) -> list[str]:
    """Create the customers that do not exist yet; existing and archived ids are left as they are."""
    ids = [c.id for c in req.customers]
    if len(set(ids)) != len(ids):
        raise InvalidArgument("customer ids in one import must be unique")
    with db.transaction() as s:
        taken = store.existing_ids(s, env_id, ids)
        created: list[str] = []
        for item in req.customers:
            if item.id in taken:
                continue
            customer = Customer(
                environment_id=env_id,
                ref_id=item.id,
                name=item.name,
                email=item.email,
                billing_id=item.billing_id,
                metadata_=dict(item.metadata or {}),
            )
            s.add(customer)
            webhooks.customer_changed(s, "customer.created", customer)
            created.append(item.id)
        s.flush()
        return created


# -- integration links --------------------------------------------------------------------------


def list_links(
    db: Database, env_id: int, ref_id: str, page: PageRequest, vendors: list[str] | None
) -> Page[CustomerIntegration]:
    with db.read() as s:
        customer = store.get_live(s, env_id, ref_id)
        return store.list_links_page(s, customer.pk, page, vendors)


def link_integration(db: Database, env_id: int, ref_id: str, link: IntegrationLink | LinkBody) -> CustomerIntegration:
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id, for_update=True)
        if store.link(s, customer.pk, link.id) is not None:
            raise AlreadyExists("customer integration", link.id)
        row = CustomerIntegration(
            environment_id=env_id,
            customer_pk=customer.pk,
            integration_id=link.id,
            vendor_identifier=link.vendor_identifier,
            synced_entity_id=link.synced_entity_id,
        )
        s.add(row)
        s.flush()
        return row


def get_link(db: Database, env_id: int, ref_id: str, integration_id: str) -> CustomerIntegration:
    with db.read() as s:
        customer = store.get_live(s, env_id, ref_id)
        row = store.link(s, customer.pk, integration_id)
        if row is None:
            raise NotFound("customer integration", integration_id)
        return row


def update_link(
    db: Database, env_id: int, ref_id: str, integration_id: str, synced_entity_id: str | None
) -> CustomerIntegration:
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id)
        row = store.link(s, customer.pk, integration_id)
        if row is None:
            raise NotFound("customer integration", integration_id)
        row.synced_entity_id = synced_entity_id
        row.updated_at = utcnow()
        return row


def unlink_integration(db: Database, env_id: int, ref_id: str, integration_id: str) -> CustomerIntegration:
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id)
        row = store.link(s, customer.pk, integration_id)
        if row is None:
            raise NotFound("customer integration", integration_id)
        s.delete(row)
        return row
