"""Reading subscriptions: one subscription as the wire shows it (`view_of`), lists, and the resources a
customer holds subscriptions for.

The use cases that change subscriptions live beside this module, one file per kind of change:
`provisioning.py` (new subscriptions, plan changes, the customer journey's downgrade to free),
`changes.py` (update, migrate, delegate, transfer, scheduled updates), `cancellation.py`,
`lifecycle.py` (payments reported by the billing provider, and the timed events the job worker runs),
`journey.py` (a new customer's first subscriptions). `transitions.py` holds the steps they share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from entitle.clock import utcnow
from entitle.customers import store as customers
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
        return billing_window(self.sub, self.now)


def billing_window(sub: Subscription, now: datetime) -> BillingWindow | None:
    """The billing period `sub` is in at `now` (None: it bills no period now: free, ended, or before its
    billing cycle starts, as in a trial). A change waiting for the period's end waits for this one's.
    A plan change that kept the cycle of the subscription it replaced starts inside a period: its first
    period is the rest of that one, from its start."""
    if sub.billing_period is None or sub.status not in OPEN or now < sub.billing_cycle_anchor:
        return None
    window = billing_period_at(sub.billing_cycle_anchor, sub.billing_period, now)
    return window if window.start >= sub.start_date else BillingWindow(sub.start_date, window.end)


def view_of(
    s: Session,
    sub: Subscription,
    now: datetime | None = None,
    sync_states: list[SyncState] | None = None,
) -> SubscriptionView:
    return views_of(s, [sub], now, None if sync_states is None else {sub.pk: sync_states})[0]


def views_of(
    s: Session,
    subs: Sequence[Subscription],
    now: datetime | None = None,
    sync_states: Mapping[int, list[SyncState]] | None = None,
) -> list[SubscriptionView]:
    """The subscriptions as the wire shows them, each related row read for all of them at once: a page of
    subscriptions costs the same few queries whatever its length."""
    pks = [sub.pk for sub in subs]
    env_ids = {sub.environment_id for sub in subs}
    people = store.customers_by_pk(s, {sub.customer_pk for sub in subs} | {sub.paying_customer_pk for sub in subs})
    coupon_refs = {sub.coupon_ref for sub in subs if sub.coupon_ref}
    found_coupons = {
        (c.environment_id, c.ref_id): c for env_id in env_ids for c in store.coupons_by_ref(s, env_id, coupon_refs)
    }
    addons = store.addons_of(s, pks)
    overrides = store.overrides_of(s, pks)
    future_updates = store.future_updates_of(s, pks)
    states = sync_states if sync_states is not None else sync_states_of(s, env_ids, SUBSCRIPTION_LINK, pks)
    contracts = ports.contracts_of.impl(s, pks) if pks else {}
    now = now or utcnow()
    views = []
    for sub in subs:
        customer = people.get(sub.customer_pk)
        paying = people.get(sub.paying_customer_pk) if sub.paying_customer_pk else None
        coupon = found_coupons.get((sub.environment_id, sub.coupon_ref)) if sub.coupon_ref else None
        views.append(
            SubscriptionView(
                sub=sub,
                customer_ref=customer.ref_id if customer else "",
                paying_customer_ref=paying.ref_id if paying else None,
                addons=addons.get(sub.pk, []),
                overrides=overrides.get(sub.pk, []),
                future_updates=future_updates.get(sub.pk, []),
                coupon=None
                if coupon is None
                else {
                    "id": coupon.ref_id,
                    "name": coupon.name,
                    "status": "ACTIVE" if coupon.status == "ACTIVE" else "EXPIRED",
                    "percent_off": coupon.percent_off,
                    "amounts_off": coupon.amounts_off,
                },
                now=now,
                sync_states=states.get(sub.pk, []),
                contract_ref=contracts.get(sub.pk),
            )
        )
    return views


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
        return result, views_of(s, result.items)


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
