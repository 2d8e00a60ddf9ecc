"""Raw events become usage, in the transaction that stored them, so a check sees them at once.

Each metered feature's meter says what an event contributes (`meters.measure`); contributions are
folded into a tally incrementally (`rules.step`), never by rescanning a window's events.

- The customer holds the feature: the event counts in the usage window containing its timestamp.
- Nobody can count it yet (no such customer, an archived one, or no entitlement to the feature): its
  contribution waits in a tally per customer id, resource and feature (`usage_waiting`), kept from the
  moment it arrives. When the customer's entitlements change (`EntitlementsChanged`: a subscription
  provisioned, started, paid or changed, a promotion granted, a customer unarchived) what waits for a
  feature it now holds moves into its current usage window (`fold_waiting`), in the transaction that
  made the change, so a check right after provisioning includes it. That is one merge per waiting
  feature: bounded work, however many events waited. A credit-priced feature draws its credits for what
  the fold added then, as if the events had just arrived.

A number outside the documented range, or a contribution that would take a tally out of its range,
refuses the whole batch (400), naming each offending event.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.clock import utcnow
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.types import json_text
from entitle.events.ingested import NewEvent
from entitle.events.rules import refusal
from entitle.grants.engine import Grant, Window, customer_grants, owners_grants_until, resource_key, usage_window
from entitle.usage import ports, store
from entitle.usage.kept import KEPT_OWNERS, KeptPerEnvironment
from entitle.usage.meters import (
    Measure,
    compile_meter,
    dimensions_read,
    event_names_matched,
    field_path,
    measure,
    number,
    value_text,
)
from entitle.usage.models import UsageCounter, WaitingUsage
from entitle.usage.owners import CounterMoved, announce
from entitle.usage.rules import RANGE_TEXT, Tally, fold, fold_checked, merge, usage_number

log = logging.getLogger("entitle.usage")

Problem = dict[str, str]
ADDITIVE = frozenset({"SUM", "COUNT", "UNIQUE"})  # aggregations where each event adds what it costs


Owner = tuple[str, str | None]  # customer id, resource id
Wanted = tuple[str, str | None, str]  # customer id, resource id, feature
# What one event adds to a tally: its position in the request (to name it), and its number (COUNT: 1)
# or UNIQUE's text.
Item = tuple[int, Decimal | str]
Amounts = list[Decimal | str | None]  # per feature, one per event of the batch (None: adds nothing)


def _function(feature: Feature) -> str:
    assert feature.meter is not None
    return str(feature.meter["aggregation"]["function"])


def _measure(metered: list[Feature], events: Sequence[NewEvent]) -> tuple[dict[str, Amounts], list[Problem]]:
    """Per feature, what each event contributes; and the events whose number is out of range."""
    numbers: dict[tuple[type, Any], Decimal | None] = {}  # a batch repeats its values: read each once
    amounts: dict[str, Amounts] = {}
    refused: dict[int, Problem] = {}
    # Meters reading the same dimensions (SUM, MAX, MIN and AVG of one field) share the batch's kinds.
    grouped: dict[tuple[str, ...], tuple[list[tuple[Any, ...]], dict[tuple[Any, ...], NewEvent]]] = {}
    # Meters that measure every kind alike (SUM, MAX and AVG of one field, filtered alike) share one
    # column: what a batch adds is then gathered once for all of them (`_share`).
    columns: dict[tuple[tuple[str, ...], frozenset[tuple[tuple[Any, ...], Decimal | str | None]]], Amounts] = {}
    # Meters that read the same number the same way (SUM, MAX, MIN and AVG of one field, filtered alike)
    # measure each kind alike: measured once for all of them.
    measures: dict[str, tuple[dict[tuple[Any, ...], Decimal | str | None], dict[tuple[Any, ...], Decimal]]] = {}
    # The common meter (filtered on the event's name only) is measured a column at a time; meters
    # measuring alike share their column.
    by_name: dict[str, tuple[Amounts, list[tuple[int, Decimal]]]] = {}
    names = [e.event_name for e in events]
    cached: dict[tuple[type, Any], tuple[Decimal | None, Decimal | None]] = {}
    for feature in metered:
        assert feature.meter is not None
        simple, accepted = event_names_matched(feature.meter)
        if simple:
            measure_key = _measure_key(feature.meter)
            if measure_key not in by_name:
                by_name[measure_key] = _column(feature.meter, accepted, names, events, cached)
            column, out_of_range_at = by_name[measure_key]
            amounts[feature.ref_id] = column
            for position, raw in out_of_range_at:
                index = events[position].index
                if index not in refused:
                    refused[index] = {
                        "field": f"events.{index}.{field_path(feature.meter)}",
                        "problem": f"{raw} is outside the range a meter counts ({RANGE_TEXT})",
                    }
            continue
        # Events alike in their name and the dimensions the meter reads contribute alike: each kind is
        # measured (and range-checked) once, by one of its events.
        reads = dimensions_read(feature.meter)
        if reads not in grouped:
            grouped[reads] = _kinds_of(reads, events)
        kinds, representative = grouped[reads]
        measure_key = _measure_key(feature.meter)
        if measure_key not in measures:
            measures[measure_key] = _measure_kinds(compile_meter(feature.meter, numbers), representative)
        kept, out_of_range = measures[measure_key]
        alike = (reads, frozenset(kept.items()))
        if alike not in columns:
            columns[alike] = list(map(kept.__getitem__, kinds))
        amounts[feature.ref_id] = columns[alike]
        for kind, e in zip(kinds, events, strict=True) if out_of_range else ():
            if kind in out_of_range and e.index not in refused:
                refused[e.index] = {
                    "field": f"events.{e.index}.{field_path(feature.meter)}",
                    "problem": f"{out_of_range[kind]} is outside the range a meter counts ({RANGE_TEXT})",
                }
    return amounts, [refused[i] for i in sorted(refused)]


def _column(
    meter: dict[str, Any],
    accepted: frozenset[str] | None,
    names: list[str],
    events: Sequence[NewEvent],
    cached: dict[tuple[type, Any], tuple[Decimal | None, Decimal | None]],
) -> tuple[Amounts, list[tuple[int, Decimal]]]:
    """What each event contributes to a meter filtered on the event's name only (`accepted`: the names it
    counts, None: all), as `measure` answers it and numbers kept by `usage_number`; and the positions of
    the events whose number is out of range, with that number. `cached`: numbers read so far, by type
    and value (a batch repeats its values; True == 1 == 1.0, yet only the numbers are numbers)."""
    aggregation = meter["aggregation"]
    function, field = aggregation["function"], aggregation.get("field")
    if function == "COUNT":
        one = Decimal(1)
        return ([one] * len(names) if accepted is None else [one if n in accepted else None for n in names]), []
    if not field:
        return [None] * len(names), []
    if field == "eventName":
        values: list[Any] = list(names)
    else:
        key = field.removeprefix("dimensions.")
        values = [e.dimensions.get(key) for e in events]
    if accepted is not None:
        values = [v if n in accepted else None for v, n in zip(values, names, strict=True)]
    if function == "UNIQUE":
        return [v if type(v) is str else (None if v is None else value_text(v)) for v in values], []
    column: Amounts = []
    out_of_range: list[tuple[int, Decimal]] = []
    for position, value in enumerate(values):
        if value is None:
            column.append(None)
            continue
        try:
            kept, beyond = cached[(type(value), value)]
        except KeyError:
            raw = number(value)
            kept = None if raw is None else usage_number(raw)
            beyond = raw if raw is not None and kept is None else None
            cached[(type(value), value)] = (kept, beyond)
        except TypeError:  # not hashable: not a dimension value, read it anyway
            raw = number(value)
            kept = None if raw is None else usage_number(raw)
            beyond = raw if raw is not None and kept is None else None
        column.append(kept)
        if beyond is not None:
            out_of_range.append((position, beyond))
    return column, out_of_range


def _measure_key(meter: dict[str, Any]) -> str:
    """What decides what a meter measures in an event (`measure`): its filters and field, and whether it
    counts events (COUNT), their distinct values (UNIQUE) or their numbers (SUM, MAX, MIN, AVG alike)."""
    aggregation = meter["aggregation"]
    function = aggregation["function"]
    reads = function if function in ("COUNT", "UNIQUE") else "NUMBER"
    return json_text([reads, aggregation.get("field"), meter.get("filters")])


def _measure_kinds(
    measured: Measure, representative: dict[tuple[Any, ...], NewEvent]
) -> tuple[dict[tuple[Any, ...], Decimal | str | None], dict[tuple[Any, ...], Decimal]]:
    """What each kind contributes (numbers within range), and the kinds whose number is out of range."""
    kept: dict[tuple[Any, ...], Decimal | str | None] = {}
    out_of_range: dict[tuple[Any, ...], Decimal] = {}
    for kind, e in representative.items():
        amount = measured(e.event_name, e.dimensions)
        if isinstance(amount, Decimal):
            kept[kind] = usage_number(amount)
            if kept[kind] is None:
                out_of_range[kind] = amount
        else:
            kept[kind] = amount
    return kept, out_of_range


def _kinds_of(
    reads: tuple[str, ...], events: Sequence[NewEvent]
) -> tuple[list[tuple[Any, ...]], dict[tuple[Any, ...], NewEvent]]:
    """Each event's kind, and one event of each kind."""
    kinds = _kinds(reads, events)
    try:
        return kinds, dict(zip(kinds, events, strict=True))
    except TypeError:  # a value that is not hashable (not a dimension value): measure each event
        kinds = [(position,) for position in range(len(events))]
        return kinds, dict(zip(kinds, events, strict=True))


