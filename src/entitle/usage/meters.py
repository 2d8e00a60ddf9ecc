"""Meters: which raw events count toward a feature, and how much. Pure functions.

A feature's meter has `filters` and an `aggregation`. An event matches when it satisfies every
condition of at least one filter (no filters: every event matches). A condition's `field` is
`eventName` or a dimension name (`dimensions.x` and `x` both name dimension `x`). Comparisons
(GREATER_THAN, ...) are numeric and fail on values that are not numbers; EQUALS, CONTAINS and the
other string operations compare the value's text (`true`/`false` for booleans, as JSON writes them).

Aggregations: COUNT counts matching events; SUM, MAX and MIN fold the numeric value of the
aggregation `field`, skipping events where it is missing or not a number; AVG is SUM / COUNT of
those; UNIQUE counts distinct values of the field. Ingestion keeps these incrementally: `measure`
says what one event contributes, `entitle.usage.rules` folds contributions into a tally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Dimensions = Mapping[str, Any]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _field(name: str, event_name: str, dimensions: Dimensions) -> Any:
    if name == "eventName":
        return event_name
    if name.startswith("dimensions."):
        name = name[len("dimensions.") :]
    return dimensions.get(name)


def condition_holds(condition: Mapping[str, Any], event_name: str, dimensions: Dimensions) -> bool:
    op = condition["operation"]
    value = _field(condition["field"], event_name, dimensions)
    if op == "IS_NULL":
        return value is None
    if op == "IS_NOT_NULL":
        return value is not None
    if value is None:
        return False
    if op == "IN":
        return _text(value) in set(condition.get("values") or [])
    target: str | None = condition.get("value")
    if target is None:
        return False
    if op in ("GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN", "LESS_THAN_OR_EQUAL"):
        left, right = number(value), number(target)
        if left is None or right is None:
            return False
        return {
            "GREATER_THAN": left > right,
            "GREATER_THAN_OR_EQUAL": left >= right,
            "LESS_THAN": left < right,
            "LESS_THAN_OR_EQUAL": left <= right,
        }[op]
    text = _text(value)
    if op == "EQUALS":
        return text == target
    if op == "NOT_EQUALS":
        return text != target
    if op == "CONTAINS":
        return target in text
    if op == "STARTS_WITH":
        return text.startswith(target)
    if op == "ENDS_WITH":
        return text.endswith(target)
    return False


def matches(meter: Mapping[str, Any], event_name: str, dimensions: Dimensions) -> bool:
    filters = meter.get("filters") or []
    if not filters:
        return True
    return any(all(condition_holds(c, event_name, dimensions) for c in f.get("conditions") or []) for f in filters)


def measure(meter: Mapping[str, Any], event_name: str, dimensions: Dimensions) -> Decimal | str | None:
    """What one event contributes to the meter: nothing (None) when it does not match or lacks a usable
    value; COUNT: 1; UNIQUE: the value's text; SUM, MAX, MIN, AVG: the number (not yet range-checked)."""
    if not matches(meter, event_name, dimensions):
        return None
    aggregation = meter["aggregation"]
    function, field = aggregation["function"], aggregation.get("field")
    if function == "COUNT":
        return Decimal(1)
    if not field:
        return None
    value = _field(field, event_name, dimensions)
    if function == "UNIQUE":
        return None if value is None else _text(value)
    return number(value)


Measure = Callable[[str, Dimensions], Decimal | str | None]


def compile_meter(meter: Mapping[str, Any], numbers: dict[tuple[type, Any], Decimal | None] | None = None) -> Measure:
    """`measure` for one meter, with its definition read once: ingestion measures every event of a batch
    against every meter, so the per-event work is only what the event itself decides. `numbers`
    remembers the numbers read from values (a batch repeats its values), keyed by type and value."""
    read = _remembering(numbers) if numbers is not None else number
    filters = [list(f.get("conditions") or []) for f in meter.get("filters") or []]
    checks = [[_compile_condition(c) for c in conditions] for conditions in filters]
    aggregation = meter["aggregation"]
    function, field = aggregation["function"], aggregation.get("field")

    matched = _matcher(checks)
    if function == "COUNT":
        one = Decimal(1)
        return lambda event_name, dimensions: one if matched(event_name, dimensions) else None
    if not field:
        return lambda event_name, dimensions: None
    if function == "UNIQUE":

        def distinct(event_name: str, dimensions: Dimensions) -> str | None:
            if not matched(event_name, dimensions):
                return None
            value = _field(field, event_name, dimensions)
            return None if value is None else _text(value)

        return distinct

    def numeric(event_name: str, dimensions: Dimensions) -> Decimal | None:
        return read(_field(field, event_name, dimensions)) if matched(event_name, dimensions) else None

    return numeric


