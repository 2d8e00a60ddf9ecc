"""Recurring credits: what a subscription's CREDIT entitlements (its plan's, with inheritance, its add-ons'
and its own overrides, combined as for features) grant, period by period, as RECURRING grants.

A subscription's credits of one currency are granted for the grant period containing now
(`rules.grant_period`: the cadence's steps from the billing cycle anchor, so an annual plan with a MONTH
cadence grants every month), effective at the period's start and expiring at its end. `sync_subscription`
brings the current period's grants in line with what the subscription grants now; it runs in the
transaction of every subscription change (`subscribers.py`) and from the scheduler at each period's start
(`RENEW_JOB`), and for many subscriptions at once after an inherited change (`sync_all`: the same logic on
rows read for all of them, `recurring_reads.py`). Every write holds the wallet's lock and reads the
period's grants afresh under it, so a retried or concurrent run finds the period granted and grants
nothing: one grant per subscription, currency and period (a change of terms mid-period adds a revision,
see `rules.regrant`). The unique `recurrence_key` backs this up in the database.

When a subscription ends, its current grants run to their expiry, unless they are revoked: by a plan change
(the new subscription grants its own, less what the replaced one used in the period: `_sync`) or by a
cancellation with `prorate: true` (at the instant it ends).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.packages.models import PackageCharge
from entitle.clock import as_utc, utcnow
from entitle.credits import engine, pricing, rules, store
from entitle.credits.models import CreditGrant, CustomCurrency, Wallet
from entitle.credits.recurring_reads import Locked, Reads, WalletKey, rounds
from entitle.credits.rules import ACTIVE, RECURRING, SCHEDULED, VOIDED, ZERO
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.errors import NotFound
from entitle.grants.engine import live_subscriptions, resource_key, subscription_terms
from entitle.jobs.service import Enqueued, JobContext, enqueue, enqueue_many, register
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.rules import LIVE

RENEW_JOB = "credits.renew_subscription"
REVOKE_JOB = "credits.revoke_subscription"
PLAN_ENTITLEMENT, ADDON_ENTITLEMENT, PRICE = "PLAN_ENTITLEMENT", "ADDON_ENTITLEMENT", "PRICE"


@dataclass(frozen=True)
class Target:
    """What a subscription grants of one currency per period, and where it comes from."""

    currency_ref: str
    amount: Decimal
    cadence: str
    source_type: str


def targets(reads: Reads, sub: Subscription) -> list[Target]:
    terms = reads.terms.get(sub.pk, {})
    credit = [t for t in terms.values() if t.type == "CREDIT" and t.is_granted and t.amount and t.cadence]
    if not credit:
        return []
    on_plan = set(reads.plan_credit_refs.get(sub.plan_pk, set()))
    on_plan |= {o.ref_id for o in reads.overrides.get(sub.pk, []) if o.entitlement_type == "CREDIT"}
    quantities = {c.ref_id: Decimal(c.quantity) for c in reads.charges.get(sub.pk, []) if c.charge_type == "FEATURE"}
    found: list[Target] = []
    for t in credit:
        assert t.amount is not None and t.cadence is not None
        quantity = None
        if t.dependency_feature_ref is not None:
            fallback = Decimal(sub.unit_quantity) if sub.unit_quantity is not None else Decimal(1)
            quantity = quantities.get(t.dependency_feature_ref, fallback)
        amount = rules.recurring_amount(t.amount, quantity)
        if amount > 0:
            source = PLAN_ENTITLEMENT if t.ref_id in on_plan else ADDON_ENTITLEMENT
            found.append(Target(t.ref_id, amount, t.cadence, source))
    return found


def price_targets(reads: Reads, sub: Subscription) -> list[Target]:
    """Credit charges (`PackageCharge.grants_credits`): each unit grants its `creditRate.amount` of the rate's
    currency at the beginning of each billing period (BEGINNING_OF_BILLING_PERIOD: yearly on an annual
    subscription) or every month (MONTHLY). The units: the subscription's CREDIT charge quantity in that
    currency for the plan's charge (1 when it names none), the add-on's quantity for an add-on's. The price
    for the subscription's billing period (and country) counts."""
    bought = {a.addon_pk: a.quantity for a in reads.addons.get(sub.pk, [])}
    quantities = {sub.plan_pk: 1, **bought}
    credit_units = {c.ref_id: Decimal(c.quantity) for c in reads.charges.get(sub.pk, []) if c.charge_type == "CREDIT"}
    charges = sorted((c for pk in set(quantities) for c in reads.package_charges.get(pk, [])), key=lambda c: c.pk)
    chosen: dict[tuple[int, str], PackageCharge] = {}
    for charge in pricing.charges_paid(charges, sub.billing_period, sub.billing_country_code):
        if charge.credit_rate_currency_ref is not None:
            chosen.setdefault((charge.package_pk, charge.credit_rate_currency_ref), charge)
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (package_pk, currency_ref), charge in chosen.items():
        assert charge.credit_rate_amount is not None
        monthly = charge.credit_grant_cadence == "MONTHLY" or sub.billing_period != "ANNUALLY"
        units = Decimal(quantities[package_pk])
        if package_pk == sub.plan_pk:
            units = credit_units.get(currency_ref, units)
        totals[(currency_ref, "MONTH" if monthly else "YEAR")] += rules.rounded(charge.credit_rate_amount * units)
    return [Target(ref, amount, cadence, PRICE) for (ref, cadence), amount in totals.items() if amount > 0]