def _kinds(reads: tuple[str, ...], events: Sequence[NewEvent]) -> list[tuple[Any, ...]]:
    """Each event's name and the dimensions read, each value with its type (True, 1 and 1.0 are equal
    keys, yet measure apart)."""
    if not reads:
        return [(e.event_name,) for e in events]
    if len(reads) == 1:  # the common meter: one field, filtered on the event name
        name = reads[0]
        return [(e.event_name, type(v := e.dimensions.get(name)), v) for e in events]
    return [(e.event_name, *[(type(v), v) for v in map(e.dimensions.get, reads)]) for e in events]


# The last resetting window computed per schedule (`_schedule`), across batches: computing one costs more
# than counting a customer's share of a batch, and the next batch of that customer mostly falls in it.
# Windows partition time from the schedule's anchor on (`usage_period_at`), so a remembered one answers
# for every instant it contains. Bounded: forgotten wholesale when full.
_LAST_WINDOWS: dict[tuple[object, ...], Window] = {}
_LAST_WINDOWS_HELD = 50_000


class _Windows:
    """The usage windows of one schedule (features whose windows reset alike), each computed once: a
    batch's events mostly share a window."""

    def __init__(self, grant: Grant, now: datetime) -> None:
        self.grant = grant
        self.schedule = _schedule(grant)
        self.seen: list[Window] = []
        remembered = _LAST_WINDOWS.get(self.schedule)
        if remembered is not None:
            self.seen.append(remembered)
        self.current = self.of(now)

    def of(self, at: datetime) -> Window:
        for window in self.seen:
            if window.end is not None and window.start <= at < window.end:
                return window
        grant = self.grant
        window = usage_window(grant.feature, grant.allowance, grant.usage_anchor, at)
        if window.end is not None:
            self.seen.append(window)
            if len(_LAST_WINDOWS) >= _LAST_WINDOWS_HELD:
                _LAST_WINDOWS.clear()
            _LAST_WINDOWS[self.schedule] = window
        return window


