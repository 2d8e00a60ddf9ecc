"""Usage reacts to the domains below it (installed by `entitle.wiring`):

- `EventsIngested`: the new events are counted in the transaction that stored them.
- `EntitlementsChanged`: usage that waited for the customer (events that arrived before the customer,
  its subscription or its entitlement to the feature) moves into its current usage window. At once, so
  a provisioning answer already shows it; and again just before the transaction commits, because the
  event is published once per transaction, possibly before the change is complete (an upgrade announces
  it when the old subscription ends, before the new one exists). Unless the first found nothing waiting
  and the transaction wrote no waiting usage since (`store.nothing_waits`): then nothing can be there.
"""

from __future__ import annotations

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, SessionTransaction

from entitle.customers.events import EntitlementsChanged
from entitle.domain_events import subscribe
from entitle.events import ingested
from entitle.events.ingested import EventsIngested
from entitle.usage import store
from entitle.usage.counting import apply_events, prepare
from entitle.usage.waiting import fold_waiting

_TO_FOLD = "entitle.usage.fold_before_commit"


def count_ingested(s: Session, event: EventsIngested) -> None:
    apply_events(s, event.env_id, list(event.events), event.prepared)


def fold_for_entitlements(s: Session, event: EntitlementsChanged) -> None:
    fold_waiting(s, event.env_id, event.customer_ref, event.resource_ref)
    s.info.setdefault(_TO_FOLD, set()).add((event.env_id, event.customer_ref, event.resource_ref))


def _fold_before_commit(session: Session) -> None:
    owners: set[tuple[int, str, str | None]] = session.info.pop(_TO_FOLD, set())
    for env_id, customer_ref, resource_ref in sorted(owners, key=lambda o: (o[0], o[1], o[2] or "")):
        fold_waiting(session, env_id, customer_ref, resource_ref)


def _forget(session: Session) -> None:
    session.info.pop(_TO_FOLD, None)


def _forget_settled(session: Session, transaction: SessionTransaction) -> None:
    # A savepoint rolled back may bring back what a fold inside it moved; a new transaction holds no lock.
    # A flush's own inner transaction ends inside the one that found nothing waiting: it changes neither
    # (forgetting then made the fold before the commit ask again for every customer after any flush).
    if transaction.nested or transaction.parent is None:
        store.waiting_written(session)


def install() -> None:
    ingested.prepare.install(prepare)
    subscribe(EventsIngested, count_ingested)
    subscribe(EntitlementsChanged, fold_for_entitlements)
    if not sa_event.contains(Session, "before_commit", _fold_before_commit):
        sa_event.listen(Session, "before_commit", _fold_before_commit)
        sa_event.listen(Session, "after_rollback", _forget)
        sa_event.listen(Session, "after_transaction_end", _forget_settled)