def soft_limited(s: Session, env_id: int, customer: Customer, resource_ref: str | None, currency_ref: str) -> bool:
    """Whether a live subscription's CREDIT entitlement to the currency has a soft limit (`hasSoftLimit`):
    then a check is granted beyond the balance (consumption is never refused either way)."""
    return currency_ref in soft_limited_currencies(s, env_id, customer, resource_ref)


def soft_limited_currencies(s: Session, env_id: int, customer: Customer, resource_ref: str | None) -> frozenset[str]:
    """The currencies `soft_limited` holds for, all at once."""
    subs = live_subscriptions(s, customer, resource_ref)
    if not subs:
        return frozenset()
    return frozenset(
        t.ref_id
        for terms in subscription_terms(s, env_id, subs).values()
        for t in terms.values()
        if t.type == "CREDIT" and t.is_granted and t.has_soft_limit
    )


# -- the current period ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Want:
    currency: CustomCurrency
    amount: Decimal
    start: datetime
    end: datetime
    source_type: str


def _kind(source_type: str | None) -> str:
    """Credits from prices and credits from entitlements are granted (and changed) separately."""
    return PRICE if source_type == PRICE else "ENTITLEMENT"


def sync_subscription(s: Session, sub: Subscription, now: datetime, *, new: bool = False) -> None:
    """Grant the current period's recurring credits of a live subscription as its terms now say (more:
    the difference; less: void and grant what is left), void those of currencies (or wallets: a delegated
    or transferred subscription) it no longer grants, and have the scheduler come back at the next
    period's start. An ended subscription's grants are left as they are (see `revoke`). `new`: created in
    this transaction. A batch of one (`sync_all`)."""
    if not store.may_have_recurring_credits(s, sub.environment_id, sub.pk, new=new):
        return
    sync_all(s, sub.environment_id, [sub], now)


def sync_all(s: Session, env_id: int, subs: Sequence[Subscription], now: datetime) -> None:
    """`sync_subscription` of each of `subs` (of one environment), in batches: what they read, read for all."""
    for batch, members in _batches(s, env_id, subs, now):
        for member in members:
            _sync(s, batch, member)
        _finish(s, batch)