def _schedule(grant: Grant) -> tuple[object, ...]:
    """What decides a grant's usage windows (`usage_window`): grants alike share their windows."""
    allowance = grant.allowance
    return grant.feature.meter_type, allowance.reset_period, allowance.reset_anchor, grant.usage_anchor


@dataclass(slots=True)
class _Slot:
    """What a batch adds to one counter."""

    customer: Customer
    resource_ref: str | None
    grant: Grant
    window: Window
    in_current_window: bool
    items: list[Item] = field(default_factory=list)


Holders = dict[Owner, tuple[Customer | None, dict[str, Grant]]]


@dataclass(frozen=True)
class Resolved:
    """The environment's meters, and the owners' customers and grants of their metered features, as read
    before the write transaction at `at`. The transaction uses them only while `ports.grant_changes` says
    nothing they rest on changed since `mark` (read before them, in the same read), and before
    `valid_until`, when a subscription or promotion of theirs ends."""

    metered: list[Feature]
    holders: Holders
    at: datetime
    mark: int
    valid_until: datetime | None


@dataclass(frozen=True)
class Prepared:
    """A batch measured before its transaction: with which meters, each event's amounts and problem (by
    its index in the request), and what its owners hold."""

    meters: tuple[tuple[str, str], ...]
    position: dict[int, int]
    amounts: dict[str, Amounts]
    problems: dict[int, Problem]
    resolved: Resolved | None = None
    plan: Plan | None = None


