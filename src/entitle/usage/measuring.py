"""What each event of a batch contributes to each meter, measured once per kind of event (its name and
the dimensions a meter reads) rather than once per event, before the batch's write transaction; and the
events whose number is out of range (the batch is refused, naming them)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from entitle.catalog.features.models import Feature
from entitle.db.types import json_text
from entitle.events.ingested import NewEvent
from entitle.usage.meters import (
    Measure,
    compile_meter,
    dimensions_read,
    event_names_matched,
    field_path,
    number,
    value_text,
)
from entitle.usage.rules import RANGE_TEXT, usage_number

Problem = dict[str, str]
# What one event adds to a tally: its position in the request (to name it), and its number (COUNT: 1)
# or UNIQUE's text.
Item = tuple[int, Decimal | str]
Amounts = list[Decimal | str | None]  # per feature, one per event of the batch (None: adds nothing)


def measure_events(metered: list[Feature], events: Sequence[NewEvent]) -> tuple[dict[str, Amounts], list[Problem]]:
    """Per feature, what each event contributes; and the events whose number is out of range."""
    numbers: dict[tuple[type, Any], Decimal | None] = {}  # a batch repeats its values: read each once
    amounts: dict[str, Amounts] = {}
    refused: dict[int, Problem] = {}
    # Meters reading the same dimensions (SUM, MAX, MIN and AVG of one field) share the batch's kinds.
    grouped: dict[tuple[str, ...], tuple[list[tuple[Any, ...]], dict[tuple[Any, ...], NewEvent]]] = {}
    # Meters that measure every kind alike (SUM, MAX and AVG of one field, filtered alike) share one
    # column: what a batch adds is then gathered once for all of them (see `_column`).
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
        values: list[Any] = list(names) if accepted is None else [n if n in accepted else None for n in names]
    else:
        key = field.removeprefix("dimensions.")
        if accepted is None:
            values = [e.dimensions.get(key) for e in events]
        else:  # one pass: the events of other names read nothing
            values = [e.dimensions.get(key) if e.event_name in accepted else None for e in events]
    if function == "UNIQUE":
        return [v if type(v) is str else (None if v is None else value_text(v)) for v in values], []
    if all(type(v) is int for v in values if v is not None):
        # The common batch: integers (never True or False, which are no numbers), each distinct one read once.
        read = {v: usage_number(Decimal(v)) for v in set(values) if v is not None}
        if all(kept is not None for kept in read.values()):  # none out of range
            read[None] = None
            return list(map(read.__getitem__, values)), []
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
