"""A counter's or waiting tally's arithmetic as ingestion applies it: read from and written to a locked
row, the events refused for leaving the range named, the credits an additive meter draws, and the
tally of a counter written before tallies were kept rebuilt once."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features.models import Feature
from entitle.clock import utcnow
from entitle.customers.models import Customer
from entitle.grants.engine import Window
from entitle.usage import batch_store, ports, store
from entitle.usage.measuring import Item, Problem
from entitle.usage.meters import measure
from entitle.usage.models import UsageCounter, WaitingUsage
from entitle.usage.owners import CustomerKey
from entitle.usage.rules import Tally, fold, usage_number

ADDITIVE = frozenset({"SUM", "COUNT", "UNIQUE"})  # aggregations where each event adds what it costs


def function_of(feature: Feature) -> str:
    assert feature.meter is not None
    return str(feature.meter["aggregation"]["function"])


def numbers_of(items: list[Item]) -> list[Decimal]:
    return [amount for _, amount in items if isinstance(amount, Decimal)]


def refused_items(items: list[Item], refused: list[tuple[int, str]]) -> list[Problem]:
    """An event that would leave the range is named and skipped, so the batch resent without the named
    events counts exactly what this one counted without them."""
    return [{"field": f"events.{items[position][0]}", "problem": why} for position, why in refused]


def tally_of(row: UsageCounter | WaitingUsage | batch_store.TallyRow | store.WaitingRow) -> Tally:
    return Tally(value=row.value, samples=row.samples or 0, total=row.total)


def write_tally(row: UsageCounter | WaitingUsage, tally: Tally, now: datetime) -> None:
    row.value, row.samples, row.total = tally.value, tally.samples, tally.total
    row.updated_at = now


def charge_credits(
    s: Session,
    env_id: int,
    customer: Customer,
    feature: Feature,
    resource_ref: str | None,
    counter: batch_store.TallyRow | UsageCounter,
    before: Decimal,
    origin: str = "meter",
) -> None:
    """A credit-priced feature's events draw credits for what they added. Only additive meters (SUM, COUNT,
    UNIQUE) say what an event costs; MAX/MIN/AVG counters draw nothing (the estimate warns of it)."""
    delta = counter.value - before
    if delta > 0 and function_of(feature) in ADDITIVE:
        event_id = f"{origin}:{counter.pk}:{counter.value}"  # the counter only grows here: unique per draw
        ports.charge_credits.impl(s, env_id, customer, feature.ref_id, resource_ref, delta, utcnow(), event_id)


def written(row: batch_store.TallyRow, tally: Tally) -> batch_store.TallyRow:
    row.value, row.samples, row.total = tally.value, tally.samples, tally.total
    return row


def rebuild_if_legacy(
    s: Session,
    env_id: int,
    counter: UsageCounter | batch_store.TallyRow,
    feature: Feature,
    customer: CustomerKey,
    resource_ref: str | None,
    window: Window,
) -> None:
    """A MAX, MIN, AVG or UNIQUE counter written before tallies were kept (no `samples`): rebuild its
    tally once from the window's stored events, as it used to be computed."""
    function = function_of(feature)
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