@dataclass(frozen=True)
class Plan:
    """Where every prepared event counts, should all of them be new and their owners' grants still hold:
    the counters' slots, made before the write transaction. Their windows were found at the batch's
    instant: the plan holds while the transaction's clock is before `until` (the first end of a window
    that was current then; None: none ends)."""

    slots: dict[store.CounterKey, _Slot]
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


def _remember(db: Database, env_id: int, resolved: Resolved, owners: list[Owner]) -> None:
    if len(resolved.holders) > KEPT_OWNERS:
        resolved = replace(resolved, holders={owner: resolved.holders[owner] for owner in owners})
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
    owners = sorted({(e.customer_ref, e.resource_ref) for e in candidates}, key=_owner_order)
    with nullcontext(session) if session is not None else db.read() as s:
        mark = ports.grant_changes.impl.mark(s, env_id)
        known = _still_known(s, db, env_id, mark, now)
        if known is None:
            metered = sorted(features.metered_with_meter(s, env_id), key=lambda f: f.ref_id)
            known = Resolved(metered, {}, at=now, mark=mark, valid_until=None)
        metered = known.metered
        missing = [owner for owner in owners if owner not in known.holders] if metered else []
        if missing:
            found, until = _holders(s, env_id, missing, now, metered)
            ends = [instant for instant in (known.valid_until, until) if instant is not None]
            known = replace(known, holders={**known.holders, **found}, valid_until=min(ends, default=None))
    # Grants resolved earlier hold now too: nothing they rest on changed, and no end came between.
    resolved = replace(known, at=now)
    _remember(db, env_id, resolved, owners)
    amounts, problems = _measure(metered, candidates)
    position = {e.index: p for p, e in enumerate(candidates)}
    by_index = {int(p["field"].split(".")[1]): p for p in problems}
    plan = None
    if metered and not problems and all(owner in resolved.holders for owner in owners):
        # Where the events count, made here rather than holding the write lock (used only if they all
        # turn out new and nothing they rest on changed; and only when none waits for a grant).
        wanted, positions = _wanted(candidates, metered, amounts)
        slots, waiting, until = _slots(candidates, amounts, wanted, positions, resolved.holders, now)
        if slots and not waiting:
            plan = Plan(slots, until, amounts, resolved)
    return Prepared(_meters(metered), position, amounts, by_index, resolved, plan)


def _still_valid(s: Session, env_id: int, prepared: object, new: list[NewEvent], now: datetime) -> Resolved | None:
    """What was resolved before the transaction, when nothing it rests on changed since (None: read it
    again, here)."""
    resolved = prepared.resolved if isinstance(prepared, Prepared) else None
    if resolved is None or now < resolved.at or (resolved.valid_until is not None and now >= resolved.valid_until):
        return None
    owners = {(e.customer_ref, e.resource_ref) for e in new}
    if resolved.metered and not owners <= resolved.holders.keys():
        return None
    if not ports.grant_changes.impl.unchanged_since(s, env_id, resolved.mark, {c for c, _ in owners}):
        return None
    return resolved


