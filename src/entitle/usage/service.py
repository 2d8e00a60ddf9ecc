"""Usage: reported usage (DELTA / SET) and its history. Raw events are counted by `counting`.

Counting rule: every report lands in the usage window that contains its `createdAt` (the report time
when absent). Counters are updated under a lock, so concurrent reports never lose an update.

Usage is a record of something that already happened, so it is never refused for a limit: two
requests may both pass a check and then both report, and refusing the second would lose real usage
(and the overage it bills). A hard limit is enforced by the check, which denies access once the
counter reaches it; crossing a limit announces `UsageLimitHit` (webhook and stream).

A batch is refused whole (nothing recorded) when an item is invalid: a value or `createdAt` outside
its documented range, or a report that would take the counter out of range (400, naming each item as
`usages.<i>.<field>`), an unknown customer or feature (404), or an idempotency key reused for another
report (409).

Idempotency follows Stripe: a key is claimed by inserting its record first. The same key with the same
report (customer, feature, value, behaviour, resource) answers the first report's result and counts
nothing; the same key with a different report is refused with 409 IDEMPOTENCY_KEY_REUSED — within a
batch as across batches.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.clock import as_utc, utcnow
from entitle.customers import store as customers
from entitle.db import Database
from entitle.errors import FailedPrecondition, InvalidArgument, NotFound
from entitle.events.rules import CLOCK_SKEW, EARLIEST, instant_problem, refusal
from entitle.grants.engine import Window, customer_grants, resource_key
from entitle.periods import reset_times_between
from entitle.usage import batch_store, ports, store
from entitle.usage.ahead import resolve_ahead
from entitle.usage.models import UsageCounter, UsageRecord
from entitle.usage.owners import CounterMoved, CustomerKey, GrantCache, announce, customer_row
from entitle.usage.ports import CreditCharge
from entitle.usage.rules import HISTORY_MAX_POINTS, HISTORY_MAX_SPAN, RANGE_TEXT, in_range
from entitle.usage.schemas import (
    HistoryMarker,
    HistoryPoint,
    HistorySeries,
    UsageCreditOut,
    UsageHistory,
    UsageIn,
    UsageOut,
)


class IdempotencyKeyReused(FailedPrecondition):
    code = "IDEMPOTENCY_KEY_REUSED"


def report_usage(db: Database, env_id: int, items: list[UsageIn]) -> list[UsageOut]:
    """Apply a batch of usage reports in one transaction: all of them, or (on any bad item) none."""
    now = utcnow()
    problems = [
        {"field": f"usages.{index}.createdAt", "problem": problem}
        for index, item in enumerate(items)
        if item.created_at is not None and (problem := instant_problem(item.created_at, now))
    ]
    if problems:
        raise refusal(problems)
    ahead = resolve_ahead(db, env_id, items, now)
    with db.transaction() as s:
        if ahead is not None and not ports.grant_changes.impl.unchanged_since(
            s, env_id, ahead.mark, {i.customer_id for i in items}
        ):
            ahead = None  # something it rests on changed meanwhile: read everything again, here
        if ahead is None:
            grants = GrantCache(s, env_id, now)
            known = features.get_many(s, env_id, [i.feature_id for i in items])
        else:
            grants = GrantCache(s, env_id, now, ahead.grants)
            known = ahead.known
        claimed: set[str] = set()
        counters: dict[batch_store.CounterKey, batch_store.TallyRow] = {}
        results: list[UsageOut] = []
        for index, item in enumerate(items):
            key = item.idempotency_key
            # A key unused before the transaction, and not by this batch, is claimed by the insert below
            # (which also tells a claim committed meanwhile): it needs no look-up first.
            if key is not None and (ahead is None or key in ahead.taken or key in claimed):
                first = store.record_by_key(s, env_id, key)
                if first is not None:
                    results.append(_replay(s, env_id, grants, first, item, index))
                    continue
            customer: CustomerKey
            if ahead is None:
                customer = customers.get_live(s, env_id, item.customer_id, write=True)
            else:
                customer = ahead.customers[item.customer_id]
            feature = _metered_by_reports(known.get(item.feature_id), item, index)
            at = item.created_at or now
            window = grants.window(customer, feature, item.resource_id, at)
            counter_key = (customer.pk, feature.ref_id, resource_key(item.resource_id), window.start)
            counter = counters.get(counter_key)
            if counter is None:
                counter = counters[counter_key] = batch_store.locked_counters(s, env_id, [counter_key])[counter_key]
            after = counter.value + item.value if item.update_behavior == "DELTA" else item.value
            if not in_range(after):
                problems.append(
                    {
                        "field": f"usages.{index}.value",
                        "problem": f"the counter would reach {after}, outside the range {RANGE_TEXT}",
                    }
                )
                continue
            written = _Written(
                pk=0,
                feature_ref=feature.ref_id,
                resource_ref=resource_key(item.resource_id),
                value=item.value,
                resulting_value=after,
                timestamp=at,
                created_at=now,
            )
            record_pk = store.insert_record_if_new(
                s,
                {
                    "environment_id": env_id,
                    "customer_pk": customer.pk,
                    "feature_ref": written.feature_ref,
                    "resource_ref": written.resource_ref,
                    "idempotency_key": key,
                    "update_behavior": item.update_behavior,
                    "value": written.value,
                    "resulting_value": after,
                    "window_start": window.start,
                    "timestamp": at,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if record_pk is None:  # a concurrent report claimed the key first (it committed meanwhile)
                assert key is not None
                first = store.record_by_key(s, env_id, key)
                assert first is not None
                results.append(_replay(s, env_id, grants, first, item, index))
                continue
            if key is not None:
                claimed.add(key)
            delta = after - counter.value
            counter.value = after
            batch_store.save_tallies(s, UsageCounter, [counter])
            grant = grants.of(customer, item.resource_id).get(feature.ref_id)
            current = grants.window(customer, feature, item.resource_id, now).start == window.start
            moved = CounterMoved(
                customer, feature.ref_id, item.resource_id, window, grant.allowance if grant else None, after, current
            )
            announce(s, env_id, moved)
            event_id = key or f"usage:{record_pk}"
            charged = _charge(s, env_id, customer, feature.ref_id, item.resource_id, delta, at, event_id)
            results.append(_out(written._replace(pk=record_pk), customer, window, charged))
        if problems:
            raise refusal(problems)
        s.flush()
        return results


class _Written(NamedTuple):
    """A usage record as this transaction wrote it (read back, it would be one more statement)."""

    pk: int
    feature_ref: str
    resource_ref: str
    value: Decimal
    resulting_value: Decimal
    timestamp: datetime
    created_at: datetime


def _charge(
    s: Session,
    env_id: int,
    customer: CustomerKey,
    feature_ref: str,
    resource_ref: str | None,
    delta: Decimal,
    at: datetime,
    event_id: str,
) -> CreditCharge | None:
    """`ports.charge_credits`, asked only of a feature that may be priced in credits (`ports.credit_priced`,
    asked once per transaction), with the customer's row, read here when what was resolved ahead holds
    only its pk and id: most usage draws no credits, and needs no row."""
    priced = ports.credit_priced.impl(s, env_id)
    if priced is not None and feature_ref not in priced:
        return None
    payer = customer_row(s, customer)
    return ports.charge_credits.impl(s, env_id, payer, feature_ref, resource_ref, delta, at, event_id)


def _metered_by_reports(feature: Feature | None, item: UsageIn, index: int) -> Feature:
    if feature is None or feature.archived_at is not None:
        raise NotFound("feature", item.feature_id)
    if feature.meter_type == "None":
        raise InvalidArgument(f"feature '{feature.ref_id}' is not metered; it takes no usage")
    if feature.meter:
        raise InvalidArgument(f"feature '{feature.ref_id}' is measured by its meter; report events instead")
    if feature.meter_type == "INCREMENTAL" and item.update_behavior == "DELTA" and item.value < 0:
        raise refusal(
            [
                {
                    "field": f"usages.{index}.value",
                    "problem": "an incremental feature's usage only grows; use SET to correct it",
                }
            ]
        )
    return feature


def _replay(s: Session, env_id: int, grants: GrantCache, first: UsageRecord, item: UsageIn, index: int) -> UsageOut:
    """The answer to a report whose key is taken: the first report's result when it is the same report."""
    customer = customers.find(s, env_id, item.customer_id)
    differs = [
        name
        for name, same in (
            ("customerId", customer is not None and customer.pk == first.customer_pk),
            ("featureId", item.feature_id == first.feature_ref),
            ("value", item.value == first.value),
            ("updateBehavior", item.update_behavior == first.update_behavior),
            ("resourceId", resource_key(item.resource_id) == first.resource_ref),
        )
        if not same
    ]
    if differs:
        raise IdempotencyKeyReused(
            f"idempotencyKey '{item.idempotency_key}' was already used for another usage report "
            f"({', '.join(differs)} differ); nothing was recorded",
            details=[{"field": f"usages.{index}.idempotencyKey", "problem": f"{', '.join(differs)} differ"}],
        )
    assert customer is not None
    feature = features.get(s, env_id, first.feature_ref)
    # A replay draws nothing: its credit block says 0 consumed, and the balance now.
    charged = ports.charge_credits.impl(
        s, env_id, customer, first.feature_ref, item.resource_id, Decimal(0), first.timestamp, ""
    )
    return _out(first, customer, grants.window(customer, feature, item.resource_id, first.timestamp), charged)


