"""Raw events become usage, in the transaction that stored them, so a check sees them at once.

Each metered feature's meter says what an event contributes (`meters.measure`); contributions are
folded into a tally incrementally (`rules.step`), never by rescanning a window's events.

- The customer holds the feature: the event counts in the usage window containing its timestamp.
- Nobody can count it yet (no such customer, an archived one, or no entitlement to the feature): its
  contribution waits in a tally per customer id, resource and feature (`usage_waiting`), kept from the
  moment it arrives. When the customer's entitlements change (`EntitlementsChanged`: a subscription
  provisioned, started, paid or changed, a promotion granted, a customer unarchived) what waits for a
  feature it now holds moves into its current usage window (`waiting.fold_waiting`), in the transaction that
  made the change, so a check right after provisioning includes it. That is one merge per waiting
  feature: bounded work, however many events waited. A credit-priced feature draws its credits for what
  the fold added then, as if the events had just arrived.

A number outside the documented range, or a contribution that would take a tally out of its range,
refuses the whole batch (400), naming each offending event.

Here: a batch prepared before its write transaction (`prepare`) and counted in it (`apply_events`).
What an event contributes is in `measuring`, which counter it goes to in `slots`, a tally's arithmetic
in `tallies`, and what waits in `waiting`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.clock import utcnow
from entitle.customers import store as customers
from entitle.db import Database
from entitle.db.types import json_text
from entitle.events.ingested import NewEvent
from entitle.events.rules import refusal
from entitle.grants.engine import Grant
from entitle.usage import batch_store, ports
from entitle.usage.kept import KEPT_OWNERS, KeptGrants, KeptPerEnvironment, grants_of, kept_grants
from entitle.usage.measuring import Amounts, Item, Problem, measure_events
from entitle.usage.models import UsageCounter
from entitle.usage.owners import CounterMoved, Who, announce
from entitle.usage.rules import Tally, fold_checked
from entitle.usage.slots import (
    Holders,
    Owner,
    Slot,
    owner_order,
    owner_positions,
    plan_slots,
    resolve_holders,
    summarize,
    wanted_by_owner,
    without,
)
from entitle.usage.tallies import (
    charge_credits,
    rebuild_if_legacy,
    refused_items,
    tally_of,
    written,
)
from entitle.usage.waiting import count_waiting

# An owner's live customer (its pk and id) and its grants of the metered features, as kept; None: no live
# customer.
KeptHolder = tuple[int, str, KeptGrants] | None


@dataclass(frozen=True)
class Resolved:
    """The environment's meters, and the owners' customers and grants of their metered features, as read
    before the write transaction at `at`. The transaction uses them only while `ports.grant_changes` says
    nothing they rest on changed since `mark` (read before them, in the same read), and before
    `valid_until`, when a subscription or promotion of theirs ends."""

    metered: list[Feature]
    holders: dict[Owner, KeptHolder]
    at: datetime
    mark: int
    valid_until: datetime | None
    # The meters of `metered` (`_meters`), written when they are read: the next batches that keep them
    # (`replace`) keep these too, and the transaction compares them again.
    meters: tuple[tuple[str, str], ...]
    # Each kept owner's customer and grants as a batch uses them (`_holders_kept`), made from its entry of
    # `holders` (kept beside it: an entry resolved again is made again), shared by the batches that keep
    # `metered` (`replace`): a batch made ~120 grants again from what was kept. Read-only once made.
    made: dict[Owner, tuple[KeptHolder, tuple[Who | None, dict[str, Grant]]]] = field(
        default_factory=dict, compare=False, repr=False
    )


@dataclass(frozen=True)
class Prepared:
    """A batch measured before its transaction: with which meters, each event's amounts and problem (by
    its index in the request), and what its owners hold (`holders`: read for this batch, in the read that
    resolved them)."""

    meters: tuple[tuple[str, str], ...]
    position: dict[int, int]
    amounts: dict[str, Amounts]
    problems: dict[int, Problem]
    resolved: Resolved | None = None
    plan: Plan | None = None
    # The events' owners (customer, resource), read here rather than in the transaction.
    owners: frozenset[Owner] = frozenset()
    holders: Holders | None = None


@dataclass(frozen=True)
class Plan:
    """Where every prepared event counts, should all of them be new and their owners' grants still hold:
    the counters' slots, made before the write transaction. Their windows were found at the batch's
    instant: the plan holds while the transaction's clock is before `until` (the first end of a window
    that was current then; None: none ends)."""

    slots: dict[batch_store.CounterKey, Slot]
    until: datetime | None
    # What it was made from: it holds only for these very amounts and grants.
    amounts: dict[str, Amounts]
    resolved: Resolved


def _meters(metered: list[Feature]) -> tuple[tuple[str, str], ...]:
    return tuple((f.ref_id, json_text(f.meter)) for f in metered)


# What the last batches of each environment resolved (a `Resolved`, per database and environment), so
# the next batch reads only what changed since (`usage.kept`). Bounded: at most `KEPT_OWNERS` owners
# per environment.
_known: KeptPerEnvironment[Resolved] = KeptPerEnvironment()


def _still_known(s: Session, db: Database, env_id: int, mark: int, now: datetime) -> Resolved | None:
    """What earlier batches resolved, less the customers whose grants changed since (None: nothing
    usable). Read after `mark`, in the same read: what it keeps holds as of the mark."""
    found = _known.since(s, db, env_id, mark, now)
    if found is None:
        return None
    known, changed = found
    holders = {owner: held for owner, held in known.holders.items() if owner[0] not in changed}
    return replace(known, holders=holders, mark=mark)


def _kept(holders: Holders) -> dict[Owner, KeptHolder]:
    return {
        owner: None if customer is None else (customer.pk, customer.ref_id, kept_grants(held))
        for owner, (customer, held) in holders.items()
    }


def _holders_kept(owners: list[Owner], known: Resolved) -> Holders:
    """The kept owners' customers and grants, as a batch uses them: made once per entry kept
    (`Resolved.made`)."""
    made = known.made
    by_ref: dict[str, Feature] | None = None
    holders: Holders = {}
    for owner in owners:
        held = known.holders[owner]
        found = made.get(owner)
        if found is None or found[0] is not held:
            if by_ref is None:
                by_ref = {f.ref_id: f for f in known.metered}
            used = (None, {}) if held is None else (Who(held[0], held[1]), grants_of(held[2], by_ref))
            found = made[owner] = (held, used)
        holders[owner] = found[1]
    return holders


def _remember(db: Database, env_id: int, resolved: Resolved, owners: list[Owner]) -> None:
    if len(resolved.holders) > KEPT_OWNERS:
        resolved = replace(resolved, holders={owner: resolved.holders[owner] for owner in owners}, made={})
    _known.keep(db, env_id, resolved)


def prepare(
    db: Database,
    env_id: int,
    candidates: Sequence[NewEvent],
    now: datetime | None = None,
    session: Session | None = None,
) -> Prepared:
    """Measure a batch, and resolve its owners' grants at `now` (the batch's instant), outside its write
    transaction (as committed now; `apply_events` checks in the transaction that they still hold), in
    `session` (a read session) or one of its own."""
    now = now or utcnow()
    positions = owner_positions(candidates)
    owners = sorted(positions, key=owner_order)
    with nullcontext(session) if session is not None else db.read() as s:
        mark = ports.grant_changes.impl.mark(s, env_id)
        known = _still_known(s, db, env_id, mark, now)
        if known is None:
            metered = sorted(features.metered_with_meter(s, env_id), key=lambda f: f.ref_id)
            known = Resolved(metered, {}, at=now, mark=mark, valid_until=None, meters=_meters(metered))
        metered = known.metered
        holders: Holders = {}
        if metered:
            missing = [owner for owner in owners if owner not in known.holders]
            if len(missing) < len(owners):
                holders = _holders_kept([o for o in owners if o in known.holders], known)
            if missing:
                found, until = resolve_holders(s, env_id, missing, now, metered)
                holders.update(found)
                ends = [instant for instant in (known.valid_until, until) if instant is not None]
                known = replace(known, holders={**known.holders, **_kept(found)}, valid_until=min(ends, default=None))
    # Grants resolved earlier hold now too: nothing they rest on changed, and no end came between.
    resolved = replace(known, at=now)
    _remember(db, env_id, resolved, owners)
    amounts, problems = measure_events(metered, candidates)
    position = {e.index: p for p, e in enumerate(candidates)}
    by_index = {int(p["field"].split(".")[1]): p for p in problems}
    plan = None
    if metered and not problems:
        # Where the events count, made here rather than holding the write lock (used only if they all
        # turn out new and nothing they rest on changed; and only when none waits for a grant).
        wanted, positions = wanted_by_owner(candidates, metered, amounts, positions)
        slots, waiting, until = plan_slots(candidates, wanted, positions, holders, now)
        if slots and not waiting:
            summarize(slots.values())
            plan = Plan(slots, until, amounts, resolved)
    return Prepared(resolved.meters, position, amounts, by_index, resolved, plan, frozenset(owners), holders)


def _still_valid(
    s: Session, env_id: int, prepared: object, new: list[NewEvent], now: datetime, *, all_prepared: bool
) -> Resolved | None:
    """What was resolved before the transaction, when nothing it rests on changed since (None: read it
    again, here). `all_prepared`: `new` are the events prepared, in order."""
    resolved = prepared.resolved if isinstance(prepared, Prepared) else None
    if resolved is None or now < resolved.at or (resolved.valid_until is not None and now >= resolved.valid_until):
        return None
    assert isinstance(prepared, Prepared)
    owners = prepared.owners if all_prepared else {(e.customer_ref, e.resource_ref) for e in new}
    if resolved.metered and (prepared.holders is None or not owners <= prepared.holders.keys()):
        return None
    if not ports.grant_changes.impl.unchanged_since(s, env_id, resolved.mark, {c for c, _ in owners}):
        return None
    return resolved


def apply_events(s: Session, env_id: int, new: list[NewEvent], prepared: object = None) -> None:
    """Count newly stored events (duplicates never reach here: the insert skipped them). A fixed number
    of statements for the whole batch, however many customers, features and windows it touches."""
    now = utcnow()
    # No duplicate met in the insert: the events measured, in order (the common batch).
    all_prepared = isinstance(prepared, Prepared) and [e.index for e in new] == list(prepared.position)
    resolved = _still_valid(s, env_id, prepared, new, now, all_prepared=all_prepared)
    if resolved is not None:
        metered = resolved.metered
    else:
        metered = sorted(features.metered_with_meter(s, env_id), key=lambda f: f.ref_id)
    if not metered:
        return
    planned: dict[batch_store.CounterKey, Slot] | None = None
    if isinstance(prepared, Prepared) and prepared.meters == (resolved.meters if resolved else _meters(metered)):
        made = prepared.plan
        # Made from these amounts, from grants that still hold, and its current windows still current.
        if made is not None and (made.amounts is not prepared.amounts or made.resolved is not resolved):
            made = None
        if made is not None and made.until is not None and now >= made.until:
            made = None
        if all_prepared:
            amounts = prepared.amounts
            planned = made.slots if made is not None else None
        elif made is not None and {e.index for e in new} <= prepared.position.keys():
            # Keys stored by another batch since they were looked up: those events are not this batch's.
            amounts = prepared.amounts
            planned = without(made.slots, prepared.position.keys() - {e.index for e in new})
        else:
            at = [prepared.position[e.index] for e in new]
            kept: dict[int, Amounts] = {}  # a column several meters share stays shared
            amounts = {}
            for ref, column in prepared.amounts.items():
                if id(column) not in kept:
                    kept[id(column)] = [column[p] for p in at]
                amounts[ref] = kept[id(column)]
        problems = [prepared.problems[e.index] for e in new if e.index in prepared.problems]
    else:  # nothing prepared, or a meter changed meanwhile: measure now
        amounts, problems = measure_events(metered, new)
    if problems:
        raise refusal(problems)
    if planned is not None:
        if not planned:  # what remains adds to no counter
            return
        slots: dict[batch_store.CounterKey, Slot] = planned
        waiting: dict[batch_store.WaitingKey, list[Item]] = {}
    else:
        wanted, positions = wanted_by_owner(new, metered, amounts)
        if not wanted:
            return
        owners = sorted({(c, r) for c, r, _ in wanted}, key=owner_order)
        if resolved is not None:
            assert isinstance(prepared, Prepared) and prepared.holders is not None  # `_still_valid` saw them
            holders = prepared.holders
        else:
            holders = resolve_holders(s, env_id, owners, now, metered)[0]
        unheld = {c for c, r, ref in wanted if ref not in holders[(c, r)][1]}
        if unheld and batch_store.lock_owners(s, env_id, unheld):
            # Another transaction may have just granted the feature (and folded what waited): look again.
            holders = {**holders, **resolve_holders(s, env_id, [o for o in owners if o[0] in unheld], now, metered)[0]}
        slots, waiting, _ = plan_slots(new, wanted, positions, holders, now)
    problems += _count_in_windows(s, env_id, slots)
    problems += count_waiting(s, env_id, waiting, {f.ref_id: f for f in metered})
    if problems:
        raise refusal(sorted(problems, key=lambda p: int(p["field"].split(".")[1])))


def _count_in_windows(s: Session, env_id: int, slots: dict[batch_store.CounterKey, Slot]) -> list[Problem]:
    # One pass per step over the slots, in key order, with nothing read twice: this runs holding the write
    # lock (on SQLite), and a batch moves about a hundred counters.
    counters = batch_store.locked_counters(s, env_id, slots)
    summarize(slots.values())  # a planned batch's were read before the transaction
    moving = [(slot, counters[key]) for key, slot in slots.items()]
    stored = [counter.value for _, counter in moving]  # as read, before any rebuild
    distinct: list[tuple[int, list[str]]] = []
    for slot, counter in moving:
        if counter.samples is None:  # written before tallies were kept (rare): rebuilt once
            rebuild_if_legacy(s, env_id, counter, slot.grant.feature, slot.customer, slot.resource_ref, slot.window)
        if slot.digests is not None:
            distinct.append((counter.pk, slot.digests))
    added = batch_store.add_digests(s, distinct, owner="counter_pk") if distinct else {}
    problems: list[Problem] = []
    tallies: list[Tally] = []
    for slot, counter in moving:
        if slot.digests is not None:
            tallies.append(Tally(value=counter.value + added.get(counter.pk, 0)))
            continue
        tally, refused = fold_checked(slot.function, tally_of(counter), slot.numbers)
        if refused:
            problems += refused_items(slot.added.items(), refused)
        tallies.append(tally)
    if problems:  # the batch is refused (rolled back): nothing to write nor announce
        return problems
    before = [counter.value for _, counter in moving]
    batch_store.save_tallies(
        s, UsageCounter, [written(counter, t) for (_, counter), t in zip(moving, tallies, strict=True)]
    )
    priced = ports.credit_priced.impl(s, env_id)  # once for the batch: most features draw no credits
    charged = [slot for slot, _ in moving if priced is None or slot.grant.feature.ref_id in priced]
    # The rows of the customers whose credits may be drawn (what the batch kept of them is no row).
    payers = customers.find_many(s, env_id, {slot.customer.ref_id for slot in charged}) if charged else {}
    for (slot, counter), was, previous in zip(moving, stored, before, strict=True):
        feature = slot.grant.feature
        value = counter.value
        moved = CounterMoved(
            slot.customer,
            feature.ref_id,
            slot.resource_ref,
            slot.window,
            slot.grant.allowance,
            value,
            slot.in_current_window,
            # A MAX, MIN or UNIQUE counter mostly stays put once a window has seen a few batches.
            changed=value != was,
        )
        announce(s, env_id, moved)
        if charged and (priced is None or feature.ref_id in priced):
            charge_credits(s, env_id, payers[slot.customer.ref_id], feature, slot.resource_ref, counter, previous)
    return problems
