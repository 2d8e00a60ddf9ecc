"""What a batch of usage reports rests on, read before its write transaction (on SQLite that transaction
holds the database's write lock, which another environment's ingestion waits for): its features, its
live customers and their grants of those features, and which of its idempotency keys were already
used. The transaction uses it only while `ports.grant_changes` says nothing it rests on changed since
`mark` (read before it, in the same read), as ingestion does with the grants it resolves ahead
(`usage.counting.prepare`).

What was resolved is kept for the environment's next reports (per process, at most `KEPT_OWNERS`
owners): the next one reads from the change log which customers changed since (a feature change drops
everything) and resolves again only when one of its owners or features is not kept, or a subscription
or promotion of a kept owner ended meanwhile. What is kept holds plain values (`usage.kept`): a report
gets its customers' pks and its owners' grants back from what was kept, with no read (archiving a customer
announces a change of its grants, which drops it from what is kept; `usage.service` reads a customer's
row in the transaction only to draw credits).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.customers import store as customers
from entitle.db import Database
from entitle.grants.engine import Grant, owners_grants_until
from entitle.usage import ports, store
from entitle.usage.kept import KEPT_OWNERS, KeptGrants, KeptPerEnvironment, grants_of, kept_grants
from entitle.usage.owners import Who
from entitle.usage.schemas import UsageIn

Owner = tuple[int, str | None]  # customer pk, resource as reported


@dataclass(frozen=True)
class Ahead:
    """`known`: features by id; `customers`: the batch's live customers (pk and id) by id; `grants`: each
    of its owners' grants of the known features; `taken`: the batch's idempotency keys already used."""

    mark: int
    known: dict[str, Feature]
    customers: dict[str, Who]
    grants: dict[Owner, dict[str, Grant]]
    taken: frozenset[str]


@dataclass(frozen=True)
class _Kept:
    """What earlier reports resolved at `at`, as of `mark`; it holds until `valid_until` (an end of a
    subscription or promotion of one of its owners; None: none comes). `customers`: each live customer's
    pk by id."""

    mark: int
    at: datetime
    valid_until: datetime | None
    known: dict[str, Feature]
    customers: dict[str, int]
    grants: dict[Owner, KeptGrants]


# What a batch rests on beyond what is kept: its live customers by id, and its owners' grants.
_Batch = tuple[dict[str, Who], dict[Owner, dict[str, Grant]]]


_kept: KeptPerEnvironment[_Kept] = KeptPerEnvironment()


def resolve_ahead(db: Database, env_id: int, items: list[UsageIn], now: datetime) -> Ahead | None:
    """The batch's `Ahead`; None when an item names an unknown feature or customer, or a customer
    without a live subscription, whose refusal or grants the transaction decides (archiving a customer
    ends its subscriptions, which the change log records; nothing records archiving one without)."""
    keys = sorted({i.idempotency_key for i in items if i.idempotency_key is not None})
    with db.read() as s:
        mark = ports.grant_changes.impl.mark(s, env_id)
        kept = _still_kept(s, db, env_id, mark, now)
        batch = _batch(kept, items) if kept is not None and _holds(kept, items) else None
        if kept is None or batch is None:
            resolved = _resolve(s, env_id, items, now, mark, kept)
            if resolved is None:
                return None
            kept, batch = resolved
            _kept.keep(db, env_id, kept)
        taken = store.keys_taken(s, env_id, keys)
    return Ahead(mark, kept.known, batch[0], batch[1], taken)


def _holds(kept: _Kept, items: list[UsageIn]) -> bool:
    for item in items:
        pk = kept.customers.get(item.customer_id)
        if pk is None or item.feature_id not in kept.known or (pk, item.resource_id) not in kept.grants:
            return False
    return True


def _batch(kept: _Kept, items: list[UsageIn]) -> _Batch:
    """The batch's customers and its owners' grants, as kept (`_holds`). A customer archived since it was
    kept is not among them: archiving announces a change of its grants, which `_still_kept` dropped."""
    found = {i.customer_id: Who(kept.customers[i.customer_id], i.customer_id) for i in items}
    owners = {(found[i.customer_id].pk, i.resource_id) for i in items}
    return found, {owner: grants_of(kept.grants[owner], kept.known) for owner in owners}


def _still_kept(s: Session, db: Database, env_id: int, mark: int, now: datetime) -> _Kept | None:
    """What earlier reports resolved, less the customers whose grants changed since (None: nothing usable)."""
    found = _kept.since(s, db, env_id, mark, now)
    if found is None:
        return None
    kept, changed = found
    pks = {pk for ref, pk in kept.customers.items() if ref in changed}
    return replace(
        kept,
        mark=mark,
        at=now,
        customers={ref: c for ref, c in kept.customers.items() if ref not in changed},
        grants={owner: held for owner, held in kept.grants.items() if owner[0] not in pks},
    )


def _resolve(
    s: Session, env_id: int, items: list[UsageIn], now: datetime, mark: int, kept: _Kept | None
) -> tuple[_Kept, _Batch] | None:
    wanted = {i.customer_id for i in items}
    known = features.get_many(s, env_id, sorted({i.feature_id for i in items} | (kept.known.keys() if kept else set())))
    if any(i.feature_id not in known for i in items):
        return None
    found = {ref: c for ref, c in customers.find_many(s, env_id, wanted).items() if c.archived_at is None}
    if found.keys() != wanted:
        return None
    owners = {(found[i.customer_id].pk, i.resource_id): found[i.customer_id] for i in items}
    held, valid_until = owners_grants_until(s, env_id, [(c, r) for (_, r), c in owners.items()], now, only=known)
    grants: dict[Owner, dict[str, Grant]] = {}
    for pk, resource_ref in owners:
        granted, has_subscription = held[(pk, resource_ref or None)]
        if not has_subscription:
            return None
        grants[(pk, resource_ref)] = granted
    found_pks = {ref: c.pk for ref, c in found.items()}
    batch = ({ref: Who(pk, ref) for ref, pk in found_pks.items()}, grants)
    kept_now = {owner: kept_grants(granted) for owner, granted in grants.items()}
    if kept is not None and kept.known.keys() <= known.keys() and len(kept.grants) + len(grants) <= KEPT_OWNERS:
        # The kept owners' grants were of the kept features: those asked for now are among them, or new.
        new_features = known.keys() - kept.known.keys()
        if not new_features:
            ends = [instant for instant in (kept.valid_until, valid_until) if instant is not None]
            merged = _Kept(
                mark, now, min(ends, default=None), known, {**kept.customers, **found_pks}, {**kept.grants, **kept_now}
            )
            return merged, batch
    return _Kept(mark, now, valid_until, known, found_pks, kept_now), batch