def _out(
    record: UsageRecord | _Written, customer: CustomerKey, window: Window, charged: CreditCharge | None = None
) -> UsageOut:
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
        credit=None
        if charged is None
        else UsageCreditOut(
            consumed=charged.consumed,
            currency_id=charged.currency_ref,
            current_usage=charged.current_usage,
            usage_limit=charged.usage_limit,
            timestamp=charged.timestamp,
            usage_period_end=charged.period_end,
        ),
    )


def _history_range(start: datetime, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    start, end = as_utc(start), as_utc(end) if end else now
    if start < EARLIEST:
        raise refusal([{"field": "startDate", "problem": f"must not be before {EARLIEST.isoformat()}"}])
    if start > now + CLOCK_SKEW:
        raise refusal([{"field": "startDate", "problem": "is in the future: there is no usage there yet"}])
    if end <= start:
        raise refusal([{"field": "endDate", "problem": "must be after startDate"}])
    if end - start > HISTORY_MAX_SPAN:
        raise refusal(
            [
                {
                    "field": "endDate",
                    "problem": f"a usage history spans at most {HISTORY_MAX_SPAN.days} days; ask for a shorter range",
                }
            ]
        )
    return start, end


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
    every periodic reset in the range. Series are not split by dimensions (`groupBy` is ignored).
    A range spans at most `HISTORY_MAX_SPAN` and answers at most `HISTORY_MAX_POINTS` points (400)."""
    now = utcnow()
    start, end = _history_range(start, end, now)
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        feature = features.get(s, env_id, feature_ref)
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
        resource = resource_key(resource_ref)
        reports = store.count_records_between(s, customer.pk, feature.ref_id, resource, start, end)
        if reports + len(resets) > HISTORY_MAX_POINTS:
            raise refusal(
                [
                    {
                        "field": "endDate",
                        "problem": f"the range holds {reports + len(resets)} points, more than the "
                        f"{HISTORY_MAX_POINTS} a usage history answers; ask for a shorter range",
                    }
                ]
            )
        records = store.records_between(s, customer.pk, feature.ref_id, resource, start, end)
    points = [HistoryPoint(timestamp=r.timestamp, value=r.resulting_value, is_reset_point=False) for r in records]
    points += [HistoryPoint(timestamp=t, value=Decimal(0), is_reset_point=True) for t in resets]
    points.sort(key=lambda p: (p.timestamp, not p.is_reset_point))
    return UsageHistory(
        series=[HistorySeries(tags=[], points=points)],
        markers=[HistoryMarker(timestamp=t, type="PERIODIC_RESET") for t in resets],
    )
