"""Pure rules of the stream: when a Last-Event-ID can be resumed, and how an event is framed."""

from __future__ import annotations

import json
from typing import Any


def can_resume(last_event_id: int | None, oldest: int | None, newest: int | None) -> bool:
    """Whether replaying the retained log after `last_event_id` gives the client everything it missed.

    The log keeps a suffix of ids (pruning removes the oldest, never the newest row), so the client
    missed nothing that was pruned iff its id is at least the id just below the oldest retained one.
    An id above the newest one, or any id when the log is empty, was never handed out here: unknown.
    """
    if last_event_id is None or last_event_id < 0 or oldest is None or newest is None:
        return False
    return oldest - 1 <= last_event_id <= newest


def parse_event_id(raw: str | None) -> int | None:
    """An integer id, or None for anything else (which the stream treats as unknown)."""
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


def frame(event_id: int | None, event: str, data: dict[str, Any]) -> str:
    """One SSE message; the JSON is on one line (json.dumps never emits a raw newline)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def resume_point(event_id: int) -> str:
    """A message of only an id: no event is dispatched, but the client's last event id becomes `event_id`
    (browsers' EventSource and the SDK alike), so it reconnects with a replay point even when no event
    came before the drop."""
    return f"id: {event_id}\n\n"


RETRY = "retry: 1000\n\n"
KEEPALIVE = ": keepalive\n\n"
