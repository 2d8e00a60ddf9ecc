"""What `recurring.sync_subscription` reads, loaded for many subscriptions at once.

A sync reads the subscriptions' terms, charges and held grants, then locks the wallets those touch and reads
their grants under the locks. One subscription at a time that is about thirty statements each; a parent
plan's publish syncs every subscription inheriting from it in one transaction (docs/credits.md, "Inherited
changes"), so `Reads` loads the first part for all of them in a fixed number of queries, and `Locked` the
second for a round of subscriptions that share no customer (`rounds`): within a round no wallet, and no
grant a sync reads, belongs to two of them, so what one sync writes is nothing another of the round reads.
The sync's logic stays in `recurring`; only where its rows come from changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.orm import Session

from entitle.catalog.packages import rules as package_rules
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import Package, PackageCharge
from entitle.credits import store
from entitle.credits.models import CreditGrant, CustomCurrency, Reservation, Wallet
from entitle.credits.rules import ACTIVE, EXPIRED, RECURRING, SCHEDULED, VOIDED
from entitle.grants.engine import subscription_terms
from entitle.jobs.service import Enqueued
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription, SubscriptionAddon, SubscriptionCharge, SubscriptionEntitlement

WalletKey = tuple[int, int, str]  # customer pk, currency pk, resource


@dataclass
class Reads:
    """The rows every subscription's sync reads before it locks a wallet (one query each, for all)."""

    env_id: int
    terms: dict[int, dict[package_rules.Key, package_rules.EntitlementTerms]]
    plan_credit_refs: dict[int, set[str]]  # plan version pk -> the CREDIT refs of its chain's rows
    addons: dict[int, list[SubscriptionAddon]]
    charges: dict[int, list[SubscriptionCharge]]
    overrides: dict[int, list[SubscriptionEntitlement]]
    package_charges: dict[int, list[PackageCharge]]  # credit charges, by package version
    currencies: dict[str, CustomCurrency]
    held: dict[int, list[CreditGrant]]  # live recurring grants, by subscription
    held_wallets: dict[int, Wallet]

    @classmethod
    def load(cls, s: Session, env_id: int, subs: Sequence[Subscription]) -> Reads:
        pks = [sub.pk for sub in subs]
        terms = subscription_terms(s, env_id, list(subs))
        addons = subscriptions.addons_of(s, pks)
        chains: dict[int, list[Package]] = {}
        for sub in subs:
            if sub.plan_pk not in chains:
                plan = s.get(Package, sub.plan_pk)
                chains[sub.plan_pk] = packages.plan_chain(s, env_id, plan) if plan is not None else []
        rows = packages.entitlements_of_many(s, {p.pk for chain in chains.values() for p in chain})
        plan_credit_refs = {
            plan_pk: {e.ref_id for p in chain for e in rows.get(p.pk, []) if e.entitlement_type == "CREDIT"}
            for plan_pk, chain in chains.items()
        }
        package_pks = {sub.plan_pk for sub in subs} | {a.addon_pk for rows in addons.values() for a in rows}
        package_charges: dict[int, list[PackageCharge]] = defaultdict(list)
        for charge in s.scalars(
            select(PackageCharge)
            .where(
                PackageCharge.package_pk.in_(sorted(package_pks)),
                PackageCharge.billing_model == "CREDIT_BASED",
                PackageCharge.feature_ref.is_(None),
                PackageCharge.credit_grant_cadence.is_not(None),
                PackageCharge.credit_rate_amount.is_not(None),
                PackageCharge.is_overage.is_(False),
            )
            .order_by(PackageCharge.pk)
        ):
            package_charges[charge.package_pk].append(charge)
        currencies = {
            c.ref_id: c for c in s.scalars(select(CustomCurrency).where(CustomCurrency.environment_id == env_id))
        }
        held: dict[int, list[CreditGrant]] = defaultdict(list)
        for grant in s.scalars(
            select(CreditGrant)
            .where(
                CreditGrant.subscription_pk.in_(pks),
                CreditGrant.grant_type == RECURRING,
                CreditGrant.status.in_((SCHEDULED, ACTIVE)),
            )
            .order_by(CreditGrant.pk)
        ):
            assert grant.subscription_pk is not None
            held[grant.subscription_pk].append(grant)
        wallets = {w.pk: w for w in store.wallets_by_pk(s, [g for grants in held.values() for g in grants])}
        return cls(
            env_id,
            terms,
            plan_credit_refs,
            addons,
            subscriptions.charges_of(s, pks),
            subscriptions.overrides_of(s, pks),
            package_charges,
            currencies,
            held,
            wallets,
        )

    def customers(self, sub: Subscription) -> set[int]:
        """The customers whose wallets a sync of `sub` may touch: its own, and those its grants are in."""
        return {sub.customer_pk} | {self.held_wallets[g.wallet_pk].customer_pk for g in self.held.get(sub.pk, [])}


def rounds(reads: Reads, subs: Sequence[Subscription]) -> list[list[Subscription]]:
    """`subs` in rounds whose subscriptions touch no customer in common, each in the given order (most
    often one round: a customer has one subscription inheriting from a parent)."""
    found: list[tuple[set[int], list[Subscription]]] = []
    for sub in subs:
        touched = reads.customers(sub)
        for customers, members in found:
            if not customers & touched:
                customers |= touched
                members.append(sub)
                break
        else:
            found.append((touched, [sub]))
    return [members for _, members in found]


