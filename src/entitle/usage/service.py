"""Usage: reported usage (DELTA / SET) and usage derived from raw events by meters.

Counting rule: every report lands in the usage window that contains its `createdAt` (the report
time when absent). Counters are updated under a lock, so concurrent reports never lose an update,
and an idempotency key is claimed by inserting its record first, so a retried report never counts
twice.

Hard-limit rule: a DELTA report that would add usage to a feature whose effective limit is hard
(not unlimited, not soft) is refused — the whole batch, with 409 USAGE_LIMIT_REACHED — when the
counter has already reached the limit. Counters are updated one report at a time under the lock,
so a hard limit is exceeded at most by the one report that crossed it: never by more than what one
in-flight request adds, however many callers report at once. Refused usage is never recorded
silently: the caller gets the error and knows it was not counted. SET reports (absolute levels
such as seats) and raw events (a measurement stream, always acknowledged) are not refused; their
limits are enforced by the check.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages.allowance import Allowance
from entitle.clock import as_utc, utcnow
from entitle.customers import store as customers
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.domain_events import publish
from entitle.errors import FailedPrecondition, InvalidArgument, NotFound
from entitle.events.ingested import NewEvent
from entitle.grants.engine import Grant, Window, customer_grants, resource_key, usage_window
from entitle.periods import reset_times_between
from entitle.usage import store
from entitle.usage.events import UsageChanged, UsageLimitHit
from entitle.usage.meters import aggregate
from entitle.usage.models import UsageRecord
from entitle.usage.schemas import (
    HistoryMarker,
    HistoryPoint,
    HistorySeries,
    UsageHistory,
    UsageIn,
    UsageOut,
)

log = logging.getLogger("entitle.usage")


class _Grants:
    """Grants per (customer, resource), loaded once per batch."""

    def __init__(self, s: Session, env_id: int, now: datetime) -> None:
        self.s, self.env_id, self.now = s, env_id, now
        self._cache: dict[tuple[int, str | None], dict[str, Grant]] = {}

    def of(self, customer: Customer, resource_ref: str | None) -> dict[str, Grant]:
        key = (customer.pk, resource_ref)
        if key not in self._cache:
            self._cache[key] = customer_grants(self.s, self.env_id, customer, resource_ref, self.now)[0]
        return self._cache[key]


def _window(grants: _Grants, customer: Customer, feature: Feature, resource_ref: str | None, at: datetime) -> Window:
    grant = grants.of(customer, resource_ref).get(feature.ref_id)
    return usage_window(feature, grant.allowance if grant else None, grant.usage_anchor if grant else None, at)


@dataclass(frozen=True)
class _LimitHit:
    """Where a usage limit was reached: what the `usage.*` webhook events say."""

    customer_pk: int  # plain values: a refused batch's rollback expires its ORM rows
    customer_ref: str
    feature_ref: str
    resource_ref: str | None
    window: Window
    allowance: Allowance
    current: Decimal


def _limit_events(s: Session, env_id: int, hit: _LimitHit, *, refused: bool = False) -> None:
    """`UsageLimitHit` when a hard limit is reached (or a report refused at it), or a soft limit
    exceeded (the webhooks adapter sends each once per usage window and limit)."""
    allowance = hit.allowance
    if allowance.has_unlimited or allowance.usage_limit is None:
        return
    if allowance.has_soft_limit:
        if hit.current <= allowance.usage_limit:
            return
    elif hit.current < allowance.usage_limit:
        return
    reached = UsageLimitHit(
        env_id=env_id,
        soft=allowance.has_soft_limit,
        customer_pk=hit.customer_pk,
        customer_ref=hit.customer_ref,
        feature_ref=hit.feature_ref,
        resource_ref=hit.resource_ref,
        window_start=hit.window.start,
        window_end=hit.window.end,
        limit=allowance.usage_limit,
        current=hit.current,
        refused=refused,
    )
    publish(s, reached)


def report_usage(db: Database, env_id: int, items: list[UsageIn]) -> list[UsageOut]:
    """Apply a batch of usage reports in one transaction: all of them, or (on any bad item) none.

    A batch refused at a hard limit rolls back; its `usage.limit_reached` event is then written in a
    short transaction of its own (once per window and limit, like the event of an accepted report).
    """
    try:
        return _report_usage(db, env_id, items)
    except UsageLimitReached as exc:
        if exc.limit_hit is not None:
            try:
                with db.transaction() as s:
                    _limit_events(s, env_id, exc.limit_hit, refused=True)
            except Exception:  # the caller must still get its 409
                log.exception("could not record the usage.limit_reached event of a refused report")
        raise


def _report_usage(db: Database, env_id: int, items: list[UsageIn]) -> list[UsageOut]:
    now = utcnow()
    with db.transaction() as s:
        grants = _Grants(s, env_id, now)
        known = features.get_many(s, env_id, [i.feature_id for i in items])
        results: list[UsageOut] = []
        for item in items:
            customer = customers.get_live(s, env_id, item.customer_id)
            feature = known.get(item.feature_id)
            if feature is None or feature.archived_at is not None:
                raise NotFound("feature", item.feature_id)
            if feature.meter_type == "None":
                raise InvalidArgument(f"feature '{feature.ref_id}' is not metered; it takes no usage")
            if feature.meter:
                raise InvalidArgument(f"feature '{feature.ref_id}' is measured by its meter; report events instead")
            if feature.meter_type == "INCREMENTAL" and item.update_behavior == "DELTA" and item.value < 0:
                raise InvalidArgument("an incremental feature's usage only grows; use SET to correct it")
            at = as_utc(item.created_at) if item.created_at else now
            window = _window(grants, customer, feature, item.resource_id, at)
            record_pk = store.insert_record_if_new(
                s,
                {
                    "environment_id": env_id,
                    "customer_pk": customer.pk,
                    "feature_ref": feature.ref_id,
                    "resource_ref": resource_key(item.resource_id),
                    "idempotency_key": item.idempotency_key,
                    "update_behavior": item.update_behavior,
                    "value": item.value,
                    "resulting_value": Decimal(0),
                    "window_start": window.start,
                    "timestamp": at,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if record_pk is None:  # a retry: answer what the first report did, count nothing
                assert item.idempotency_key is not None
                existing = store.record_by_key(s, env_id, item.idempotency_key)
                assert existing is not None
                results.append(_out(existing, customer, window))
                continue
            counter = store.locked_counter(
                s, env_id, customer.pk, feature.ref_id, resource_key(item.resource_id), window.start
            )
            grant = grants.of(customer, item.resource_id).get(feature.ref_id)
            if item.update_behavior == "DELTA" and item.value > 0 and grant is not None:
                try:
                    _refuse_past_hard_limit(grant.allowance, counter.value, feature.ref_id)
                except UsageLimitReached as exc:
                    exc.limit_hit = _LimitHit(
                        customer.pk,
                        customer.ref_id,
                        feature.ref_id,
                        item.resource_id,
                        window,
                        grant.allowance,
                        counter.value,
                    )
                    raise
            counter.value = counter.value + item.value if item.update_behavior == "DELTA" else item.value
            counter.updated_at = now
            if grant is not None:
                hit = _LimitHit(
                    customer.pk,
                    customer.ref_id,
                    feature.ref_id,
                    item.resource_id,
                    window,
                    grant.allowance,
                    counter.value,
                )
                _limit_events(s, env_id, hit)
            record = s.get(UsageRecord, record_pk)
            assert record is not None
            record.resulting_value = counter.value
            if _window(grants, customer, feature, item.resource_id, now).start == window.start:
                publish(
                    s,
                    UsageChanged(
                        env_id=env_id,
                        customer_ref=customer.ref_id,
                        resource_ref=item.resource_id,
                        feature_ref=feature.ref_id,
                        current=counter.value,
                    ),
                )
            results.append(_out(record, customer, window))
        s.flush()
        return results


class UsageLimitReached(FailedPrecondition):
    code = "USAGE_LIMIT_REACHED"
    limit_hit: _LimitHit | None = None


def _refuse_past_hard_limit(allowance: Allowance, current: Decimal, feature_ref: str) -> None:
    if allowance.has_unlimited or allowance.has_soft_limit or allowance.usage_limit is None:
        return
    if current >= allowance.usage_limit:
        raise UsageLimitReached(
            f"'{feature_ref}' has reached its hard limit of {allowance.usage_limit}; the usage was not recorded"
        )


def _out(record: UsageRecord, customer: Customer, window: Window) -> UsageOut:
    return UsageOut(
        id=str(record.pk),
        customer_id=customer.ref_id,
        feature_id=record.feature_ref,
        value=record.value,
        created_at=record.timestamp,
        timestamp=record.created_at,
        current_usage=record.resulting_value,
        usage_period_start=window.start if window.end is not None else None,
        usage_period_end=window.end,
        next_reset_date=window.end,
        resource_id=record.resource_ref or None,
    )


ADDITIVE = frozenset({"COUNT", "SUM"})


def apply_events(s: Session, env_id: int, new: list[NewEvent]) -> None:
    """Turn newly stored events into usage, in the transaction that stored them, so a check sees
    them as soon as they are acknowledged.

    Each event counts in the usage window containing its timestamp. COUNT and SUM are additive: the
    new events' contribution is added to the window's counter (duplicates never reach here, the
    insert skipped them). MAX, MIN, AVG and UNIQUE are recomputed from the window's stored events.
    """
    metered = features.metered_with_meter(s, env_id)
    if not metered:
        return
    now = utcnow()
    grants = _Grants(s, env_id, now)
    by_owner: dict[tuple[str, str | None], list[NewEvent]] = defaultdict(list)
    for event in new:
        by_owner[(event.customer_ref, event.resource_ref)].append(event)
    for (customer_ref, resource_ref), events in sorted(by_owner.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        customer = customers.find(s, env_id, customer_ref)
        if customer is None or customer.archived_at is not None:
            continue  # kept, and counted by a recomputation once the customer exists
        for feature in metered:
            assert feature.meter is not None
            windows: dict[datetime, tuple[Window, list[NewEvent]]] = {}
            for event in events:
                window = _window(grants, customer, feature, resource_ref, event.timestamp)
                windows.setdefault(window.start, (window, []))[1].append(event)
            additive = feature.meter["aggregation"]["function"] in ADDITIVE
            for window, window_events in windows.values():
                if additive:
                    delta = aggregate(feature.meter, [(e.event_name, e.dimensions) for e in window_events])
                    if not delta:
                        continue
                    value = None
                else:
                    stored = store.events_in_window(s, env_id, customer_ref, resource_ref, window.start, window.end)
                    value = aggregate(feature.meter, stored)
                counter = store.locked_counter(
                    s, env_id, customer.pk, feature.ref_id, resource_key(resource_ref), window.start
                )
                counter.value = counter.value + delta if value is None else value
                counter.updated_at = now
                if _window(grants, customer, feature, resource_ref, now).start == window.start:
                    publish(
                        s,
                        UsageChanged(
                            env_id=env_id,
                            customer_ref=customer_ref,
                            resource_ref=resource_ref,
                            feature_ref=feature.ref_id,
                            current=counter.value,
                        ),
                    )
                grant = grants.of(customer, resource_ref).get(feature.ref_id)
                if grant is not None:  # events are never refused, but reaching a limit is still news
                    hit = _LimitHit(
                        customer.pk,
                        customer.ref_id,
                        feature.ref_id,
                        resource_ref,
                        window,
                        grant.allowance,
                        counter.value,
                    )
                    _limit_events(s, env_id, hit)


def usage_history(
    db: Database,
    env_id: int,
    customer_ref: str,
    feature_ref: str,
    start: datetime,
    end: datetime | None,
    resource_ref: str | None,
) -> UsageHistory:
    """Each accepted report as a point (the counter after it), with a zero point and a marker at
    every periodic reset in the range. Series are not split by dimensions (`groupBy` is ignored)."""
    now = utcnow()
    start, end = as_utc(start), as_utc(end) if end else now
    if end <= start:
        raise InvalidArgument("endDate must be after startDate")
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        feature = features.get(s, env_id, feature_ref)
        records = store.records_between(s, customer.pk, feature.ref_id, resource_key(resource_ref), start, end)
        grant = customer_grants(s, env_id, customer, resource_ref, now)[0].get(feature.ref_id)
        resets: list[datetime] = []
        if grant and grant.allowance.reset_period and feature.meter_type == "INCREMENTAL":
            resets = reset_times_between(
                grant.allowance.reset_period,
                grant.allowance.reset_anchor,
                grant.usage_anchor,
                max(start, grant.usage_anchor),
                end + timedelta(microseconds=1),  # a reset at exactly `end` is in range
            )
    points = [HistoryPoint(timestamp=r.timestamp, value=r.resulting_value, is_reset_point=False) for r in records]
    points += [HistoryPoint(timestamp=t, value=Decimal(0), is_reset_point=True) for t in resets]
    points.sort(key=lambda p: (p.timestamp, not p.is_reset_point))
    return UsageHistory(
        series=[HistorySeries(tags=[], points=points)],
        markers=[HistoryMarker(timestamp=t, type="PERIODIC_RESET") for t in resets],
    )
