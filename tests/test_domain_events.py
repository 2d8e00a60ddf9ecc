"""Domain events: subscribers act inside the publishing transaction (so their side effects commit or roll
back with it), and after-commit listeners see committed changes only, in increasing versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entitle import domain_events
from entitle.db import Database
from entitle.domain_events import DomainEvent, publish, subscribe
from entitle.environments.service import ensure_environment
from entitle.jobs import service as jobs
from entitle.jobs.models import Job


@dataclass(frozen=True, kw_only=True)
class ThingHappened(DomainEvent):
    name: str


@dataclass(frozen=True, kw_only=True)
class SpecialThingHappened(ThingHappened):
    pass


heard: list[str] = []


def _enqueue_a_job(s: Session, event: ThingHappened) -> None:
    heard.append(f"job:{event.name}")
    jobs.enqueue(s, event.env_id, "test.thing", {"name": event.name})


def _note_special(s: Session, event: SpecialThingHappened) -> None:
    heard.append(f"special:{event.name}")


subscribe(ThingHappened, _enqueue_a_job)
subscribe(SpecialThingHappened, _note_special)


def _jobs(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Job).where(Job.kind == "test.thing")) or 0)


def test_side_effects_commit_and_roll_back_with_the_change(db: Database) -> None:
    env = ensure_environment(db, "development").pk
    committed: list[tuple[int, list[str]]] = []

    def listener(version: int, events: Sequence[DomainEvent]) -> None:
        committed.append((version, [e.name for e in events if isinstance(e, ThingHappened)]))

    domain_events.on_commit(listener)
    try:
        heard.clear()
        with pytest.raises(RuntimeError), db.transaction() as s:
            publish(s, ThingHappened(env_id=env, name="lost"))
            assert domain_events.published(s)[-1].name == "lost"  # type: ignore[attr-defined]
            raise RuntimeError("the change fails after the event")
        assert heard == ["job:lost"]  # the subscriber ran, in the transaction...
        assert _jobs(db) == 0  # ...and its job went with the rollback
        assert committed == []  # nothing committed, nothing announced

        with db.transaction() as s:
            publish(s, ThingHappened(env_id=env, name="a"))
            publish(s, SpecialThingHappened(env_id=env, name="b"))
        with db.transaction() as s:
            publish(s, ThingHappened(env_id=env, name="c"))
        with db.transaction():
            pass  # a transaction that announced nothing calls no listener
    finally:
        domain_events.remove_commit_listener(listener)

    # A subclass is heard by its own subscribers, then by its base's.
    assert heard == ["job:lost", "job:a", "special:b", "job:b", "job:c"]
    assert _jobs(db) == 3
    assert [names for _, names in committed] == [["a", "b"], ["c"]]
    first, second = (version for version, _ in committed)
    assert second > first
    assert domain_events.current_version() >= second


def test_a_port_without_an_implementation_says_how_to_install_one() -> None:
    port: domain_events.Port[int] = domain_events.Port("test.port")
    with pytest.raises(RuntimeError, match=r"entitle\.wiring\.install"):
        _ = port.impl
    port.install(7)
    assert port.impl == 7
    port.install(None)
    with pytest.raises(RuntimeError):
        _ = port.impl
