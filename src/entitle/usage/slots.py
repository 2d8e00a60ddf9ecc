"""Where a batch's events count: per owner (customer, resource) and metered feature, the counter of the
usage window each event's instant falls in (a `Slot`), or the tally waiting for a customer or a grant.
Planned before the write transaction when the owners' grants are known (`counting.prepare`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.orm import Session

from entitle.catalog.features.models import Feature
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.events.ingested import NewEvent
from entitle.grants.engine import Grant, Window, owners_grants_until, resource_key, usage_window
from entitle.usage import store
from entitle.usage.measuring import Amounts, Item
from entitle.usage.rules import Numbers
from entitle.usage.tallies import function_of, numbers_of

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


@dataclass(slots=True)
class Slot:
    """What a batch adds to one counter."""

    customer: Customer
    resource_ref: str | None
    grant: Grant
    window: Window
    in_current_window: bool
    items: list[Item] = field(default_factory=list)
    # What the items add, read from them once (`summarize`): the numbers to fold, or UNIQUE's values.
    numbers: Numbers | None = None
    distinct: list[str] | None = None
    summarized: bool = False


Holders = dict[Owner, tuple[Customer | None, dict[str, Grant]]]


def without(slots: dict[store.CounterKey, Slot], skipped: set[int]) -> dict[store.CounterKey, Slot]:
    """The slots without the items of these events (by index in the request); a slot left empty goes.
    Slots that shared their items still share them."""
    kept: dict[store.CounterKey, Slot] = {}
    filtered: dict[int, list[Item]] = {}
    for key, slot in slots.items():
        items = filtered.get(id(slot.items))
        if items is None:
            items = filtered[id(slot.items)] = [item for item in slot.items if item[0] not in skipped]
        if items:
            kept[key] = replace(slot, items=items, numbers=None, distinct=None, summarized=False)
    return kept


def summarize(slots: Iterable[Slot]) -> None:
    """Read what each slot's items add (`Slot.numbers`, `Slot.distinct`), once per list of items (meters
    measuring alike share an owner's items): done before the write transaction for a planned batch, so
    that counting in it folds each counter in a few operations."""
    numbers: dict[int, Numbers | None] = {}
    for slot in slots:
        if slot.summarized:
            continue
        if function_of(slot.grant.feature) == "UNIQUE":  # a slot repeats its values: each once
            slot.distinct = list({str(amount) for _, amount in slot.items})
        else:
            key = id(slot.items)
            if key not in numbers:
                numbers[key] = Numbers.of(numbers_of(slot.items))
            slot.numbers = numbers[key]
        slot.summarized = True


def wanted_by_owner(
    new: Sequence[NewEvent], metered: list[Feature], amounts: dict[str, Amounts]
) -> tuple[dict[Wanted, list[Item]], dict[Owner, list[int]]]:
    """What the events of each owner add to each feature (in owner order); and each owner's events (their
    positions in `new`)."""
    positions: dict[Owner, list[int]] = defaultdict(list)
    for position, e in enumerate(new):
        positions[(e.customer_ref, e.resource_ref)].append(position)
    indexes = [e.index for e in new]
    wanted: dict[Wanted, list[Item]] = {}
    for owner in sorted(positions, key=owner_order):
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


def plan_slots(
    new: Sequence[NewEvent],
    amounts: dict[str, Amounts],
    wanted: dict[Wanted, list[Item]],
    positions: dict[Owner, list[int]],
    holders: Holders,
    now: datetime,
) -> tuple[dict[store.CounterKey, Slot], dict[store.WaitingKey, list[Item]], datetime | None]:
    """The counters the wanted items go to (each event in the usage window of its instant), what waits
    for a customer or a grant, and the first end of a window current at `now` (None: none ends)."""
    slots: dict[store.CounterKey, Slot] = {}
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
            whole = Slot(customer, resource_ref, grant, current, in_current_window=True, items=items)
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
                slot = slots[key] = Slot(customer, resource_ref, grant, window, window.start == current.start)
            slot.items.append(item)
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
            result[(customer_ref, resource_ref)] = (customer, grants[(customer.pk, resource_ref or None)][0])
    return result, valid_until
