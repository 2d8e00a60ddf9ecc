"""The date window of usage: pure rules shared by raw events and usage reports.

A usage instant (an event's `timestamp`, a report's `createdAt`) is counted in the usage window
that contains it. Windows start no earlier than `EARLIEST` (the window that never resets starts
there), and an instant may run ahead of the server's clock by at most `CLOCK_SKEW` (a client's
clock is rarely exact; further ahead is a client bug, and would count usage in a window that has
not begun). Anything outside is refused, naming the field.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from entitle.errors import InvalidArgument
from entitle.grants.engine import ALL_TIME

EARLIEST = ALL_TIME
CLOCK_SKEW = timedelta(minutes=5)


def instant_problem(at: datetime, now: datetime) -> str | None:
    """Why `at` (UTC) cannot be counted, or None when it can."""
    if at < EARLIEST:
        return f"{at.isoformat()} is before {EARLIEST.isoformat()}, the start of the usage window that never resets"
    if at > now + CLOCK_SKEW:
        ahead = int(CLOCK_SKEW.total_seconds() // 60)
        return f"{at.isoformat()} is more than {ahead} minutes ahead of the server's clock ({now.isoformat()})"
    return None


def refusal(problems: list[dict[str, str]]) -> InvalidArgument:
    """One 400 naming every offending item of a batch, in the shape of a request validation error
    (`details: [{"field": "events.3.timestamp", "problem": ...}]`), so a client can drop exactly those."""
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InvalidArgument(f"{first['field']}: {first['problem']}{more}", details=problems)