def apply_events(s: Session, env_id: int, new: list[NewEvent], prepared: object = None) -> None:
    """Count newly stored events (duplicates never reach here: the insert skipped them). A fixed number
    of statements for the whole batch, however many customers, features and windows it touches."""
    now = utcnow()
    resolved = _still_valid(s, env_id, prepared, new, now)
    if resolved is not None:
        metered = resolved.metered
    else:
        metered = sorted(features.metered_with_meter(s, env_id), key=lambda f: f.ref_id)
    if not metered:
        return
    planned: dict[store.CounterKey, _Slot] | None = None
    if isinstance(prepared, Prepared) and prepared.meters == _meters(metered):
        made = prepared.plan
        # Made from these amounts, from grants that still hold, and its current windows still current.
        if made is not None and (made.amounts is not prepared.amounts or made.resolved is not resolved):
            made = None
        if made is not None and made.until is not None and now >= made.until:
            made = None
        if [e.index for e in new] == list(prepared.position):  # no duplicate: the events measured, in order
            amounts = prepared.amounts
            planned = made.slots if made is not None else None
        elif made is not None and {e.index for e in new} <= prepared.position.keys():
            # Keys stored by another batch since they were looked up: those events are not this batch's.
            amounts = prepared.amounts
            planned = _without(made.slots, prepared.position.keys() - {e.index for e in new})
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
        amounts, problems = _measure(metered, new)
    if problems:
        raise refusal(problems)
    if planned is not None:
        if not planned:  # what remains adds to no counter
            return
        slots: dict[store.CounterKey, _Slot] = planned
        waiting: dict[store.WaitingKey, list[Item]] = {}
    else:
        wanted, positions = _wanted(new, metered, amounts)
        if not wanted:
            return
        owners = sorted({(c, r) for c, r, _ in wanted}, key=_owner_order)
        holders = resolved.holders if resolved is not None else _holders(s, env_id, owners, now, metered)[0]
        unheld = {c for c, r, ref in wanted if ref not in holders[(c, r)][1]}
        if unheld and store.lock_owners(s, env_id, unheld):
            # Another transaction may have just granted the feature (and folded what waited): look again.
            holders = {**holders, **_holders(s, env_id, [o for o in owners if o[0] in unheld], now, metered)[0]}
        slots, waiting, _ = _slots(new, amounts, wanted, positions, holders, now)
    problems += _count_in_windows(s, env_id, slots)
    problems += _count_waiting(s, env_id, waiting, {f.ref_id: f for f in metered})
    if problems:
        raise refusal(sorted(problems, key=lambda p: int(p["field"].split(".")[1])))


def _without(slots: dict[store.CounterKey, _Slot], skipped: set[int]) -> dict[store.CounterKey, _Slot]:
    """The slots without the items of these events (by index in the request); a slot left empty goes.
    Slots that shared their items still share them."""
    kept: dict[store.CounterKey, _Slot] = {}
    filtered: dict[int, list[Item]] = {}
    for key, slot in slots.items():
        items = filtered.get(id(slot.items))
        if items is None:
            items = filtered[id(slot.items)] = [item for item in slot.items if item[0] not in skipped]
        if items:
            kept[key] = replace(slot, items=items)
    return kept


def _wanted(
    new: Sequence[NewEvent], metered: list[Feature], amounts: dict[str, Amounts]
) -> tuple[dict[Wanted, list[Item]], dict[Owner, list[int]]]:
    """What the events of each owner add to each feature (in owner order); and each owner's events (their
    positions in `new`)."""
    positions: dict[Owner, list[int]] = defaultdict(list)
    for position, e in enumerate(new):
        positions[(e.customer_ref, e.resource_ref)].append(position)
    indexes = [e.index for e in new]
    wanted: dict[Wanted, list[Item]] = {}
    for owner in sorted(positions, key=_owner_order):
        at = positions[owner]
        gathered: dict[int, list[Item]] = {}  # per column (meters measuring alike share theirs): read-only
        for feature in metered:
            column = amounts[feature.ref_id]
            items = gathered.get(id(column))
            if items is None:
                items = gathered[id(column)] = [(indexes[p], a) for p in at if (a := column[p]) is not None]
            if items:
                wanted[(*owner, feature.ref_id)] = items
    return wanted, positions


