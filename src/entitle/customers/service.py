"""Customer use cases, one transaction each.

Archiving is a tombstone: name and email are erased, the customer disappears from reads and
lists, and its id can never be provisioned again (a 409 that the client must not retry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from entitle.catalog.coupons import store as coupons
from entitle.clock import utcnow
from entitle.customers import events, ports, store
from entitle.customers.events import entitlements_changed
from entitle.customers.models import Customer, CustomerIntegration
from entitle.customers.schemas import (
    CustomerFields,
    CustomerImport,
    CustomerProvision,
    CustomerUpdate,
    IntegrationLink,
    LinkBody,
)
from entitle.customers.store import CustomerArchived
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.db.rows import insert_row, new_row
from entitle.domain_events import publish
from entitle.errors import AlreadyExists, InvalidArgument, NotFound
from entitle.sync_states import CUSTOMER as CUSTOMER_LINK
from entitle.sync_states import SyncState, sync_states_of


@dataclass(frozen=True)
class CustomerView:
    customer: Customer
    links: list[CustomerIntegration]
    # Its sync with each billing integration (`syncStates`, our extension).
    sync_states: list[SyncState] = field(default_factory=list)


def view(s: Session, customer: Customer, links: list[CustomerIntegration] | None = None) -> CustomerView:
    """`links`: the customer's integration links when the caller knows them (None: read them)."""
    states = sync_states_of(s, (customer.environment_id,), CUSTOMER_LINK, [customer.pk]).get(customer.pk, [])
    if links is None:
        links = store.links_of(s, [customer.pk]).get(customer.pk, [])
    return CustomerView(customer, links, states)


# What a billing provider's customer also holds: an update changing one is sent on (CustomerUpdated).
CONTACT_FIELDS = ("name", "email", "language")


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
    method = req.passthrough.stripe.payment_method_id if req.passthrough and req.passthrough.stripe else None
    if method:
        # A provider reference, not billing details: kept as the contract's defaultPaymentMethod (as
        # POST .../payment-method does), so provisioning knows a card is on file.
        customer.default_payment_method = {"billingId": method, "type": "CARD"}


def given_payment_method(req: CustomerFields) -> str | None:
    """The payment method id the request gives the customer (`defaultPaymentMethod.billingId` wins over
    `passthrough.stripe.paymentMethodId`, as it is applied last)."""
    given = getattr(req, "default_payment_method", None)
    if given is not None and given.billing_id:
        return str(given.billing_id)
    stripe = req.passthrough.stripe if req.passthrough else None
    return stripe.payment_method_id if stripe is not None else None


def check_payment_method(db: Database, env_id: int, ref_id: str, req: CustomerFields) -> dict[str, Any] | None:
    """Before the transaction: the given payment method as the billing provider has it (None: none given,
    or no provider bills the customer)."""
    method = given_payment_method(req)
    return ports.payment_method.impl(db, env_id, ref_id, req, method) if method else None


def _forward_billing_information(s: Session, customer: Customer, req: CustomerFields) -> bool:
    """Billing information (or `shouldSyncFree`) goes to the customer's billing provider in a sealed job
    and is not kept here (a 400 when no integration can take it). Whether any was passed."""
    stripe = req.passthrough.stripe if req.passthrough is not None else None
    if stripe is None and not req.should_sync_free:
        return False
    ports.billing_information.impl(s, customer, stripe.forwarded() if stripe is not None else {})
    return True


def _check_coupon(s: Session, env_id: int, coupon_ref: str) -> None:
    coupon = coupons.find(s, env_id, coupon_ref)
    if coupon is None:
        raise InvalidArgument(f"coupon '{coupon_ref}' does not exist")
    if coupon.status != "ACTIVE":
        raise InvalidArgument(f"coupon '{coupon_ref}' is archived")


def _adopt_billing_id(customer: Customer, vendor: str, synced_entity_id: str | None) -> None:
    """A Stripe link's `syncedEntityId` is the customer's Stripe customer: it becomes its `billingId`,
    which the billing adapter bills (as a `billingId` sent on the customer would)."""
    if vendor == "STRIPE" and synced_entity_id:
        customer.billing_id = synced_entity_id


