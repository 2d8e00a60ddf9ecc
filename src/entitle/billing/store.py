"""Queries for integrations and billing links, and which integration bills what.

Several integrations of one vendor may be connected to an environment (two Stripe accounts). The
catalog (plans, add-ons, prices, coupons) goes to every connected one (`active_integrations`); a
customer is billed by exactly one (`integration_for_customer`), and a subscription by its customer's
(`integration_for_subscription`). The billing link of an entity records which integration holds it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, event, select
from sqlalchemy.orm import Session, object_session

from entitle.billing.models import (
    COUPON,
    CUSTOMER,
    ERROR,
    PACKAGE,
    PACKAGE_CHARGE,
    PENDING,
    STRIPE,
    SUBSCRIPTION,
    SUCCESS,
    VENDORS,
    BillingEvent,
    BillingLink,
    Integration,
)
from entitle.catalog.coupons.models import Coupon
from entitle.catalog.packages.models import Package
from entitle.clock import utcnow
from entitle.customers.models import Customer, CustomerIntegration
from entitle.db import memo
from entitle.db.memo import rows_once
from entitle.db.pagination import Page, PageRequest, paginate
from entitle.environments.facts import Fact
from entitle.subscriptions.models import Subscription
from entitle.sync_states import SyncState

# Where an integration chosen by `billingInformation.integrationId` waits, in the provisioning
# transaction's session, for the hooks that run before the subscription's billing link exists.
_CHOSEN = "entitle.billing.chosen_integration"
# Billing information for a subscription's provider subscription, waiting in the transaction's session
# for the sync (or update) job that carries it sealed (`take_sealed`).
_SEALED = "entitle.billing.sealed_subscription_information"
# The provider promotion code a request applied to a subscription, for its sync/update job or Checkout.
_PROMOTION = "entitle.billing.applied_promotion_code"
# Link states that tie a customer to the integration holding them (a NO_SYNC_REQUIRED link does not).
_BINDING_STATES = (PENDING, SUCCESS, ERROR)


# Built once, as `_SYNC_STATES_OF` (their cache keys are memoized on them): every provisioning asks.
_VENDOR_INTEGRATIONS = (
    select(Integration)
    .where(Integration.environment_id == bindparam("env_id"), Integration.vendor == bindparam("vendor"))
    .order_by(Integration.pk)
)


_INTEGRATIONS_MEMO = "billing.integrations"


# Most environments never connected a vendor: each process remembers that (`entitle.environments.facts`),
# so a provisioning reads nothing there. Removed integrations stay, so only a new one can break it.
NO_INTEGRATION = Fact("billing.no_integration")


def vendor_integrations(session: Session, env_id: int, vendor: str = STRIPE) -> list[Integration]:
    """Every integration of the environment with a vendor, removed ones too, in connection order; read
    once per transaction (provisioning asks who bills a subscription from several subscribers)."""
    if _never_billed(session, env_id, vendor):
        return []

    def load() -> list[Integration]:
        found = list(session.scalars(_VENDOR_INTEGRATIONS, {"env_id": env_id, "vendor": vendor}))
        if not found:
            NO_INTEGRATION.learned(session, env_id, vendor)
        return found

    return list(rows_once(session, (_INTEGRATIONS_MEMO, env_id, vendor), Integration, load))


def _never_billed(session: Session, env_id: int, vendor: str) -> bool:
    """The process knows the environment never had an integration with the vendor, and the session adds
    none (a new one waiting to be flushed: the read would flush and find it)."""
    if not NO_INTEGRATION.holds(session, env_id, vendor):
        return False
    return not any(isinstance(row, Integration) for row in session.new)


def _integration_added(_mapper: Any, _connection: Any, row: Integration) -> None:
    session = object_session(row)
    if session is not None:
        NO_INTEGRATION.broken(session, row.environment_id)


event.listen(Integration, "after_insert", _integration_added)


def active_integrations(session: Session, env_id: int, vendor: str = STRIPE) -> list[Integration]:
    """The environment's connected integrations with a vendor, the default first, then in connection order."""
    rows = [row for row in vendor_integrations(session, env_id, vendor) if row.removed_at is None]
    return sorted(rows, key=lambda row: not row.is_default)