@dataclass
class Batch:
    """What the syncs of a round of subscriptions read (`recurring_reads`), what each wants, and when its
    wallets' movements happen."""

    now: datetime
    reads: Reads
    wants: dict[int, dict[tuple[int, str], _Want]]  # by subscription: (currency pk, kind) -> this period's grant
    keys: dict[int, list[WalletKey]]  # by subscription: the wallets its sync touches
    locked: Locked
    moved_at: dict[int, datetime]  # by subscription: when its wallets' movements happen (`_after_lock`)


def _batches(
    s: Session, env_id: int, subs: Sequence[Subscription], now: datetime
) -> Iterator[tuple[Batch, list[Subscription]]]:
    """The syncs of `subs` (live or not), prepared round by round: the reads of all in a fixed number of
    queries, then per round (`recurring_reads.rounds`) its wallets locked and read at once. Sync each member
    with `_sync`, then `_finish` the round before the next is prepared."""
    reads = Reads.load(s, env_id, subs)
    for members in rounds(reads, subs):
        wants = {sub.pk: _wants(reads, sub, now) for sub in members}
        keys: dict[int, list[WalletKey]] = {}
        for sub in members:
            resource = resource_key(sub.resource_ref)
            found = {(sub.customer_pk, pk, resource) for pk, _ in wants[sub.pk]}
            if sub.status in LIVE and sub.start_date <= now:
                found |= {
                    (w.customer_pk, w.currency_pk, w.resource_ref)
                    for w in (reads.held_wallets[g.wallet_pk] for g in reads.held.get(sub.pk, []))
                }
            keys[sub.pk] = sorted(found)
        starts = {w.start for by_sub in wants.values() for w in by_sub.values()}
        locked = Locked.load(s, env_id, members, [k for ks in keys.values() for k in ks], starts)
        moved_at = {
            pk: _after_lock(now, min((w.end for w in by_sub.values()), default=None)) for pk, by_sub in wants.items()
        }
        batch = Batch(now, reads, wants, keys, locked, moved_at)
        for sub in members:  # a round's subscriptions share no wallet
            for key in keys[sub.pk]:
                wallet = locked.wallets[key]
                grants, held = locked.open_grants[wallet.pk], locked.reservations[wallet.pk]
                engine.catch_up_loaded(s, wallet, grants, held, moved_at[sub.pk])
        yield batch, members


def _wants(reads: Reads, sub: Subscription, now: datetime) -> dict[tuple[int, str], _Want]:
    wants: dict[tuple[int, str], _Want] = {}
    if sub.status in LIVE and sub.start_date <= now:
        for target in targets(reads, sub) + price_targets(reads, sub):
            currency = reads.currencies.get(target.currency_ref)
            if currency is None:
                raise NotFound("custom currency", target.currency_ref)
            start, end = rules.grant_period(target.cadence, sub.start_date, sub.billing_cycle_anchor, now)
            wants[(currency.pk, _kind(target.source_type))] = _Want(
                currency, target.amount, start, end, target.source_type
            )
    return wants