Check = Callable[[str, Dimensions], bool]


def _matcher(checks: list[list[Check]]) -> Check:
    """Whether an event passes the filters. The common meter has one filter of one condition: that
    condition is the whole answer, without a generator per event (a batch measures a thousand kinds)."""
    if not checks:
        return lambda _event_name, _dimensions: True
    if len(checks) == 1 and len(checks[0]) == 1:
        return checks[0][0]
    if len(checks) == 1:
        only = checks[0]
        return lambda event_name, dimensions: all(check(event_name, dimensions) for check in only)
    return lambda event_name, dimensions: any(all(check(event_name, dimensions) for check in f) for f in checks)


def _remembering(numbers: dict[tuple[type, Any], Decimal | None]) -> Callable[[Any], Decimal | None]:
    def read(value: Any) -> Decimal | None:
        key = (type(value), value)  # True == 1 == 1.0, yet only the numbers are numbers
        try:
            return numbers[key]
        except KeyError:
            found = numbers[key] = number(value)
            return found
        except TypeError:  # not hashable: not a dimension value, read it anyway
            return number(value)

    return read


def _compile_condition(condition: Mapping[str, Any]) -> Callable[[str, Dimensions], bool]:
    # The most common filter, on the event name, needs no dimension lookup nor text conversion.
    if condition.get("field") == "eventName" and condition.get("operation") == "EQUALS":
        target = condition.get("value")
        return lambda event_name, _dimensions: target is not None and event_name == target
    return lambda event_name, dimensions: condition_holds(condition, event_name, dimensions)


def dimensions_read(meter: Mapping[str, Any]) -> tuple[str, ...]:
    """The dimensions a meter reads (its conditions' fields and its aggregation's field). With the event's
    name they decide everything `measure` answers for an event, so events alike in them measure alike."""
    names: dict[str, None] = {}
    fields = [c.get("field") for f in meter.get("filters") or [] for c in f.get("conditions") or []]
    fields.append(meter["aggregation"].get("field"))
    for name in fields:
        if isinstance(name, str) and name != "eventName":
            names[name[len("dimensions.") :] if name.startswith("dimensions.") else name] = None
    return tuple(names)


def value_text(value: Any) -> str:
    """A value as UNIQUE counts it and the string conditions compare it (`true`/`false`, 3.0 as 3)."""
    return _text(value)


def event_names_matched(meter: Mapping[str, Any]) -> tuple[bool, frozenset[str] | None]:
    """Whether the meter's filters test nothing but the event's name for equality (the common meter),
    and then which names they let through (None: every name). Such a meter is measured a column at a
    time (`entitle.usage.counting`); any other condition answers (False, None)."""
    filters = meter.get("filters") or []
    accepted: set[str] = set()
    for conditions in (f.get("conditions") or [] for f in filters):
        if not conditions:  # a filter without conditions lets every event through
            return all(_name_equality(c) for f in filters for c in f.get("conditions") or []), None
        targets = set()
        for condition in conditions:
            if not _name_equality(condition):
                return False, None
            target = condition.get("value")
            targets.add(target if isinstance(target, str) else None)  # anything else matches no name
        if len(targets) == 1 and (only := next(iter(targets))) is not None:
            accepted.add(only)
    return True, (frozenset(accepted) if filters else None)


def _name_equality(condition: Mapping[str, Any]) -> bool:
    return condition.get("field") == "eventName" and condition.get("operation") == "EQUALS"


def field_path(meter: Mapping[str, Any]) -> str:
    """Where, in an event, the meter reads its number (for errors naming the field)."""
    field = str(meter["aggregation"].get("field") or "")
    if field == "eventName":
        return field
    return field if field.startswith("dimensions.") else f"dimensions.{field}"


def aggregate(meter: Mapping[str, Any], events: Iterable[tuple[str, Dimensions]]) -> Decimal:
    """The meter's value over the given (event name, dimensions) pairs."""
    aggregation = meter["aggregation"]
    function, field = aggregation["function"], aggregation.get("field")
    matching = [dims for name, dims in events if matches(meter, name, dims)]
    if function == "COUNT":
        return Decimal(len(matching))
    if function == "UNIQUE":
        return Decimal(len({_text(d[field]) for d in matching if field and d.get(field) is not None}))
    values = [v for v in (number(d.get(field)) if field else None for d in matching) if v is not None]
    if not values:
        return Decimal(0)
    if function == "SUM":
        return sum(values, Decimal(0))
    if function == "MAX":
        return max(values)
    if function == "MIN":
        return min(values)
    if function == "AVG":
        return sum(values, Decimal(0)) / len(values)
    raise ValueError(f"unknown aggregation {function!r}")