def default_integration(session: Session, env_id: int, vendor: str = STRIPE) -> Integration | None:
    """The integration that bills customers linked to none: the one marked default, else the first
    connected one still active."""
    rows = active_integrations(session, env_id, vendor)
    return rows[0] if rows else None


def integration(session: Session, env_id: int, vendor: str) -> Integration | None:
    """The environment's default integration with a vendor (kept for callers that bill no one in
    particular; a customer's or subscription's integration comes from the functions below)."""
    return default_integration(session, env_id, vendor)


def integration_in(
    session: Session, env_id: int, ref: str, *, include_removed: bool = False, for_update: bool = False
) -> Integration | None:
    """One integration of the environment by its id."""
    stmt = select(Integration).where(Integration.environment_id == env_id, Integration.ref_id == ref)
    if not include_removed:
        stmt = stmt.where(Integration.removed_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


@dataclass(frozen=True)
class CustomerBinding:
    """The integration billing a customer (None: none connected, or the one it is bound to was removed)
    and whether the customer is bound to it (an integration link, or an entity already held there) or
    only falls to the environment's default."""

    integration: Integration | None
    bound: bool

    def excludes(self, other: Integration) -> bool:
        """Whether the customer is bound elsewhere, so `other` may not bill it."""
        return self.bound and (self.integration is None or self.integration.pk != other.pk)


def customer_binding(session: Session, customer: Customer, vendor: str = STRIPE) -> CustomerBinding:
    """Which integration bills the customer.

    1. Its integration link (`customer_integrations`, vendor STRIPE) naming an integration of the
       environment: that one (None once it is removed: the customer is not billed elsewhere silently).
    2. Else an integration already holding it (a customer billing link pending, synced or failing);
       None when only a removed one holds it.
    3. Else the environment's default integration (not bound: a subscription may choose another).
    """
    if not vendor_integrations(session, customer.environment_id, vendor):
        return CustomerBinding(None, False)  # nothing could name, hold or bill it: no query more
    named = session.scalars(
        select(Integration)
        .join(CustomerIntegration, CustomerIntegration.integration_id == Integration.ref_id)
        .where(
            CustomerIntegration.customer_pk == customer.pk,
            CustomerIntegration.vendor_identifier == vendor,
            Integration.environment_id == customer.environment_id,
            Integration.vendor == vendor,
        )
        .order_by(CustomerIntegration.pk)
    ).first()
    if named is not None:
        return CustomerBinding(named if named.removed_at is None else None, True)
    holding = session.scalars(
        select(Integration)
        .join(BillingLink, BillingLink.integration_pk == Integration.pk)
        .where(
            BillingLink.entity_kind == CUSTOMER,
            BillingLink.entity_pk == customer.pk,
            BillingLink.sync_state.in_(_BINDING_STATES),
            Integration.vendor == vendor,
        )
        .order_by(Integration.removed_at.is_not(None), Integration.pk)
    ).first()
    if holding is not None:
        # Held only by a removed integration: not billed elsewhere behind the operator's back (its
        # Stripe customer and payment method live in that account).
        return CustomerBinding(holding if holding.removed_at is None else None, True)
    return CustomerBinding(default_integration(session, customer.environment_id, vendor), False)


def integration_for_customer(session: Session, customer: Customer, vendor: str = STRIPE) -> Integration | None:
    return customer_binding(session, customer, vendor).integration


def choose_integration(session: Session, sub: Subscription, integration: Integration) -> None:
    """Record, for the rest of this transaction, that `sub` is billed by `integration` (its
    `billingInformation.integrationId`, checked by the caller)."""
    session.info.setdefault(_CHOSEN, {})[sub.pk] = integration.pk


def stash_sealed(session: Session, sub_pk: int, information: dict[str, Any]) -> None:
    session.info.setdefault(_SEALED, {})[sub_pk] = information


def take_sealed(session: Session, sub_pk: int) -> dict[str, Any] | None:
    """The billing information stashed for this subscription in this transaction, once."""
    stashed: dict[int, dict[str, Any]] = session.info.get(_SEALED, {})
    return stashed.pop(sub_pk, None)


def stash_promotion(session: Session, sub_pk: int, promotion_id: str, coupon_billing_id: str) -> None:
    session.info.setdefault(_PROMOTION, {})[sub_pk] = {"id": promotion_id, "coupon": coupon_billing_id}


def take_promotion(session: Session, sub_pk: int) -> dict[str, str] | None:
    """The promotion code applied to this subscription in this transaction (`id`, and the `coupon` it
    applies), once."""
    stashed: dict[int, dict[str, str]] = session.info.get(_PROMOTION, {})
    return stashed.pop(sub_pk, None)


def integration_for_subscription(session: Session, sub: Subscription, vendor: str = STRIPE) -> Integration | None:
    """Which integration bills the subscription: the one its billing link is held by (None once that one
    is removed), else the one chosen when it was provisioned, else its paying customer's."""
    if not vendor_integrations(session, sub.environment_id, vendor):
        return None
    linked = session.scalars(
        select(Integration)
        .join(BillingLink, BillingLink.integration_pk == Integration.pk)
        .where(BillingLink.entity_kind == SUBSCRIPTION, BillingLink.entity_pk == sub.pk, Integration.vendor == vendor)
        .order_by(BillingLink.pk.desc())
    ).first()
    if linked is not None:
        return linked if linked.removed_at is None else None
    chosen = session.info.get(_CHOSEN, {}).get(sub.pk)
    if chosen is not None:
        row = session.get(Integration, chosen)
        if row is not None and row.removed_at is None:
            return row
    customer = session.get(Customer, sub.paying_customer_pk or sub.customer_pk)
    if customer is None:
        return None
    return integration_for_customer(session, customer, vendor)


def integration_by_key_digest(session: Session, env_id: int, vendor: str, digest: str) -> Integration | None:
    """The environment's integration (also a removed one) connected with the key of this digest."""
    return session.scalars(
        select(Integration)
        .where(
            Integration.environment_id == env_id,
            Integration.vendor == vendor,
            Integration.secret_key_digest == digest,
        )
        .order_by(Integration.removed_at.is_not(None), Integration.pk)
        .with_for_update()
    ).first()


def integrations(session: Session, env_id: int) -> list[Integration]:
    """Every connected integration of the environment, in connection order."""
    return list(
        session.scalars(
            select(Integration)
            .where(Integration.environment_id == env_id, Integration.removed_at.is_(None))
            .order_by(Integration.pk)
        )
    )


def link(session: Session, integration_pk: int, kind: str, entity_pk: int) -> BillingLink | None:
    return session.scalars(
        select(BillingLink).where(
            BillingLink.integration_pk == integration_pk,
            BillingLink.entity_kind == kind,
            BillingLink.entity_pk == entity_pk,
        )
    ).one_or_none()


def links(session: Session, integration_pk: int, kind: str, entity_pks: Iterable[int]) -> dict[int, BillingLink]:
    pks = list(entity_pks)
    if not pks:
        return {}
    rows = session.scalars(
        select(BillingLink).where(
            BillingLink.integration_pk == integration_pk,
            BillingLink.entity_kind == kind,
            BillingLink.entity_pk.in_(pks),
        )
    )
    return {row.entity_pk: row for row in rows}


def links_by_billing_id(
    session: Session, integration_pk: int, kind: str, billing_ids: Iterable[str]
) -> list[BillingLink]:
    ids = list(billing_ids)
    if not ids:
        return []
    return list(
        session.scalars(
            select(BillingLink).where(
                BillingLink.integration_pk == integration_pk,
                BillingLink.entity_kind == kind,
                BillingLink.billing_id.in_(ids),
            )
        )
    )


def put_link(
    session: Session,
    integration: Integration,
    kind: str,
    entity_pk: int,
    state: str,
    *,
    billing_id: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> BillingLink:
    """Create or overwrite the link of one entity (its billing id survives a state without one)."""
    row = link(session, integration.pk, kind, entity_pk)
    if row is None:
        row = BillingLink(
            environment_id=integration.environment_id,
            integration_pk=integration.pk,
            entity_kind=kind,
            entity_pk=entity_pk,
        )
        session.add(row)
    row.sync_state = state
    row.reason = reason
    if billing_id is not None:
        row.billing_id = billing_id
    if details is not None:
        row.details = details
    if state != "PENDING":
        row.synced_at = utcnow()
    session.flush()
    return row


def integration_by_ref(session: Session, ref: str, vendor: str) -> Integration | None:
    return session.scalars(
        select(Integration).where(
            Integration.ref_id == ref, Integration.vendor == vendor, Integration.removed_at.is_(None)
        )
    ).one_or_none()


def billing_event(
    session: Session, integration_pk: int, event_id: str, *, for_update: bool = False
) -> BillingEvent | None:
    stmt = select(BillingEvent).where(BillingEvent.integration_pk == integration_pk, BillingEvent.event_id == event_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def billing_events(session: Session, integration_pk: int) -> list[BillingEvent]:
    return list(
        session.scalars(
            select(BillingEvent).where(BillingEvent.integration_pk == integration_pk).order_by(BillingEvent.pk)
        )
    )


# -- sync states ---------------------------------------------------------------------------------------


def sync_state(
    row: BillingLink, kind: str, ref: str, version: int | None, integration_ref: str, vendor: str
) -> SyncState:
    return SyncState(
        entity_type=kind,
        entity_id=ref,
        entity_version=version,
        integration_id=integration_ref,
        vendor_identifier=vendor,
        billing_id=row.billing_id,
        status=row.sync_state,
        reason=row.reason,
        synced_at=row.synced_at,
    )


_SYNC_STATES = (
    select(BillingLink, Integration.ref_id, Integration.vendor)
    .join(Integration, Integration.pk == BillingLink.integration_pk)
    .order_by(BillingLink.pk)
)
_SYNC_STATES_OF = _SYNC_STATES.where(
    BillingLink.entity_kind == bindparam("kind"), BillingLink.entity_pk.in_(bindparam("pks", expanding=True))
)
# One entity (a customer or subscription answered on its own: every provisioning's answer): an expanding
# IN is rendered again on every execution, a plain comparison is compiled once.
_SYNC_STATES_OF_ONE = _SYNC_STATES.where(
    BillingLink.entity_kind == bindparam("kind"), BillingLink.entity_pk == bindparam("pk")
)


def sync_states_of(
    session: Session, env_ids: Collection[int], kind: str, entity_pks: Iterable[int]
) -> dict[int, list[SyncState]]:
    """The sync states of customers or subscriptions (`kind`) of the environments `env_ids` across
    integrations, in one query; none when the transaction already read that those environments never had
    an integration (a link needs one)."""
    pks = list(entity_pks)
    if not pks or (env_ids and all(_known_to_bill_nothing(session, env_id) for env_id in env_ids)):
        return {}
    if len(pks) == 1:
        rows = session.execute(_SYNC_STATES_OF_ONE, {"kind": kind, "pk": pks[0]}).all()
    else:
        rows = session.execute(_SYNC_STATES_OF, {"kind": kind, "pks": pks}).all()
    found: dict[int, list[SyncState]] = {}
    for link_row, ref, vendor in rows:
        # entity_id "": the caller's entity, whose id it knows.
        found.setdefault(link_row.entity_pk, []).append(sync_state(link_row, kind, "", None, ref, vendor))
    return found


def _known_to_bill_nothing(session: Session, env_id: int) -> bool:
    """The transaction's memo of `vendor_integrations` says the environment has no integration of any
    vendor, removed ones included (False: not known, or it has some)."""
    return all(
        _never_billed(session, env_id, vendor)
        or memo.known(session, (_INTEGRATIONS_MEMO, env_id, vendor), Integration) == []
        for vendor in VENDORS
    )


def entities_in_sync_states(kind: str, statuses: list[str]) -> Select[int]:
    """The pks of the customers or subscriptions (`kind`) with a link in one of `statuses` (`sync_states.matcher`)."""
    return select(BillingLink.entity_pk).where(BillingLink.entity_kind == kind, BillingLink.sync_state.in_(statuses))


ENTITY_TYPES: tuple[str, ...] = ("PLAN", "ADDON", "CUSTOMER", "SUBSCRIPTION", "COUPON")


def sync_states_page(
    session: Session,
    integration: Integration,
    page: PageRequest,
    entity_type: str | None = None,
    entity_ref: str | None = None,
) -> Page[SyncState]:
    """The sync states of one integration's entities (plans and add-ons per version), oldest link first."""
    env_id = integration.environment_id
    stmt = select(BillingLink).where(
        BillingLink.integration_pk == integration.pk, BillingLink.entity_kind != PACKAGE_CHARGE
    )
    if entity_type in ("PLAN", "ADDON"):
        packages = select(Package.pk).where(Package.environment_id == env_id, Package.kind == entity_type)
        if entity_ref is not None:
            packages = packages.where(Package.ref_id == entity_ref)
        stmt = stmt.where(BillingLink.entity_kind == PACKAGE, BillingLink.entity_pk.in_(packages))
    elif entity_type is not None:
        model: Any = {CUSTOMER: Customer, SUBSCRIPTION: Subscription, COUPON: Coupon}[entity_type]
        stmt = stmt.where(BillingLink.entity_kind == entity_type)
        if entity_ref is not None:
            stmt = stmt.where(
                BillingLink.entity_pk.in_(
                    select(model.pk).where(model.environment_id == env_id, model.ref_id == entity_ref)
                )
            )
    found: Page[BillingLink] = paginate(session, stmt, BillingLink.pk, page)
    refs = _entity_refs(session, found.items)
    states = []
    for row in found.items:
        kind, ref, version = refs.get((row.entity_kind, row.entity_pk), (row.entity_kind, "", None))
        states.append(sync_state(row, kind, ref, version, integration.ref_id, integration.vendor))
    return Page(items=states, next=found.next, prev=found.prev)


def _entity_refs(session: Session, links: Iterable[BillingLink]) -> dict[tuple[str, int], tuple[str, str, int | None]]:
    """(kind, pk) -> (entity type, id, version) for a page of links: one query per kind on the page."""
    by_kind: dict[str, list[int]] = {}
    for row in links:
        by_kind.setdefault(row.entity_kind, []).append(row.entity_pk)
    refs: dict[tuple[str, int], tuple[str, str, int | None]] = {}
    if by_kind.get(PACKAGE):
        for pk, kind, ref, version in session.execute(
            select(Package.pk, Package.kind, Package.ref_id, Package.version_number).where(
                Package.pk.in_(by_kind[PACKAGE])
            )
        ):
            refs[(PACKAGE, pk)] = (kind, ref, version)
    for kind, model in ((CUSTOMER, Customer), (SUBSCRIPTION, Subscription), (COUPON, Coupon)):
        if by_kind.get(kind):
            for pk, ref in session.execute(select(model.pk, model.ref_id).where(model.pk.in_(by_kind[kind]))):
                refs[(kind, pk)] = (kind, ref, None)
    return refs
