"""The one source of "now". Every time rule reads it, so tests can move time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from entitle.errors import InvalidArgument

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def utcnow() -> datetime:
    return _now()


def set_clock(now: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); None restores the wall clock."""
    global _now
    _now = now if now is not None else (lambda: datetime.now(UTC))


def as_utc(value: datetime) -> datetime:
    """Naive datetimes on the wire mean UTC (the official client sends them that way).

    An aware value whose UTC instant leaves years 1-9999 (0001-01-01T00:00+01:00) is the caller's error.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidArgument(f"{value.isoformat()} is outside the supported range of dates") from exc
