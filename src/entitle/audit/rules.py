"""What the audit log records of a write, and how a value is written down (pure)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# Tables not recorded row by row: append-only logs of their own (raw events, usage reports), derived
# state rebuilt from other rows (usage tallies), or the plumbing of side effects (jobs, deliveries,
# push rows, provider event marks). Recording them would double the write load of ingestion and say
# nothing the table does not already say.
NOT_AUDITED = frozenset(
    {
        "audit_log",
        "events",
        "usage_records",
        "usage_counters",
        "usage_waiting",
        "usage_distinct_values",
        "jobs",
        "push_events",
        "webhook_deliveries",
        "webhook_event_marks",
        "billing_events",
        "billing_usage_reports",
        "console_sessions",
        "console_login_failures",
    }
)
# Bookkeeping columns whose change alone is no event worth a row.
IGNORED_COLUMNS = frozenset({"pk", "created_at", "updated_at", "last_used_at"})
_SECRET_MARKERS = ("hash", "digest", "encrypted", "secret", "password", "token")
REDACTED = "[redacted]"
_ASK = object()


@dataclass(frozen=True)
class AuditFilter:
    entity_type: str | None = None
    entity_id: str | None = None
    actor: str | None = None


def is_secret(column: str) -> bool:
    return any(marker in column for marker in _SECRET_MARKERS)


def plain(value: Any) -> Any:
    """A JSON-safe rendering of a column value: amounts stay exact (as strings), times as ISO 8601."""
    if isinstance(value, str):
        # PostgreSQL's JSONB holds no NUL character; the log must never be why a write fails.
        return value.replace("\x00", "\ufffd")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Decimal):
        # Positional, as people write amounts: an amount read back is normalized, and str() would
        # write $10 as "1E+1" (a finite one only: "NaN" and "Infinity" stay as str() writes them).
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {plain(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def recorded(column: str, value: Any) -> Any:
    return REDACTED if is_secret(column) and value is not None else plain(value)


def created_changes(values: dict[str, Any]) -> dict[str, Any]:
    """A new row: its non-empty columns."""
    return {col: recorded(col, v) for col, v in sorted(values.items()) if col not in IGNORED_COLUMNS and v is not None}


# A table's recorded columns in the order `created_changes` writes them, each with whether it is secret.
CreatedColumns = tuple[tuple[str, bool], ...]


def created_columns(columns: Iterable[str]) -> CreatedColumns:
    """What `created_changes` decides from column names alone, decided once per table."""
    return tuple((col, is_secret(col)) for col in sorted(columns) if col not in IGNORED_COLUMNS)


def created_changes_of(
    columns: CreatedColumns, value_of: Callable[[str], Any], known: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`created_changes` of a new row whose table's columns `created_columns` prepared: every audited
    insert of a request (a customer, its subscription) runs it, so nothing is decided twice. `known`:
    the values at hand (a column found there is not asked of `value_of`, one call per column less)."""
    changes: dict[str, Any] = {}
    found = known if known is not None else {}
    for col, secret in columns:
        value = found.get(col, _ASK)
        if value is _ASK:
            value = value_of(col)
        if value is None:
            continue
        if secret:
            changes[col] = REDACTED
        elif type(value) is str and "\x00" not in value:
            changes[col] = value  # what `plain` answers for it, without a call per column of every new row
        elif type(value) is int or type(value) is bool:
            changes[col] = value
        else:
            changes[col] = plain(value)
    return changes


def updated_changes(before_after: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """A changed row: `{column: [before, after]}` for each column whose value really changed."""
    out: dict[str, Any] = {}
    for col, (before, after) in sorted(before_after.items()):
        if col in IGNORED_COLUMNS or before == after or plain(before) == plain(after):
            continue
        out[col] = [recorded(col, before), recorded(col, after)]
    return out