def _slots(
    new: Sequence[NewEvent],
    amounts: dict[str, Amounts],
    wanted: dict[Wanted, list[Item]],
    positions: dict[Owner, list[int]],
    holders: Holders,
    now: datetime,
) -> tuple[dict[store.CounterKey, _Slot], dict[store.WaitingKey, list[Item]], datetime | None]:
    """The counters the wanted items go to (each event in the usage window of its instant), what waits
    for a customer or a grant, and the first end of a window current at `now` (None: none ends)."""
    slots: dict[store.CounterKey, _Slot] = {}
    waiting: dict[store.WaitingKey, list[Item]] = {}
    timestamps = [e.timestamp for e in new]
    spans = {owner: _span(timestamps, at) for owner, at in positions.items()}
    schedules: dict[tuple[Owner, tuple[object, ...]], tuple[_Windows, dict[datetime, Window]]] = {}
    for (customer_ref, resource_ref, ref), items in wanted.items():
        customer, held = holders[(customer_ref, resource_ref)]
        grant = held.get(ref)
        resource = resource_key(resource_ref)
        if customer is None or grant is None:
            waiting[(customer_ref, resource, ref)] = items
            continue
        owner = (customer_ref, resource_ref)
        schedule = (owner, _schedule(grant))
        if schedule not in schedules:
            schedules[schedule] = (_Windows(grant, now), {})
        finder, window_at = schedules[schedule]
        current = finder.current
        earliest, latest = spans[owner]
        if current.start <= earliest and (current.end is None or latest < current.end):
            # The common batch: every event of the owner falls in the current window, one counter.
            whole = _Slot(customer, resource_ref, grant, current, in_current_window=True, items=items)
            slots[(customer.pk, ref, resource, current.start)] = whole
            continue
        pk = customer.pk
        column = amounts[ref]
        adding = [p for p in positions[owner] if column[p] is not None]
        for p, item in zip(adding, items, strict=True):
            instant = timestamps[p]
            window = window_at.get(instant)
            if window is None:
                window = window_at[instant] = finder.of(instant)
            key = (pk, ref, resource, window.start)
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = _Slot(customer, resource_ref, grant, window, window.start == current.start)
            slot.items.append(item)
    ends = [finder.current.end for finder, _ in schedules.values() if finder.current.end is not None]
    return slots, waiting, min(ends, default=None)


def _span(timestamps: list[datetime], positions: list[int]) -> tuple[datetime, datetime]:
    """The earliest and latest instant of these events."""
    instants = [timestamps[p] for p in positions]
    return min(instants), max(instants)


def _owner_order(owner: Owner) -> tuple[str, str]:
    return owner[0], owner[1] or ""


def _holders(
    s: Session, env_id: int, owners: list[Owner], now: datetime, metered: list[Feature]
) -> tuple[Holders, datetime | None]:
    """Each owner's live customer (None: unknown or archived) and its grants of the `metered` features, in
    a fixed number of queries; and the first instant after `now` they may resolve otherwise (None: never)."""
    found = customers.find_many(s, env_id, {c for c, _ in owners})
    live = [(found[c], r) for c, r in owners if c in found and found[c].archived_at is None]
    grants, valid_until = owners_grants_until(s, env_id, live, now, {f.ref_id: f for f in metered})
    result: Holders = {}
    for customer_ref, resource_ref in owners:
        customer = found.get(customer_ref)
        if customer is None or customer.archived_at is not None:
            result[(customer_ref, resource_ref)] = (None, {})
        else:
            result[(customer_ref, resource_ref)] = (customer, grants[(customer.pk, resource_ref or None)][0])
    return result, valid_until


def _numbers(items: list[Item]) -> list[Decimal]:
    return [amount for _, amount in items if isinstance(amount, Decimal)]


def _refused(items: list[Item], refused: list[tuple[int, str]]) -> list[Problem]:
    """An event that would leave the range is named and skipped, so the batch resent without the named
    events counts exactly what this one counted without them."""
    return [{"field": f"events.{items[position][0]}", "problem": why} for position, why in refused]


