"""Where a batch's events count: per owner (customer, resource) and metered feature, the counter of the
usage window each event's instant falls in (a `Slot`), or the tally waiting for a customer or a grant.
Planned before the write transaction when the owners' grants are known (`counting.prepare`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features.models import Feature
from entitle.customers import store as customers
from entitle.events.ingested import NewEvent
from entitle.grants.engine import Grant, Window, owners_grants_until, resource_key, usage_window
from entitle.usage import batch_store
from entitle.usage.measuring import Amounts, Item
from entitle.usage.owners import Who
from entitle.usage.rules import Numbers
from entitle.usage.tallies import function_of

Owner = tuple[str, str | None]  # customer id, resource id
Wanted = tuple[str, str | None, str]  # customer id, resource id, feature


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


@dataclass(slots=True, eq=False)
class Added:
    """What some events of a batch add to one feature: the positions in the batch of those adding
    something (their amount is not None), in the batch's column of amounts (which the meters measuring
    alike share). No tuple per event: only a refused event needs its index with its amount (`items`)."""

    at: list[int]
    column: Amounts
    indexes: list[int]  # each event's index in the request, by its position in the batch

    def items(self) -> list[Item]:
        column, indexes = self.column, self.indexes
        return [(indexes[p], amount) for p in self.at if (amount := column[p]) is not None]


@dataclass(slots=True)
class Slot:
    """What a batch adds to one counter."""

    customer: Who
    resource_ref: str | None
    grant: Grant
    window: Window
    in_current_window: bool
    added: Added
    # What it adds, read once (`summarize`): the numbers to fold, or UNIQUE's values (their digests,
    # sorted and distinct).
    numbers: Numbers | None = None
    digests: list[str] | None = None
    summarized: bool = False
    # The meter's aggregation (`tallies.function_of`), read with what it adds: the write transaction then
    # reads no feature's meter.
    function: str = ""


# Each owner's live customer (None: unknown or archived) and its grants.
Holders = dict[Owner, tuple[Who | None, dict[str, Grant]]]


def without(slots: dict[batch_store.CounterKey, Slot], skipped: set[int]) -> dict[batch_store.CounterKey, Slot]:
    """The slots without what these events add (by index in the request); a slot left empty goes. Slots
    that shared what they add still share it."""
    kept: dict[batch_store.CounterKey, Slot] = {}
    filtered: dict[int, Added] = {}
    for key, slot in slots.items():
        added = filtered.get(id(slot.added))
        if added is None:
            was = slot.added
            at = [p for p in was.at if was.indexes[p] not in skipped]
            added = filtered[id(was)] = Added(at, was.column, was.indexes)
        if added.at:
            kept[key] = replace(slot, added=added, numbers=None, digests=None, summarized=False)
    return kept


def summarize(slots: Iterable[Slot]) -> None:
    """Read what each slot adds (`Slot.numbers`, `Slot.digests`), once for the meters measuring alike
    (they share what an owner's events add): done before the write transaction for a planned batch, so
    that counting in it folds each counter in a few operations."""
    numbers: dict[int, Numbers | None] = {}
    for slot in slots:
        if slot.summarized:
            continue
        column, at = slot.added.column, slot.added.at
        slot.function = function_of(slot.grant.feature)
        if slot.function == "UNIQUE":
            slot.digests = batch_store.digests_of([str(column[p]) for p in at])
        else:
            key = id(slot.added)
            if key not in numbers:
                numbers[key] = Numbers.of([a for p in at if isinstance(a := column[p], Decimal)])
            slot.numbers = numbers[key]
        slot.summarized = True


def owner_positions(events: Sequence[NewEvent]) -> dict[Owner, list[int]]:
    """Each owner's events (their positions in `events`)."""
    positions: dict[Owner, list[int]] = defaultdict(list)
    for position, e in enumerate(events):
        positions[(e.customer_ref, e.resource_ref)].append(position)
    return positions


def wanted_by_owner(
    new: Sequence[NewEvent],
    metered: list[Feature],
    amounts: dict[str, Amounts],
    positions: dict[Owner, list[int]] | None = None,
) -> tuple[dict[Wanted, Added], dict[Owner, list[int]]]:
    """What the events of each owner add to each feature (in owner order); and each owner's events (their
    positions in `new`: `owner_positions`, unless given)."""
    if positions is None:
        positions = owner_positions(new)
    indexes = [e.index for e in new]
    wanted: dict[Wanted, Added] = {}
    for owner in sorted(positions, key=owner_order):
        at = positions[owner]
        gathered: dict[int, Added] = {}  # per column (meters measuring alike share theirs): read-only
        for feature in metered:
            column = amounts[feature.ref_id]
            added = gathered.get(id(column))
            if added is None:
                added = gathered[id(column)] = Added([p for p in at if column[p] is not None], column, indexes)
            if added.at:
                wanted[(*owner, feature.ref_id)] = added
    return wanted, positions


def plan_slots(
    new: Sequence[NewEvent],
    wanted: dict[Wanted, Added],
    positions: dict[Owner, list[int]],
    holders: Holders,
    now: datetime,
) -> tuple[dict[batch_store.CounterKey, Slot], dict[batch_store.WaitingKey, list[Item]], datetime | None]:
    """The counters what is wanted goes to (each event in the usage window of its instant), what waits
    for a customer or a grant, and the first end of a window current at `now` (None: none ends)."""
    slots: dict[batch_store.CounterKey, Slot] = {}
    waiting: dict[batch_store.WaitingKey, list[Item]] = {}
    timestamps = [e.timestamp for e in new]
    spans = {owner: _span(timestamps, at) for owner, at in positions.items()}
    schedules: dict[tuple[Owner, tuple[object, ...]], tuple[_Windows, dict[datetime, Window]]] = {}
    for (customer_ref, resource_ref, ref), added in wanted.items():
        customer, held = holders[(customer_ref, resource_ref)]
        grant = held.get(ref)
        resource = resource_key(resource_ref)
        if customer is None or grant is None:
            waiting[(customer_ref, resource, ref)] = added.items()
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
            whole = Slot(customer, resource_ref, grant, current, in_current_window=True, added=added)
            slots[(customer.pk, ref, resource, current.start)] = whole
            continue
        pk = customer.pk
        for p in added.at:
            instant = timestamps[p]
            window = window_at.get(instant)
            if window is None:
                window = window_at[instant] = finder.of(instant)
            key = (pk, ref, resource, window.start)
            slot = slots.get(key)
            if slot is None:
                part = Added([], added.column, added.indexes)
                slot = slots[key] = Slot(customer, resource_ref, grant, window, window.start == current.start, part)
            slot.added.at.append(p)
    ends = [finder.current.end for finder, _ in schedules.values() if finder.current.end is not None]
    return slots, waiting, min(ends, default=None)


def _span(timestamps: list[datetime], positions: list[int]) -> tuple[datetime, datetime]:
    """The earliest and latest instant of these events."""
    instants = [timestamps[p] for p in positions]
    return min(instants), max(instants)


def owner_order(owner: Owner) -> tuple[str, str]:
    return owner[0], owner[1] or ""


def resolve_holders(
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
            held = grants[(customer.pk, resource_ref or None)][0]
            result[(customer_ref, resource_ref)] = (Who(customer.pk, customer.ref_id), held)
    return result, valid_until