@dataclass
class Locked:
    """A round's wallets, locked (created if new, in one order), with their open grants and live holds,
    and the grants of its subscriptions the sync compares with; plus what the sync adds, written at once
    by `recurring._finish`."""

    wallets: dict[WalletKey, Wallet]
    open_grants: dict[int, list[CreditGrant]]  # by wallet pk
    reservations: dict[int, list[Reservation]]  # active, by wallet pk
    period: dict[int, list[CreditGrant]]  # the subscriptions' grants of the periods they want, voided too
    replaced: dict[int, list[tuple[Subscription, CreditGrant]]]  # by customer pk
    new_grants: list[tuple[Wallet, CreditGrant, list[CreditGrant]]] = field(default_factory=list)
    jobs: list[Enqueued] = field(default_factory=list)

    @classmethod
    def load(
        cls, s: Session, env_id: int, subs: Sequence[Subscription], keys: Iterable[WalletKey], starts: set[datetime]
    ) -> Locked:
        ordered = sorted(set(keys))  # one lock order: no deadlock
        wallets = _lock(s, env_id, ordered)
        wallet_pks = sorted(w.pk for w in wallets.values())
        open_grants: dict[int, list[CreditGrant]] = {pk: [] for pk in wallet_pks}
        reservations: dict[int, list[Reservation]] = {pk: [] for pk in wallet_pks}
        period: dict[int, list[CreditGrant]] = defaultdict(list)
        replaced: dict[int, list[tuple[Subscription, CreditGrant]]] = defaultdict(list)
        if wallet_pks:
            # The wallets' open grants and the subscriptions' grants of the periods they want (voided ones
            # too) are mostly the same rows: read once, each sorted into where it belongs.
            sub_pks = {sub.pk for sub in subs}
            for g in s.scalars(
                select(CreditGrant)
                .where(
                    CreditGrant.wallet_pk.in_(wallet_pks),
                    or_(
                        CreditGrant.status.in_((SCHEDULED, ACTIVE)),
                        and_(CreditGrant.status.in_((EXPIRED, VOIDED)), CreditGrant.reserved != 0),
                        and_(
                            CreditGrant.subscription_pk.in_(sorted(sub_pks)),
                            CreditGrant.period_start.in_(sorted(starts)),
                        ),
                    ),
                )
                .order_by(CreditGrant.pk)
                .execution_options(populate_existing=True)
            ):
                if g.status in (SCHEDULED, ACTIVE) or (g.status in (EXPIRED, VOIDED) and g.reserved != 0):
                    open_grants[g.wallet_pk].append(g)
                if g.subscription_pk in sub_pks and g.period_start in starts:
                    period[g.subscription_pk].append(g)
            for r in s.scalars(
                select(Reservation)
                .where(Reservation.wallet_pk.in_(wallet_pks), Reservation.status == ACTIVE)
                .order_by(Reservation.pk)
                .execution_options(populate_existing=True)
            ):
                reservations[r.wallet_pk].append(r)
            # The grants of the subscriptions these replaced (`store.replaced_period_grants`), filtered by
            # each subscription's product, resource and period in `replaced_period_grants` below.
            for old, g in s.execute(
                select(Subscription, CreditGrant)
                .join(CreditGrant, CreditGrant.subscription_pk == Subscription.pk)
                .where(
                    Subscription.customer_pk.in_(sorted({sub.customer_pk for sub in subs})),
                    Subscription.cancel_reason == "UPGRADE_OR_DOWNGRADE",
                    CreditGrant.wallet_pk.in_(wallet_pks),
                    CreditGrant.grant_type == RECURRING,
                )
                .order_by(CreditGrant.pk)
            ).all():
                replaced[old.customer_pk].append((old, g))
        return cls(wallets, open_grants, reservations, period, replaced)

    def period_grants(self, sub: Subscription, wallet_pk: int, period_start: datetime) -> list[CreditGrant]:
        """`store.period_grants` from the loaded rows."""
        return [g for g in self.period.get(sub.pk, []) if g.wallet_pk == wallet_pk and g.period_start == period_start]

    def replaced_period_grants(
        self, sub: Subscription, wallet_pk: int, period_start: datetime, period_end: datetime
    ) -> list[CreditGrant]:
        """`store.replaced_period_grants` from the loaded rows."""
        return [
            g
            for old, g in self.replaced.get(sub.customer_pk, [])
            if old.product_pk == sub.product_pk
            and old.pk != sub.pk
            and (old.resource_ref or "") == (sub.resource_ref or "")
            and g.wallet_pk == wallet_pk
            and g.effective_at < period_end
            and g.expire_at is not None
            and g.expire_at > period_start
        ]


def _lock(s: Session, env_id: int, keys: list[WalletKey]) -> dict[WalletKey, Wallet]:
    """`store.locked_wallet` for many wallets: one read locking those that exist in key order (PostgreSQL
    locks the rows as the sorted read returns them); then, for any missing, one insert (a concurrent
    writer may insert one first: nothing is done twice) and one read locking them."""
    found = _read_locked(s, keys)
    missing = [k for k in keys if k not in found]
    if missing:
        store.insert_wallets(s, env_id, missing)
        found |= _read_locked(s, missing)
    return found


def _read_locked(s: Session, keys: list[WalletKey]) -> dict[WalletKey, Wallet]:
    if not keys:
        return {}
    stmt = (
        select(Wallet)
        .where(tuple_(Wallet.customer_pk, Wallet.currency_pk, Wallet.resource_ref).in_(keys))
        .order_by(Wallet.customer_pk, Wallet.currency_pk, Wallet.resource_ref)
    )
    if s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    found = s.scalars(stmt.execution_options(populate_existing=True))
    return {(w.customer_pk, w.currency_pk, w.resource_ref): w for w in found}