def _tally_of(row: UsageCounter | WaitingUsage | store.TallyRow) -> Tally:
    return Tally(value=row.value, samples=row.samples or 0, total=row.total)


def _write(row: UsageCounter | WaitingUsage, tally: Tally, now: datetime) -> None:
    row.value, row.samples, row.total = tally.value, tally.samples, tally.total
    row.updated_at = now


def _count_waiting(
    s: Session, env_id: int, waiting: dict[store.WaitingKey, list[Item]], by_feature: dict[str, Feature]
) -> list[Problem]:
    rows = store.locked_waitings(s, env_id, waiting)
    unique = [key for key in waiting if _function(by_feature[key[2]]) == "UNIQUE"]
    added = store.add_distinct_many(
        s, [(rows[key].pk, str(amount)) for key in unique for _, amount in waiting[key]], owner="waiting_pk"
    )
    problems: list[Problem] = []
    tallies: list[Tally] = []
    for key, items in waiting.items():
        row = rows[key]
        function = _function(by_feature[key[2]])
        if function == "UNIQUE":
            tallies.append(Tally(value=row.value + added.get(row.pk, 0)))
            continue
        tally, refused = fold_checked(function, _tally_of(row), _numbers(items))
        problems += _refused(items, refused)
        tallies.append(tally)
    if not problems:
        store.save_tallies(s, WaitingUsage, [_written(rows[key], t) for key, t in zip(waiting, tallies, strict=True)])
    return problems


def _count_in_windows(s: Session, env_id: int, slots: dict[store.CounterKey, _Slot]) -> list[Problem]:
    counters = store.locked_counters(s, env_id, slots)
    functions = [_function(slot.grant.feature) for slot in slots.values()]
    distinct: list[tuple[int, str]] = []
    for (key, slot), function in zip(slots.items(), functions, strict=True):
        counter = counters[key]
        if counter.samples is None:  # written before tallies were kept (rare): rebuilt once
            _rebuild_if_legacy(s, env_id, counter, slot.grant.feature, slot.customer, slot.resource_ref, slot.window)
        if function == "UNIQUE":  # a slot repeats its values: each once
            distinct += [(counter.pk, value) for value in {str(amount) for _, amount in slot.items}]
    added = store.add_distinct_many(s, distinct, owner="counter_pk")
    problems: list[Problem] = []
    tallies: list[Tally] = []
    # Meters measuring alike (SUM, MAX, MIN and AVG of one field) share an owner's items: read their numbers once.
    numbers: dict[int, list[Decimal]] = {}
    for (key, slot), function in zip(slots.items(), functions, strict=True):
        counter = counters[key]
        if function == "UNIQUE":
            tallies.append(Tally(value=counter.value + added.get(counter.pk, 0)))
            continue
        read = numbers.get(id(slot.items))
        if read is None:
            read = numbers[id(slot.items)] = _numbers(slot.items)
        tally, refused = fold_checked(function, _tally_of(counter), read)
        problems += _refused(slot.items, refused)
        tallies.append(tally)
    if problems:  # the batch is refused (rolled back): nothing to write nor announce
        return problems
    before = {key: counters[key].value for key in slots}
    store.save_tallies(s, UsageCounter, [_written(counters[key], t) for key, t in zip(slots, tallies, strict=True)])
    priced = ports.credit_priced.impl(s, env_id)  # once for the batch: most features draw no credits
    for key, slot in slots.items():
        moved = CounterMoved(
            slot.customer,
            slot.grant.feature.ref_id,
            slot.resource_ref,
            slot.window,
            slot.grant.allowance,
            counters[key].value,
            slot.in_current_window,
        )
        announce(s, env_id, moved)
        if priced is None or slot.grant.feature.ref_id in priced:
            _charge_credits(s, env_id, slot.customer, slot.grant.feature, slot.resource_ref, counters[key], before[key])
    return problems


