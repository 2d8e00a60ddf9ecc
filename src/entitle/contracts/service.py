"""Contracts (`/api/v1/contracts`, `GET /api/v1/customers/{id}/contracts`): one customer's sales-led
subscriptions grouped under the caller's contract id (see `rules` for what a contract may hold and its
state). Each use case is one transaction that first locks the customer, so two requests on one customer's
contracts (and subscriptions) run one after the other.

- Creating one is idempotent on `contractId`: the same id again answers the contract as it is. It creates
  its new subscriptions (the provisioning body) and links existing ones, all or nothing.
- Updating replaces its subscriptions when `subscriptionIds` is given (those left out leave the contract
  and keep running); archiving cancels every subscription still open on it, now, and keeps the contract.
- No billing contract is made at a provider: `setupBilling: true` is refused (400 UNSUPPORTED_FIELD); false
  and an omitted `setupBilling` (Stigg's default is true) provision access only (see `schemas.SetupBilling`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from entitle.catalog.packages import store as packages
from entitle.catalog.products.models import Product
from entitle.clock import as_utc, utcnow
from entitle.contracts import rules, store
from entitle.contracts.models import Contract
from entitle.contracts.schemas import ContractCreate, ContractUpdate
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest, decode_cursor, encode_cursor
from entitle.errors import AlreadyExists, FailedPrecondition, InvalidArgument, UnsupportedField
from entitle.subscriptions import ports
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.provisioning import downgrade_to_free, provision_unanswered
from entitle.subscriptions.rules import OPEN, Status
from entitle.subscriptions.schemas import SubscriptionProvision
from entitle.subscriptions.transitions import end_subscription


@dataclass
class Member:
    sub: Subscription
    plan_name: str | None
    product_name: str | None


@dataclass
class ContractView:
    contract: Contract
    customer_ref: str
    members: list[Member] = field(default_factory=list)

    @property
    def state(self) -> str:
        return rules.state_of([m.sub.status for m in self.members], self.contract.archived_at is not None)


def _refuse_billing(setup_billing: bool | None) -> None:
    if setup_billing:
        raise UnsupportedField(
            "setupBilling",
            "a billing contract at the provider (contract invoices) is not supported yet; send false to provision "
            "access only",
        )


def _check_dates(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and as_utc(end) <= as_utc(start):
        raise InvalidArgument("activationEndDate must be after activationStartDate")


def create_contract(db: Database, env_id: int, req: ContractCreate) -> ContractView:
    _refuse_billing(req.setup_billing)
    _check_dates(req.activation_start_date, req.activation_end_date)
    try:
        with db.transaction() as s:
            customer = customers.get_live(s, env_id, req.customer_id, for_update=True, write=True)
            ref = req.contract_id or f"contract-{uuid.uuid4().hex[:20]}"
            existing = store.find(s, env_id, ref)
            if existing is not None:
                if existing.customer_pk != customer.pk:
                    raise AlreadyExists("contract", ref)
                return _view(s, existing)  # the same contractId again: the contract as it is
            contract = Contract(
                environment_id=env_id,
                ref_id=ref,
                customer_pk=customer.pk,
                name=req.name,
                po_number=req.po_number,
                activation_start_date=req.activation_start_date,
                activation_end_date=req.activation_end_date,
            )
            s.add(contract)
            s.flush()
            chosen: list[Subscription] = []
            for index, item in enumerate(req.subscriptions or []):
                if item.new_subscription is not None:
                    chosen.append(_provision(s, env_id, customer, item.new_subscription, index))
                else:
                    assert item.existing_subscription_id is not None
                    chosen.append(subscriptions.get(s, env_id, item.existing_subscription_id, for_update=True))
            _link(s, contract, customer, chosen)
            return _view(s, contract)
    except IntegrityError as exc:
        # Another customer's request took this contractId (or a subscription) between our read and write.
        raise AlreadyExists("contract", req.contract_id or "") from exc


def _provision(s: Session, env_id: int, customer: Customer, req: SubscriptionProvision, index: int) -> Subscription:
    if req.customer_id != customer.ref_id:
        raise InvalidArgument(
            f"subscriptions[{index}].newSubscription is for customer '{req.customer_id}', not the contract's "
            f"'{customer.ref_id}'"
        )
    sub = provision_unanswered(s, env_id, req, created=customer)
    if sub.plan_ref != req.plan_id or (req.id is not None and sub.ref_id != req.id):
        raise FailedPrecondition(
            f"subscriptions[{index}].newSubscription would schedule a downgrade of subscription '{sub.ref_id}' "
            "instead of creating one: provision it with scheduleStrategy IMMEDIATE, or link it once it runs"
        )
    return sub


def _link(s: Session, contract: Contract, customer: Customer, chosen: list[Subscription]) -> None:
    taken = store.contract_of_subscriptions(s, [sub.pk for sub in chosen])
    for sub in chosen:
        other = taken.get(sub.pk)
        if other is not None and other.pk != contract.pk:
            raise FailedPrecondition(f"subscription '{sub.ref_id}' is already on contract '{other.ref_id}'")
    rules.check_members(customer.ref_id, [_member_rule(s, customer.ref_id, sub) for sub in chosen])
    store.replace_members(s, contract, [sub.pk for sub in chosen])


def _member_rule(s: Session, contract_customer: str, sub: Subscription) -> rules.Member:
    owner = s.get(Customer, sub.customer_pk)
    product = s.get(Product, sub.product_pk)
    return rules.Member(
        ref=sub.ref_id,
        customer_ref=owner.ref_id if owner is not None else "",
        product_ref=product.ref_id if product is not None else str(sub.product_pk),
        status=sub.status,
        currency=_currency(s, sub),
        custom_priced=sub.pricing_type == "CUSTOM" or bool(sub.price_overrides),
        externally_billed=bool(sub.billing_id),
    )


def _currency(s: Session, sub: Subscription) -> str | None:
    for entry in sub.price_overrides or []:
        if entry.get("currency"):  # a credit rate override is in credits, not money
            return str(entry["currency"])
    for charge in packages.charges_of(s, sub.plan_pk):
        if charge.billing_period == sub.billing_period and not charge.is_overage and charge.price_currency:
            return charge.price_currency
    return None


def _view(s: Session, contract: Contract) -> ContractView:
    return _views(s, [contract])[0]


def _views(s: Session, contracts: list[Contract]) -> list[ContractView]:
    """The contracts with their subscriptions, each kind of row read once for all of them."""
    held = store.members(s, [c.pk for c in contracts])
    subs = subscriptions.by_pks(s, [pk for pks in held.values() for pk in pks])
    names = store.display_names(s, [sub.plan_pk for sub in subs.values()], [sub.product_pk for sub in subs.values()])
    owners = subscriptions.customers_by_pk(s, [c.customer_pk for c in contracts])
    views = []
    for contract in contracts:
        members = [
            Member(sub, names.plans.get(sub.plan_pk), names.products.get(sub.product_pk))
            for pk in held.get(contract.pk, [])
            if (sub := subs.get(pk)) is not None
        ]
        owner = owners.get(contract.customer_pk)
        views.append(ContractView(contract, owner.ref_id if owner is not None else "", members))
    return views


def get_contract(db: Database, env_id: int, ref: str) -> ContractView:
    with db.read() as s:
        return _view(s, store.get(s, env_id, ref))


def update_contract(db: Database, env_id: int, ref: str, req: ContractUpdate) -> ContractView:
    _refuse_billing(req.setup_billing)
    fields = req.model_fields_set
    with db.transaction() as s:
        contract = store.get(s, env_id, ref)
        customer = s.get(Customer, contract.customer_pk)
        assert customer is not None
        customer = customers.get_live(s, env_id, customer.ref_id, for_update=True, write=True)
        contract = store.get(s, env_id, ref, for_update=True)
        if contract.archived_at is not None:
            raise FailedPrecondition(f"contract '{ref}' is archived")
        for name in ("name", "po_number", "activation_start_date", "activation_end_date"):
            if name in fields:
                setattr(contract, name, getattr(req, name))
        _check_dates(contract.activation_start_date, contract.activation_end_date)
        if "subscription_ids" in fields:
            chosen = [subscriptions.get(s, env_id, sub_ref, for_update=True) for sub_ref in req.subscription_ids or []]
            _link(s, contract, customer, chosen)
        contract.updated_at = utcnow()
        s.flush()
        return _view(s, contract)


def archive_contract(db: Database, env_id: int, ref: str) -> ContractView:
    """Archive the contract and cancel its open subscriptions now (archiving it again changes nothing)."""
    now = utcnow()
    with db.transaction() as s:
        contract = store.get(s, env_id, ref)
        owner = s.get(Customer, contract.customer_pk)
        if owner is not None and owner.archived_at is None:
            customers.get_live(s, env_id, owner.ref_id, for_update=True, write=True)
        contract = store.get(s, env_id, ref, for_update=True)
        if contract.archived_at is None:
            contract.archived_at = now
            for pk in store.members(s, [contract.pk]).get(contract.pk, []):
                sub = subscriptions.by_pk(s, pk, for_update=True)
                if sub is not None and sub.status in OPEN:
                    end_subscription(s, sub, now, Status.CANCELED, "Immediate")
                    downgrade_to_free(s, sub, now)
        s.flush()
        return _view(s, contract)


def list_contracts(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    customer_ref: str | None = None,
    name: str | None = None,
    states: list[str] | None = None,
) -> Page[ContractView]:
    """A page of contracts by creation, filtered by customer, name and (derived) state."""
    with db.read() as s:
        customer_pk: int | None = None
        if customer_ref is not None:
            customer = customers.find(s, env_id, customer_ref)
            if customer is None:
                return Page(items=[], next=None, prev=None)
            customer_pk = customer.pk
        views = _views(s, store.of_environment(s, env_id, customer_pk, name))
    if states:
        views = [v for v in views if v.state in states]
    return _page(views, page)


def _page(views: list[ContractView], page: PageRequest) -> Page[ContractView]:
    # The state is derived from the subscriptions, so the filter runs before paging, in memory (a sales team's
    # contracts, not a table of millions).
    if page.before:
        boundary = decode_cursor(page.before)
        earlier = [v for v in views if v.contract.pk < boundary]
        items = earlier[-page.limit :]
        has_more = len(earlier) > page.limit
        return Page(
            items,
            encode_cursor(items[-1].contract.pk) if items else None,
            encode_cursor(items[0].contract.pk) if items and has_more else None,
        )
    if page.after:
        boundary = decode_cursor(page.after)
        views = [v for v in views if v.contract.pk > boundary]
    items = views[: page.limit]
    has_more = len(views) > page.limit
    return Page(
        items,
        encode_cursor(items[-1].contract.pk) if items and has_more else None,
        encode_cursor(items[0].contract.pk) if items and page.after else None,
    )


def customer_contracts(db: Database, env_id: int, customer_ref: str) -> list[ContractView]:
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        return _views(s, store.of_environment(s, env_id, customer.pk))


def install() -> None:
    """Answer the subscriptions' `contracts_of` port (their `contractId`)."""
    ports.contracts_of.install(contract_refs_of)


def contract_refs_of(s: Session, subscription_pks: Sequence[int]) -> dict[int, str]:
    """The contract each subscription is on (the subscriptions' `contractId`), in one query."""
    return {pk: c.ref_id for pk, c in store.contract_of_subscriptions(s, list(subscription_pks)).items()}
