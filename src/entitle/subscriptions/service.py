"""Reading subscriptions: one subscription as the wire shows it (`view_of`), lists, and the resources a
customer holds subscriptions for.

The use cases that change subscriptions live beside this module, one file per kind of change:
`provisioning.py` (new subscriptions, plan changes, the customer journey's downgrade to free),
`changes.py` (update, migrate, delegate, transfer, scheduled updates), `cancellation.py`,
`lifecycle.py` (payments reported by the billing provider, and the timed events the job worker runs),
`journey.py` (a new customer's first subscriptions). `transitions.py` holds the steps they share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from entitle.catalog.coupons import store as coupons
from entitle.clock import utcnow
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest, decode_cursor, encode_cursor
from entitle.periods import BillingWindow, billing_period_at
from entitle.subscriptions import ports, store
from entitle.subscriptions.models import (
    FutureUpdate,
    Subscription,
    SubscriptionAddon,
    SubscriptionEntitlement,
)
from entitle.subscriptions.rules import OPEN, Status
from entitle.sync_states import SUBSCRIPTION as SUBSCRIPTION_LINK
from entitle.sync_states import SyncState, sync_states_of


@dataclass
class SubscriptionView:
    sub: Subscription
    customer_ref: str
    paying_customer_ref: str | None
    addons: list[SubscriptionAddon]
    overrides: list[SubscriptionEntitlement]
    future_updates: list[FutureUpdate]
    coupon: dict[str, Any] | None
    now: datetime
    # Its sync with each billing integration (`syncStates`, our extension).
    sync_states: list[SyncState] = field(default_factory=list)
    contract_ref: str | None = None

    def billing_window(self) -> BillingWindow | None:
        sub = self.sub
        if sub.billing_period is None or sub.status not in OPEN or self.now < sub.billing_cycle_anchor:
            return None
        return billing_period_at(sub.billing_cycle_anchor, sub.billing_period, self.now)


def view_of(
    s: Session,
    sub: Subscription,
    now: datetime | None = None,
    sync_states: list[SyncState] | None = None,
) -> SubscriptionView:
    customer = s.get(Customer, sub.customer_pk)
    paying = s.get(Customer, sub.paying_customer_pk) if sub.paying_customer_pk else None
    coupon = coupons.find(s, sub.environment_id, sub.coupon_ref) if sub.coupon_ref else None
    return SubscriptionView(
        sub=sub,
        customer_ref=customer.ref_id if customer else "",
        paying_customer_ref=paying.ref_id if paying else None,
        addons=store.addons_of(s, [sub.pk]).get(sub.pk, []),
        overrides=store.overrides_of(s, [sub.pk]).get(sub.pk, []),
        future_updates=store.future_updates_of(s, [sub.pk]).get(sub.pk, []),
        coupon=None
        if coupon is None
        else {
            "id": coupon.ref_id,
            "name": coupon.name,
            "status": "ACTIVE" if coupon.status == "ACTIVE" else "EXPIRED",
            "percent_off": coupon.percent_off,
            "amounts_off": coupon.amounts_off,
        },
        now=now or utcnow(),
        sync_states=sync_states
        if sync_states is not None
        else sync_states_of(s, SUBSCRIPTION_LINK, [sub.pk]).get(sub.pk, []),
        contract_ref=ports.contract_of.impl(s, sub.pk),
    )


def get_subscription(db: Database, env_id: int, ref: str) -> SubscriptionView:
    with db.read() as s:
        return view_of(s, store.get(s, env_id, ref))


def list_subscriptions(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    customer_ref: str | None = None,
    plan_ref: str | None = None,
    resource_ref: str | None = None,
    statuses: list[str] | None = None,
    pricing_types: list[str] | None = None,
    created_at: CreatedAtRange = CreatedAtRange(),
    billing_periods: list[str] | None = None,
    sync_statuses: list[str] | None = None,
) -> tuple[Page[Subscription], list[SubscriptionView]]:
    """`billing_periods` and `sync_statuses` (any integration's sync of the subscription in one of them)
    are the console's filters."""
    with db.read() as s:
        customer_pk: int | None = None
        if customer_ref is not None:
            customer = customers.find(s, env_id, customer_ref)
            if customer is None:
                return Page(items=[], next=None, prev=None), []
            customer_pk = customer.pk
        result = store.list_page(
            s,
            env_id,
            page,
            customer_pk=customer_pk,
            plan_ref=plan_ref,
            resource_ref=resource_ref,
            statuses=statuses,
            pricing_types=pricing_types,
            created_at=created_at,
            billing_periods=billing_periods,
            sync_statuses=sync_statuses,
        )
        now = utcnow()
        states = sync_states_of(s, SUBSCRIPTION_LINK, [sub.pk for sub in result.items])
        return result, [view_of(s, sub, now, states.get(sub.pk, [])) for sub in result.items]


@dataclass(frozen=True)
class Resource:
    """A resource (workspace, site, ...) a customer holds subscriptions for, known from those subscriptions."""

    pk: int
    id: str
    created_at: datetime
    updated_at: datetime


def list_resources(db: Database, env_id: int, customer_ref: str, page: PageRequest) -> Page[Resource]:
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        subs = store.of_customer(s, customer.pk, [st.value for st in Status])
    found: dict[str, Resource] = {}
    for sub in subs:
        if not sub.resource_ref:
            continue
        known = found.get(sub.resource_ref)
        found[sub.resource_ref] = Resource(
            pk=min(sub.pk, known.pk) if known else sub.pk,
            id=sub.resource_ref,
            created_at=min(sub.created_at, known.created_at) if known else sub.created_at,
            updated_at=max(sub.updated_at, known.updated_at) if known else sub.updated_at,
        )
    ordered = sorted(found.values(), key=lambda r: r.pk)
    if page.before:
        boundary = decode_cursor(page.before)
        earlier = [r for r in ordered if r.pk < boundary]
        items = earlier[-page.limit :]
        has_more = len(earlier) > page.limit
        return Page(
            items,
            encode_cursor(items[-1].pk) if items else None,
            encode_cursor(items[0].pk) if items and has_more else None,
        )
    if page.after:
        boundary = decode_cursor(page.after)
        ordered = [r for r in ordered if r.pk > boundary]
    items = ordered[: page.limit]
    has_more = len(ordered) > page.limit
    return Page(
        items,
        encode_cursor(items[-1].pk) if items and has_more else None,
        encode_cursor(items[0].pk) if items and page.after else None,
    )