def _charge_credits(
    s: Session,
    env_id: int,
    customer: Customer,
    feature: Feature,
    resource_ref: str | None,
    counter: store.TallyRow | UsageCounter,
    before: Decimal,
    origin: str = "meter",
) -> None:
    """A credit-priced feature's events draw credits for what they added. Only additive meters (SUM, COUNT,
    UNIQUE) say what an event costs; MAX/MIN/AVG counters draw nothing (the estimate warns of it)."""
    delta = counter.value - before
    if delta > 0 and _function(feature) in ADDITIVE:
        event_id = f"{origin}:{counter.pk}:{counter.value}"  # the counter only grows here: unique per draw
        ports.charge_credits.impl(s, env_id, customer, feature.ref_id, resource_ref, delta, utcnow(), event_id)


def _written(row: store.TallyRow, tally: Tally) -> store.TallyRow:
    row.value, row.samples, row.total = tally.value, tally.samples, tally.total
    return row


def _rebuild_if_legacy(
    s: Session,
    env_id: int,
    counter: UsageCounter | store.TallyRow,
    feature: Feature,
    customer: Customer,
    resource_ref: str | None,
    window: Window,
) -> None:
    """A MAX, MIN, AVG or UNIQUE counter written before tallies were kept (no `samples`): rebuild its
    tally once from the window's stored events, as it used to be computed."""
    function = _function(feature)
    if counter.samples is not None or function in ("COUNT", "SUM"):
        if counter.samples is None:
            counter.samples = 0
        return
    assert feature.meter is not None
    stored = store.events_in_window(s, env_id, customer.ref_id, resource_ref, window.start, window.end)
    amounts = [measure(feature.meter, name, dims) for name, dims in stored]
    if function == "UNIQUE":
        store.clear_distinct(s, counter.pk)
        counter.value = Decimal(
            store.add_distinct(s, [str(a) for a in amounts if a is not None], counter_pk=counter.pk)
        )
        counter.samples = 0
        return
    numbers = [n for a in amounts if isinstance(a, Decimal) and (n := usage_number(a)) is not None]
    tally = fold(function, Tally(), numbers)
    counter.value, counter.samples, counter.total = tally.value, tally.samples, tally.total


def fold_waiting(s: Session, env_id: int, customer_ref: str, resource_ref: str | None) -> None:
    """Move what waits for this customer (and resource) into the current usage window of each feature
    it now holds. Idempotent: what moved no longer waits."""
    owner = (env_id, customer_ref, resource_key(resource_ref))
    settled = store.nothing_waits(s)
    if owner in settled:
        return
    store.lock_owner(s, env_id, customer_ref)
    waiting = store.waiting_of(s, env_id, customer_ref, owner[2])
    if not waiting:
        settled.add(owner)
        return
    customer = customers.find(s, env_id, customer_ref)
    if customer is None or customer.archived_at is not None:
        return
    now = utcnow()
    held = customer_grants(s, env_id, customer, resource_ref, now)[0]
    for row in waiting:
        grant = held.get(row.feature_ref)
        if grant is None or not grant.feature.meter:
            continue
        feature = grant.feature
        function = _function(feature)
        window = usage_window(feature, grant.allowance, grant.usage_anchor, now)
        counter = store.locked_counter(s, env_id, customer.pk, feature.ref_id, resource_key(resource_ref), window.start)
        _rebuild_if_legacy(s, env_id, counter, feature, customer, resource_ref, window)
        before = counter.value
        if function == "UNIQUE":
            tally = Tally(value=counter.value + store.move_distinct(s, row.pk, counter.pk))
        else:
            tally = merge(function, _tally_of(counter), _tally_of(row))
        _write(counter, tally, now)
        store.delete_waiting(s, row.pk)
        log.info(
            "usage of %s that waited for customer %s (resource %s) now counts: %s",
            feature.ref_id,
            customer_ref,
            resource_ref,
            row.value,
        )
        announce(
            s,
            env_id,
            CounterMoved(customer, feature.ref_id, resource_ref, window, grant.allowance, counter.value, True),
        )
        # The waiting row is deleted in this same transaction: a later fold finds nothing and draws nothing.
        _charge_credits(s, env_id, customer, feature, resource_ref, counter, before, origin="waited")