def _sync(s: Session, batch: Batch, sub: Subscription) -> None:
    wants, locked, moved_at = batch.wants[sub.pk], batch.locked, batch.moved_at[sub.pk]
    resource = resource_key(sub.resource_ref)
    granted_in: set[int] = set()  # wallets this sync has a grant to write in
    for key in batch.keys[sub.pk]:
        customer_pk, currency_pk, resource_ref = key
        wallet = locked.wallets[key]
        grants = locked.open_grants[wallet.pk]
        own_wallet = (customer_pk, resource_ref) == (sub.customer_pk, resource)
        live_grants: dict[tuple[str, datetime | None], list[CreditGrant]] = defaultdict(list)
        for g in grants:
            if g.subscription_pk == sub.pk and g.status in (SCHEDULED, ACTIVE):
                live_grants[(_kind(g.source_type), g.period_start)].append(g)
        for (kind, period_start), stale in live_grants.items():
            want = wants.get((currency_pk, kind)) if own_wallet else None
            if want is None or period_start != want.start:
                _apply(s, wallet, stale, rules.regrant(ZERO, _granted(stale), _used(stale)), moved_at)
        for (pk, kind), want in wants.items():
            if pk != currency_pk or not own_wallet:
                continue
            if wallet.pk in granted_in:
                # A second grant in the wallet (one from prices, one from entitlements): the first is
                # written and started first, as a sync of this subscription alone does.
                _write(s, locked)
            period = [
                g for g in locked.period_grants(sub, wallet.pk, want.start) if _kind(g.source_type) == kind
            ]  # voided ones too
            carried = _used(
                [
                    g
                    for g in locked.replaced_period_grants(sub, wallet.pk, want.start, want.end)
                    if _kind(g.source_type) == kind
                ]
            )  # what the subscriptions this one replaced used of the period: see below
            # A plan change grants the new amount less what the replaced subscription used in the period
            # (an upgrade the difference, a downgrade what is left if anything), and provisioning the same
            # plan again never refills the wallet.
            change = rules.regrant(want.amount, _granted(period) + carried, _used(period) + carried)
            if _apply(s, wallet, live_grants.get((kind, want.start), []), change, moved_at) > 0:
                grant = _new_grant(wallet, sub, want, change.new_amount, moved_at, revision=len(period))
                locked.new_grants.append((wallet, grant, grants))
                granted_in.add(wallet.pk)
    if wants:
        at = min(w.end for w in wants.values())
        locked.jobs.append(
            Enqueued(RENEW_JOB, {"subscription": sub.pk}, at, f"credits-renew:{sub.pk}:{at.isoformat()}")
        )


def _finish(s: Session, batch: Batch) -> None:
    """Write what the round's syncs granted: the grants in one flush, then each one's start (its ledger
    entry, and an overdraft it pays), and the jobs (each wallet's at the end of its period, each
    subscription's renewal) in one."""
    _write(s, batch.locked)
    enqueue_many(s, batch.reads.env_id, batch.locked.jobs)
    batch.locked.jobs.clear()


def _write(s: Session, locked: Locked) -> None:
    if not locked.new_grants:
        return
    s.add_all([grant for _, grant, _ in locked.new_grants])
    s.flush()
    for wallet, grant, grants in locked.new_grants:
        grants.append(grant)
        engine.activate(s, wallet, grant, grants, grant.effective_at)
        assert grant.expire_at is not None
        locked.jobs.append(engine.scheduled(wallet, grant.expire_at))
    locked.new_grants.clear()


def _after_lock(now: datetime, period_end: datetime | None = None) -> datetime:
    """The instant a locked wallet's grants move at (`store.locked_wallet`). `now`, read before the locks,
    decided the periods: the movements never come before it, nor reach the end of the period it decided
    (a wait for the lock across that end moves them at `now`, as the period's own grants were decided;
    the renewal at the end then starts the next)."""
    later = utcnow()
    if later <= now or (period_end is not None and later >= period_end):
        return now
    return later


def _granted(grants: list[CreditGrant]) -> Decimal:
    """What grants have given: a live grant its amount, an ended one what it gave before it ended."""
    return sum((g.amount if g.status in (SCHEDULED, ACTIVE) else g.consumed + g.reserved for g in grants), ZERO)


def _used(grants: list[CreditGrant]) -> Decimal:
    return sum((g.consumed + g.reserved for g in grants), ZERO)


def _apply(s: Session, wallet: Wallet, stale: list[CreditGrant], change: rules.Regrant, now: datetime) -> Decimal:
    """Void `stale` when the change says so; returns what is still to be granted."""
    if change.void:
        for g in stale:
            engine.end(s, wallet, g, VOIDED, now)
            g.updated_at = now
    return change.new_amount