def _replace_links(
    s: Session, env_id: int, customer: Customer, links: list[IntegrationLink], billing_id_sent: bool = False
) -> None:
    seen: set[str] = set()
    for i, link in enumerate(links):
        if link.id in seen:
            raise InvalidArgument(f"integration '{link.id}' is listed twice")
        seen.add(link.id)
        named = link.synced_entity_id if link.vendor_identifier == "STRIPE" else None
        if named and billing_id_sent and customer.billing_id is not None and named != customer.billing_id:
            raise InvalidArgument(
                f"integrations[{i}].syncedEntityId '{named}' and billingId '{customer.billing_id}' name different "
                "Stripe customers"
            )
        _adopt_billing_id(customer, link.vendor_identifier, link.synced_entity_id)
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
    """A new customer on its own; `entitle.subscriptions.journey` provisions one with its first subscriptions."""
    checked = check_payment_method(db, env_id, req.id, req)
    with refusing_taken_id(db, env_id, req.id), db.transaction() as s:
        customer = create_customer(s, env_id, req, payment_method=checked, look_up=False)
        # A new customer's integration links are the ones it was given (none: nothing to read).
        return view(s, customer, None if req.integrations else [])


@contextmanager
def refusing_taken_id(db: Database, env_id: int | Callable[[], int | None], ref_id: str) -> Iterator[None]:
    """Around a transaction that inserts the customer without looking its id up first (`look_up=False`):
    the unique key refuses a taken id, and this answers that refusal with the 409 the lookup would give,
    from a read after the transaction rolled back. Any other integrity error is left as it is.
    `env_id`: the environment, or what tells it once the transaction has learnt it (None: not yet)."""
    try:
        yield
    except IntegrityError:
        environment = env_id() if callable(env_id) else env_id
        if environment is not None:
            with db.read() as s:
                _refuse_existing(store.find(s, environment, ref_id), ref_id)
        raise


def _refuse_existing(existing: Customer | None, ref_id: str) -> None:
    if existing is not None:
        if existing.archived_at is not None:
            raise CustomerArchived(ref_id) from None
        raise AlreadyExists("customer", ref_id) from None


def create_customer(
    s: Session,
    env_id: int,
    req: CustomerProvision,
    *,
    payment_method: dict[str, Any] | None = None,
    look_up: bool = True,
) -> Customer:
    """Create the customer inside the caller's transaction (409 when the id is taken or was archived).
    `payment_method`: the given one as `check_payment_method` read it at the provider. `look_up=False`:
    the id is not read first (a read inside the write lock, on every provisioning); the caller's
    transaction runs inside `refusing_taken_id`, which turns the unique key's refusal into the 409."""
    if look_up:
        _refuse_existing(store.find(s, env_id, req.id), req.id)
    customer = new_row(Customer, environment_id=env_id, ref_id=req.id, metadata_={})
    _apply_fields(s, env_id, customer, req)
    if req.default_payment_method is not None:
        customer.default_payment_method = req.default_payment_method.model_dump(by_alias=True)
    if payment_method is not None:
        customer.default_payment_method = payment_method
    insert_row(s, customer)  # one INSERT, without the unit of work when nothing else waits for a flush
    if req.integrations:
        _replace_links(s, env_id, customer, req.integrations, "billing_id" in req.model_fields_set)
        s.flush()
    publish(s, events.CustomerCreated(env_id=env_id, customer=customer))
    # With billing information the billing adapter syncs it now, ahead of its subscriptions. A
    # `defaultPaymentMethod` alone does not: the customer's first paid subscription attaches it.
    _forward_billing_information(s, customer, req)
    return customer


def get_customer(db: Database, env_id: int, ref_id: str) -> CustomerView:
    with db.read() as s:
        return view(s, store.get_live(s, env_id, ref_id))


