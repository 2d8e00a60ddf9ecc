"""Usage counts ingested events in the transaction that stored them (installed by `entitle.wiring`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from entitle.domain_events import subscribe
from entitle.events.ingested import EventsIngested
from entitle.usage.service import apply_events


def count_ingested(s: Session, event: EventsIngested) -> None:
    apply_events(s, event.env_id, list(event.events))


def install() -> None:
    subscribe(EventsIngested, count_ingested)