def _new_grant(
    wallet: Wallet, sub: Subscription, want: _Want, amount: Decimal, now: datetime, *, revision: int
) -> CreditGrant:
    # The period's first grant counts from the period's start (a late scheduler changes nothing); a
    # revision (the terms changed mid-period) from now.
    effective = want.start if revision == 0 else now
    return CreditGrant(
        environment_id=wallet.environment_id,
        ref_id=engine.new_grant_ref(),
        wallet_pk=wallet.pk,
        display_name=f"{want.currency.display_name} ({sub.ref_id})",
        grant_type=RECURRING,
        status=SCHEDULED,
        amount=amount,
        consumed=ZERO,
        reserved=ZERO,
        priority=rules.PRIORITY_DEFAULT,
        effective_at=effective,
        expire_at=want.end,
        metadata_={"subscriptionId": sub.ref_id},
        source_type=want.source_type,
        subscription_pk=sub.pk,
        period_start=want.start,
        recurrence_key=f"{sub.pk}:{_kind(want.source_type)}:{wallet.pk}:{want.start.isoformat()}:{revision}",
        created_at=now,
        updated_at=now,
    )


# -- ending ----------------------------------------------------------------------------------------------


def revoke(s: Session, sub: Subscription, now: datetime, *, periods_from: datetime | None = None) -> None:
    """Void what the subscription's live recurring grants still hold (what they gave stays consumed);
    with `periods_from`, only those of periods starting then or later."""
    held = [
        g
        for g in store.live_recurring_grants(s, sub.pk)
        if periods_from is None or (g.period_start is not None and as_utc(g.period_start) >= periods_from)
    ]
    if not held:
        return
    for w in sorted(store.wallets_by_pk(s, held), key=lambda w: (w.customer_pk, w.currency_pk, w.resource_ref)):
        wallet = store.locked_wallet(s, sub.environment_id, w.customer_pk, w.currency_pk, w.resource_ref)
        moved_at = _after_lock(now)
        for g in engine.catch_up(s, wallet, moved_at):
            if g.subscription_pk != sub.pk or g.status not in (SCHEDULED, ACTIVE) or g.period_start is None:
                continue
            if periods_from is None or as_utc(g.period_start) >= periods_from:
                engine.end(s, wallet, g, VOIDED, moved_at)
                g.updated_at = moved_at


def revoke_at(s: Session, sub: Subscription, ends_at: datetime, now: datetime) -> None:
    """A cancellation with `prorate: true`: revoke now if the subscription ends now, else when it ends."""
    if ends_at <= now:
        revoke(s, sub, now)
        return
    enqueue(
        s,
        sub.environment_id,
        REVOKE_JOB,
        {"subscription": sub.pk, "endsAt": ends_at.isoformat()},
        run_at=ends_at,
        dedupe_key=f"credits-revoke:{sub.pk}:{ends_at.isoformat()}",
    )


@register(RENEW_JOB)
def _renew_job(db: Database, ctx: JobContext) -> None:
    with db.transaction() as s:
        # Locked first, as a change of the subscription does: the terms read are the ones that hold.
        sub = s.get(Subscription, int(ctx.payload["subscription"]), with_for_update=True)
        if sub is not None:
            sync_subscription(s, sub, utcnow())


@register(REVOKE_JOB)
def _revoke_job(db: Database, ctx: JobContext) -> None:
    """Only if the subscription still ends then (its own end job may run just before or after this one): a
    withdrawn or moved cancellation revokes nothing."""
    with db.transaction() as s:
        sub = s.get(Subscription, int(ctx.payload["subscription"]), with_for_update=True)
        ends_at = datetime.fromisoformat(ctx.payload["endsAt"])
        if sub is None or sub.end_date is None:
            return
        end = as_utc(sub.end_date)
        if end == ends_at or (sub.status not in LIVE and end >= ends_at):  # ends now, or its end job ran first
            revoke(s, sub, utcnow())