def get_customer_or_archived(db: Database, env_id: int, ref_id: str) -> CustomerView:
    """The console's read: an archived customer too (its page says it is archived and offers to unarchive
    it), where the API answers 404 as Stigg does."""
    with db.read() as s:
        customer = store.find(s, env_id, ref_id)
        if customer is None:
            raise NotFound("customer", ref_id)
        return view(s, customer)


def update_customer(db: Database, env_id: int, ref_id: str, req: CustomerUpdate) -> CustomerView:
    checked = check_payment_method(db, env_id, ref_id, req)
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id, for_update=True, write=True)
        contact_before = {name: getattr(customer, name) for name in CONTACT_FIELDS}
        _apply_fields(s, env_id, customer, req)
        if checked is not None:
            customer.default_payment_method = checked
        if "integrations" in req.model_fields_set:
            sent = "billing_id" in req.model_fields_set
            _replace_links(s, env_id, customer, req.integrations or [], sent)
        customer.updated_at = utcnow()
        s.flush()
        changed = frozenset(name for name, was in contact_before.items() if getattr(customer, name) != was)
        # Billing information first: the customer sync it enqueues also sends the changed contact fields, so
        # the billing adapter's reaction to CustomerUpdated has nothing left to send.
        _forward_billing_information(s, customer, req)
        publish(s, events.CustomerUpdated(env_id=env_id, customer=customer, contact_changed=changed))
        return view(s, customer)


def detach_payment_method(db: Database, env_id: int, ref_id: str) -> CustomerView:
    """Forget the customer's default payment method (it stays at the provider)."""
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id, for_update=True, write=True)
        customer.default_payment_method = None
        customer.updated_at = utcnow()
        s.flush()
        publish(s, events.CustomerUpdated(env_id=env_id, customer=customer))
        return view(s, customer)


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
        return result, store.links_of(s, pks), sync_states_of(s, (env_id,), CUSTOMER_LINK, pks)


def archive_customer(db: Database, env_id: int, ref_id: str) -> CustomerView:
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id, for_update=True)
        customer.archived_at = utcnow()
        customer.updated_at = customer.archived_at
        customer.name = None
        customer.email = None
        # Its subscriptions end (the subscriptions domain reacts), then the customer's own grants go.
        publish(s, events.CustomerArchived(env_id=env_id, customer=customer))
        entitlements_changed(s, env_id, customer.ref_id)
        return view(s, customer)


def unarchive_customer(db: Database, env_id: int, ref_id: str) -> CustomerView:
    with db.transaction() as s:
        customer = store.find(s, env_id, ref_id)
        if customer is None:
            raise NotFound("customer", ref_id)
        if customer.archived_at is not None:
            customer.archived_at = None
            customer.updated_at = utcnow()
            s.flush()
            # Its checks answered "customer not found" while archived; its live grants count again: the
            # customer's own, and those of each resource it held subscriptions for.
            publish(s, events.CustomerUnarchived(env_id=env_id, customer=customer))
            entitlements_changed(s, env_id, customer.ref_id)
            for resource_ref in ports.held_resources.impl(s, customer):
                entitlements_changed(s, env_id, customer.ref_id, resource_ref)
        return view(s, customer)


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
            publish(s, events.CustomerCreated(env_id=env_id, customer=customer))
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
        customer = store.get_live(s, env_id, ref_id, for_update=True, write=True)
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
        _adopt_billing_id(customer, link.vendor_identifier, link.synced_entity_id)
        customer.updated_at = utcnow()
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
        customer = store.get_live(s, env_id, ref_id, for_update=True, write=True)
        row = store.link(s, customer.pk, integration_id)
        if row is None:
            raise NotFound("customer integration", integration_id)
        row.synced_entity_id = synced_entity_id
        row.updated_at = utcnow()
        _adopt_billing_id(customer, row.vendor_identifier, synced_entity_id)
        customer.updated_at = row.updated_at
        return row


def unlink_integration(db: Database, env_id: int, ref_id: str, integration_id: str) -> CustomerIntegration:
    with db.transaction() as s:
        customer = store.get_live(s, env_id, ref_id)
        row = store.link(s, customer.pk, integration_id)
        if row is None:
            raise NotFound("customer integration", integration_id)
        s.delete(row)
        return row
