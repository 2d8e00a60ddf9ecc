"""Usage nobody can count yet (no such customer, an archived one, or no entitlement to the feature)
waits in a tally per customer id, resource and feature (`usage_waiting`); it moves into the current
usage window as soon as the customer holds the feature (`fold_waiting`)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from entitle.catalog.features.models import Feature
from entitle.clock import utcnow
from entitle.customers import store as customers
from entitle.grants.engine import customer_grants, resource_key, usage_window
from entitle.usage import batch_store, store
from entitle.usage.measuring import Item, Problem
from entitle.usage.models import WaitingUsage
from entitle.usage.owners import CounterMoved, announce
from entitle.usage.rules import Tally, fold_checked, merge
from entitle.usage.tallies import (
    charge_credits,
    function_of,
    numbers_of,
    rebuild_if_legacy,
    refused_items,
    tally_of,
    write_tally,
    written,
)

log = logging.getLogger("entitle.usage")


def count_waiting(
    s: Session, env_id: int, waiting: dict[batch_store.WaitingKey, list[Item]], by_feature: dict[str, Feature]
) -> list[Problem]:
    rows = batch_store.locked_waitings(s, env_id, waiting)
    unique = [key for key in waiting if function_of(by_feature[key[2]]) == "UNIQUE"]
    added = batch_store.add_distinct_many(
        s, [(rows[key].pk, str(amount)) for key in unique for _, amount in waiting[key]], owner="waiting_pk"
    )
    problems: list[Problem] = []
    tallies: list[Tally] = []
    for key, items in waiting.items():
        row = rows[key]
        function = function_of(by_feature[key[2]])
        if function == "UNIQUE":
            tallies.append(Tally(value=row.value + added.get(row.pk, 0)))
            continue
        tally, refused = fold_checked(function, tally_of(row), numbers_of(items))
        problems += refused_items(items, refused)
        tallies.append(tally)
    if not problems:
        batch_store.save_tallies(
            s, WaitingUsage, [written(rows[key], t) for key, t in zip(waiting, tallies, strict=True)]
        )
    return problems


def fold_waiting(s: Session, env_id: int, customer_ref: str, resource_ref: str | None) -> None:
    """Move what waits for this customer (and resource) into the current usage window of each feature
    it now holds. Idempotent: what moved no longer waits."""
    owner = (env_id, customer_ref, resource_key(resource_ref))
    settled = store.nothing_waits(s)
    if owner in settled:
        return
    store.lock_owner(s, env_id, customer_ref)
    waiting = store.waiting_of(s, env_id, customer_ref, owner[2])
    if not waiting:
        settled.add(owner)
        return
    customer = customers.find(s, env_id, customer_ref)
    if customer is None or customer.archived_at is not None:
        return
    now = utcnow()
    held = customer_grants(s, env_id, customer, resource_ref, now)[0]
    for row in waiting:
        grant = held.get(row.feature_ref)
        if grant is None or not grant.feature.meter:
            continue
        feature = grant.feature
        function = function_of(feature)
        window = usage_window(feature, grant.allowance, grant.usage_anchor, now)
        counter = store.locked_counter(s, env_id, customer.pk, feature.ref_id, resource_key(resource_ref), window.start)
        rebuild_if_legacy(s, env_id, counter, feature, customer, resource_ref, window)
        before = counter.value
        if function == "UNIQUE":
            tally = Tally(value=counter.value + store.move_distinct(s, row.pk, counter.pk))
        else:
            tally = merge(function, tally_of(counter), tally_of(row))
        write_tally(counter, tally, now)
        store.delete_waiting(s, row.pk)
        log.info(
            "usage of %s that waited for customer %s (resource %s) now counts: %s",
            feature.ref_id,
            customer_ref,
            resource_ref,
            row.value,
        )
        announce(
            s,
            env_id,
            CounterMoved(customer, feature.ref_id, resource_ref, window, grant.allowance, counter.value, True),
        )
        # The waiting row is deleted in this same transaction: a later fold finds nothing and draws nothing.
        charge_credits(s, env_id, customer, feature, resource_ref, counter, before, origin="waited")
