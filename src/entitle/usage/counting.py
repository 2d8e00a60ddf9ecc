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
  feature: bounded work, however many events waited.

A number outside the documented range, or a contribution that would take a tally out of its range,
refuses the whole batch (400), naming each offending event.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.clock import utcnow
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.events.ingested import NewEvent
from entitle.events.rules import refusal
from entitle.grants.engine import Grant, Window, customer_grants, resource_key, usage_window
from entitle.usage import store
from entitle.usage.meters import field_path, measure
from entitle.usage.models import UsageCounter, WaitingUsage
from entitle.usage.owners import CounterMoved, GrantCache, announce
from entitle.usage.rules import RANGE_TEXT, OutOfRange, Tally, fold, merge, step, usage_number

log = logging.getLogger("entitle.usage")

Problem = dict[str, str]


@dataclass(frozen=True)
class Contribution:
    event: NewEvent
    amount: Decimal | str  # a number (COUNT: 1), or UNIQUE's text


def _function(feature: Feature) -> str:
    assert feature.meter is not None
    return str(feature.meter["aggregation"]["function"])


def _contributions(
    metered: list[Feature], events: Sequence[NewEvent]
) -> tuple[dict[str, list[Contribution]], list[Problem]]:
    """Per feature, what each event contributes; and the events whose number is out of range."""
    found: dict[str, list[Contribution]] = defaultdict(list)
    problems: list[Problem] = []
    refused: set[int] = set()
    for event in events:
        per_event: list[tuple[str, Decimal | str]] = []
        for feature in metered:
            assert feature.meter is not None
            amount = measure(feature.meter, event.event_name, event.dimensions)
            if isinstance(amount, Decimal):
                kept = usage_number(amount)
                if kept is None:
                    if event.index not in refused:
                        refused.add(event.index)
                        problems.append(
                            {
                                "field": f"events.{event.index}.{field_path(feature.meter)}",
                                "problem": f"{amount} is outside the range a meter counts ({RANGE_TEXT})",
                            }
                        )
                    continue
                amount = kept
            if amount is not None:
                per_event.append((feature.ref_id, amount))
        for ref, amount in per_event:
            found[ref].append(Contribution(event, amount))
    return found, problems


def apply_events(s: Session, env_id: int, new: list[NewEvent]) -> None:
    """Count newly stored events (duplicates never reach here: the insert skipped them)."""
    metered = features.metered_with_meter(s, env_id)
    if not metered:
        return
    by_feature = {f.ref_id: f for f in metered}
    contributions, problems = _contributions(metered, new)
    if problems:
        raise refusal(problems)
    now = utcnow()
    grants = GrantCache(s, env_id, now)
    by_owner: dict[tuple[str, str | None], dict[str, list[Contribution]]] = defaultdict(lambda: defaultdict(list))
    for ref, items in contributions.items():
        for item in items:
            by_owner[(item.event.customer_ref, item.event.resource_ref)][ref].append(item)
    for customer_ref, resource_ref in sorted(by_owner, key=lambda o: (o[0], o[1] or "")):
        wanted = by_owner[(customer_ref, resource_ref)]
        customer, held = _holder(s, env_id, grants, customer_ref, resource_ref)
        if any(ref not in held for ref in wanted) and store.lock_owner(s, env_id, customer_ref):
            # Another transaction may have just granted the feature (and folded what waited): look again.
            if customer is not None:
                grants.forget(customer, resource_ref)
            customer, held = _holder(s, env_id, grants, customer_ref, resource_ref)
        for ref in sorted(wanted):
            feature, items = by_feature[ref], wanted[ref]
            grant = held.get(ref)
            if customer is None or grant is None:
                problems += _count_waiting(s, env_id, customer_ref, resource_ref, feature, items)
            else:
                problems += _count_in_windows(s, env_id, customer, resource_ref, grant, items, now)
    if problems:
        raise refusal(sorted(problems, key=lambda p: int(p["field"].split(".")[1])))


def _holder(
    s: Session, env_id: int, grants: GrantCache, customer_ref: str, resource_ref: str | None
) -> tuple[Customer | None, dict[str, Grant]]:
    customer = customers.find(s, env_id, customer_ref)
    if customer is None or customer.archived_at is not None:
        return None, {}
    return customer, grants.of(customer, resource_ref)


def _steps(function: str, tally: Tally, items: list[Contribution]) -> tuple[Tally, list[Problem]]:
    """Fold numbers one event at a time; an event that would leave the range is named and skipped, so
    the batch resent without the named events counts exactly what this one counted without them."""
    problems: list[Problem] = []
    for item in items:
        assert isinstance(item.amount, Decimal)
        try:
            tally = step(function, tally, item.amount)
        except OutOfRange as exc:
            problems.append({"field": f"events.{item.event.index}", "problem": str(exc)})
    return tally, problems


def _tally_of(row: UsageCounter | WaitingUsage) -> Tally:
    return Tally(value=row.value, samples=row.samples or 0, total=row.total)


def _write(row: UsageCounter | WaitingUsage, tally: Tally, now: datetime) -> None:
    row.value, row.samples, row.total = tally.value, tally.samples, tally.total
    row.updated_at = now


def _count_waiting(
    s: Session, env_id: int, customer_ref: str, resource_ref: str | None, feature: Feature, items: list[Contribution]
) -> list[Problem]:
    function = _function(feature)
    row = store.locked_waiting(s, env_id, customer_ref, resource_key(resource_ref), feature.ref_id)
    if function == "UNIQUE":
        added = store.add_distinct(s, [str(i.amount) for i in items], waiting_pk=row.pk)
        _write(row, Tally(value=row.value + added), utcnow())
        return []
    tally, problems = _steps(function, _tally_of(row), items)
    _write(row, tally, utcnow())
    return problems


def _count_in_windows(
    s: Session,
    env_id: int,
    customer: Customer,
    resource_ref: str | None,
    grant: Grant,
    items: list[Contribution],
    now: datetime,
) -> list[Problem]:
    feature = grant.feature
    function = _function(feature)
    current = usage_window(feature, grant.allowance, grant.usage_anchor, now)
    windows: dict[datetime, tuple[Window, list[Contribution]]] = {}
    for item in items:
        window = usage_window(feature, grant.allowance, grant.usage_anchor, item.event.timestamp)
        windows.setdefault(window.start, (window, []))[1].append(item)
    problems: list[Problem] = []
    for window, window_items in windows.values():
        counter = store.locked_counter(s, env_id, customer.pk, feature.ref_id, resource_key(resource_ref), window.start)
        _rebuild_if_legacy(s, env_id, counter, feature, customer, resource_ref, window)
        if function == "UNIQUE":
            added = store.add_distinct(s, [str(i.amount) for i in window_items], counter_pk=counter.pk)
            tally = Tally(value=counter.value + added)
        else:
            tally, refused = _steps(function, _tally_of(counter), window_items)
            problems += refused
        _write(counter, tally, now)
        moved = CounterMoved(
            customer,
            feature.ref_id,
            resource_ref,
            window,
            grant.allowance,
            counter.value,
            window.start == current.start,
        )
        announce(s, env_id, moved)
    return problems


def _rebuild_if_legacy(
    s: Session,
    env_id: int,
    counter: UsageCounter,
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
    store.lock_owner(s, env_id, customer_ref)
    waiting = store.waiting_of(s, env_id, customer_ref, resource_key(resource_ref))
    if not waiting:
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
