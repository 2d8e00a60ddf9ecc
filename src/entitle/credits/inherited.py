"""Recurring credits follow an inherited plan change (docs/credits.md, "Inherited changes").

A subscription keeps the plan version it bought but inherits from the latest published version of each
ancestor, so a new version of a parent plan, a parent archived, or its product archived or unarchived
(`ParentPlansChanged`) changes the CREDIT entitlements of every plan built on it. The subscriptions on
those plans are brought in line exactly as a migration to a new version of their own plan brings them
(`recurring.sync_subscription`: the same regrant rule, the same exactly-once locks), in the transaction
that made the change.

The event is published while the chains still hold the changed parents: before a publish or an archive
is applied, after an unarchive. So what the chains granted is read when it is heard, and the
subscriptions are synced just before the commit, once the change is applied — only those on a plan whose
chain's CREDIT terms differ between the two reads. Unarchiving is the one change already applied when
heard (the chain reads the same before and after, to the package): what the chain granted before it is
the chain cut at the first changed parent, as it read while they were archived.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.catalog.packages import rules as package_rules
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.events import ParentPlansChanged
from entitle.catalog.packages.models import Package
from entitle.clock import utcnow
from entitle.credits import notices, recurring, store
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.rules import LIVE

_PENDING = "entitle.credits.inherited"

CreditTerms = dict[package_rules.Key, package_rules.EntitlementTerms]


@dataclass
class _Heard:
    """One environment's inherited changes in a transaction: the changed parents, and what the chain of
    each plan built on them granted when first heard (its packages, and their CREDIT terms)."""

    parents: set[str] = field(default_factory=set)
    chains: dict[int, tuple[int, ...]] = field(default_factory=dict)
    credits: dict[int, CreditTerms] = field(default_factory=dict)


def heard(s: Session, event: ParentPlansChanged) -> None:
    """Note the plans built on the changed parents and what their chains grant now (nothing to do in an
    environment whose catalog grants no credits)."""
    wanted = set(event.parent_refs)
    if not wanted or not store.catalog_grants_credits(s, event.env_id):
        return
    chains = subscriptions.inheriting(s, event).chains
    if not chains:
        return
    pending: dict[int, _Heard] = s.info.setdefault(_PENDING, {})
    seen = pending.setdefault(event.env_id, _Heard())
    seen.parents |= wanted
    fresh = {pk: chain for pk, chain in chains.items() if pk not in seen.chains}  # the first hearing counts
    for pk, terms in _credit_terms(s, fresh).items():
        seen.chains[pk] = tuple(p.pk for p in fresh[pk])
        seen.credits[pk] = terms


def follow(s: Session) -> None:
    """Just before the commit: sync the live subscriptions on every plan whose chain now grants other
    credits than it did. A before_commit hook runs ahead of `notices.announce` (see `install`), so the
    grants made here are announced like any other."""
    pending: dict[int, _Heard] | None = s.info.pop(_PENDING, None)
    if not pending:
        return
    for env_id, seen in sorted(pending.items()):
        plans = {p.pk: p for p in s.scalars(select(Package).where(Package.pk.in_(list(seen.chains))))}
        chains = {pk: packages.plan_chain(s, env_id, plan) for pk, plan in plans.items()}
        now_terms = _credit_terms(s, chains)
        changed = []
        for pk, chain in sorted(chains.items()):
            before = seen.credits[pk]
            if tuple(p.pk for p in chain) == seen.chains[pk]:
                # Applied before it was heard (an unarchive), or nothing changed: compare with the chain
                # as it read without the changed parents.
                before = _credit_terms(s, {pk: _cut(chain, seen.parents)})[pk]
            if now_terms[pk] != before:
                changed.append(pk)
        if not changed:
            continue
        # Locked first, as a change of the subscription and the renewal job lock it: the terms read are
        # the ones that hold. One statement for all of them; each sync then costs its own (the wallets
        # it locks and the grants it reads and writes are the subscription's).
        subs = s.scalars(
            select(Subscription)
            .where(
                Subscription.environment_id == env_id,
                Subscription.plan_pk.in_(changed),
                Subscription.status.in_([st.value for st in LIVE]),
            )
            .order_by(Subscription.pk)
            .with_for_update()
        ).all()
        now = utcnow()
        recurring.sync_all(s, env_id, subs, now)


def _cut(chain: Sequence[Package], parents: set[str]) -> list[Package]:
    """The chain up to (not including) its first ancestor among `parents`."""
    for i, p in enumerate(chain[1:], start=1):
        if p.ref_id in parents:
            return list(chain[:i])
    return list(chain)


def _credit_terms(s: Session, chains: dict[int, list[Package]]) -> dict[int, CreditTerms]:
    """Each chain's CREDIT entitlements with inheritance applied (one query for all of them)."""
    involved: Iterable[int] = {p.pk for chain in chains.values() for p in chain}
    rows = packages.entitlements_of_many(s, involved)
    result: dict[int, CreditTerms] = {}
    for pk, chain in chains.items():
        levels = [
            [package_rules.terms_of(e) for e in rows.get(p.pk, []) if e.entitlement_type == "CREDIT"] for p in chain
        ]
        result[pk] = package_rules.effective_package_entitlements(levels)
    return result


def _forget(s: Session) -> None:
    s.info.pop(_PENDING, None)


def install() -> None:
    if sa_event.contains(Session, "before_commit", follow):
        return
    # Inserted ahead of the notices' hook (installed first, here, so this one goes in front of it): the
    # grants this makes are announced, and the push adapter's hook records the announcements.
    notices.install()
    sa_event.listen(Session, "before_commit", follow, insert=True)
    sa_event.listen(Session, "after_rollback", _forget)
