"""`GET /api/v1/credits/usage`: the credits a customer consumed over time, one series per feature
(direct consumptions and reservations, which name no feature, form the series with featureId null),
from the ledger's CREDITS_CONSUMED entries and the charged part of its reservation releases. Points
are hourly over spans up to two days, daily beyond; only buckets with consumption are listed.

`groupBy` (up to three dimension keys, optionally with the reserved key `featureId`) makes the series
axis the values those keys take in the consumptions' `dimensions`: a consumption without a key forms a
series without that tag. Series are paged over a stable order (feature, then tags) by offset cursors,
forward (`after`) and back (`before`)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from entitle.catalog.features import store as features
from entitle.clock import as_utc, utcnow
from entitle.credits import store
from entitle.credits.schemas import (
    CreditUsage,
    CreditUsageCurrency,
    CreditUsagePoint,
    CreditUsageSeries,
)
from entitle.customers import store as customers
from entitle.db import Database
from entitle.db.pagination import PageRequest, decode_cursor, encode_cursor
from entitle.errors import InvalidArgument, NotFound
from entitle.grants.engine import resource_key
from entitle.http.wire import Pagination

RANGES = {
    "LAST_DAY": timedelta(days=1),
    "LAST_WEEK": timedelta(days=7),
    "LAST_MONTH": timedelta(days=30),
    "LAST_YEAR": timedelta(days=365),
}
MAX_SPAN = timedelta(days=366)


def _window(
    time_range: str | None, start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    if start is not None:
        begin, finish = as_utc(start), as_utc(end) if end is not None else now
    else:
        if end is not None:
            raise InvalidArgument("endDate needs a startDate")
        begin, finish = now - RANGES[time_range or "LAST_MONTH"], now
    if finish <= begin:
        raise InvalidArgument("endDate must be after startDate")
    if finish - begin > MAX_SPAN:
        raise InvalidArgument("the time range spans at most 366 days")
    return begin, finish


def _bucket(at: datetime, hourly: bool) -> datetime:
    return (
        at.replace(minute=0, second=0, microsecond=0)
        if hourly
        else at.replace(hour=0, minute=0, second=0, microsecond=0)
    )


FEATURE_KEY = "featureId"
MAX_DIMENSION_KEYS = 3
_KEY = re.compile(r"^[a-zA-Z0-9_$-]+$")

# A series: its feature (None when not split by feature) and its (key, value) tags in groupBy order.
SeriesKey = tuple[str | None, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Grouping:
    by_feature: bool
    dimension_keys: tuple[str, ...]


def parse_group_by(raw: str | None) -> Grouping:
    """`groupBy` as the contract defines it; None (or absent): one series per feature."""
    if raw is None:
        return Grouping(by_feature=True, dimension_keys=())
    keys = [k.strip() for k in raw.split(",")]
    problems = [f"'{k}' is not a valid key (letters, digits, _ $ -)" for k in keys if not _KEY.match(k)]
    if len(set(keys)) != len(keys):
        problems.append("each key may appear once")
    dimensions = tuple(k for k in keys if k != FEATURE_KEY)
    if len(dimensions) > MAX_DIMENSION_KEYS:
        problems.append(f"at most {MAX_DIMENSION_KEYS} dimension keys (besides featureId)")
    if problems:
        raise InvalidArgument(f"groupBy: {'; '.join(problems)}")
    return Grouping(by_feature=FEATURE_KEY in keys, dimension_keys=dimensions)


def tag_value(value: Any) -> str:
    """A dimension value as a tag's string (numbers and booleans as JSON writes them)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)


def series_key(grouping: Grouping, feature_ref: str | None, dimensions: dict[str, Any] | None) -> SeriesKey:
    found = dimensions or {}
    tags = tuple((k, tag_value(found[k])) for k in grouping.dimension_keys if k in found and found[k] is not None)
    return (feature_ref if grouping.by_feature else None, tags)


def _order(key: SeriesKey) -> tuple[bool, str, tuple[tuple[str, str], ...]]:
    return (key[0] is not None, key[0] or "", key[1])


def page_window(page: PageRequest, total: int) -> tuple[int, int, str | None, str | None]:
    """Offset cursors over `total` series: `after` starts at a position, `before` ends at one."""
    if page.before:
        end = min(decode_cursor(page.before), total)
        start = max(0, end - page.limit)
    else:
        start = min(decode_cursor(page.after), total) if page.after else 0
        end = min(start + page.limit, total)
    return (
        start,
        end,
        encode_cursor(end) if end < total else None,
        encode_cursor(start) if start > 0 else None,
    )


def credit_usage(
    db: Database,
    env_id: int,
    page: PageRequest,
    *,
    customer_ref: str,
    currency_ref: str | None,
    resource_ref: str | None,
    time_range: str | None,
    start: datetime | None,
    end: datetime | None,
    group_by: str | None = None,
) -> CreditUsage:
    grouping = parse_group_by(group_by)
    now = utcnow()
    begin, finish = _window(time_range, start, end, now)
    hourly = finish - begin <= timedelta(days=2)
    with db.read() as s:
        customer = customers.find(s, env_id, customer_ref)
        if customer is None:
            raise NotFound("customer", customer_ref)
        currency = store.get_currency(s, env_id, currency_ref) if currency_ref is not None else None
        wallets = store.wallets_of(s, customer.pk, currency.pk if currency else None, resource_key(resource_ref))
        rows = store.consumed_entries(
            s, env_id, [w.pk for w in wallets], begin, finish, with_dimensions=bool(grouping.dimension_keys)
        )
        names = {f.ref_id: f.display_name for f in features.get_many(s, env_id, [r[0] for r in rows if r[0]]).values()}
    totals: dict[SeriesKey, Decimal] = defaultdict(Decimal)
    events: dict[SeriesKey, set[str | None]] = defaultdict(set)
    points: dict[SeriesKey, dict[datetime, tuple[Decimal, set[str | None]]]] = defaultdict(dict)
    for feature_ref, at, amount, event_id, dimensions in rows:
        key = series_key(grouping, feature_ref, dimensions)
        bucket = _bucket(as_utc(at), hourly)
        value, seen = points[key].get(bucket, (Decimal(0), set()))
        points[key][bucket] = (value - amount, seen | {event_id})
        totals[key] -= amount
        events[key].add(event_id)
    keys = sorted(totals, key=_order)
    first, last, next_cursor, prev_cursor = page_window(page, len(keys))
    series = [
        CreditUsageSeries(
            feature_id=key[0],
            feature_name=names.get(key[0]) if key[0] else None,
            total_credits=totals[key],
            event_count=len(events[key]),
            points=[
                CreditUsagePoint(timestamp=at, value=value, event_count=len(seen))
                for at, (value, seen) in sorted(points[key].items())
            ],
            tags=[{"key": k, "value": v} for k, v in key[1]] if grouping.dimension_keys else None,
        )
        for key in keys[first:last]
    ]
    return CreditUsage(
        series=series,
        pagination=Pagination(next=next_cursor, prev=prev_cursor),
        currency=None
        if currency is None
        else CreditUsageCurrency(
            currency_id=currency.ref_id,
            display_name=currency.display_name,
            symbol=currency.symbol,
            singular=currency.unit_singular,
            plural=currency.unit_plural,
        ),
    )


def balance_history(
    db: Database, env_id: int, *, customer_ref: str, currency_ref: str, since: datetime
) -> list[tuple[datetime, Decimal]]:
    """The balance of the customer's own wallet over time: its value at `since`, then after each instant
    the ledger moved (several entries at one instant are one step). Empty when it has no wallet."""
    with db.read() as s:
        customer = customers.find(s, env_id, customer_ref)
        if customer is None:
            raise NotFound("customer", customer_ref)
        currency = store.get_currency(s, env_id, currency_ref)
        wallet = store.find_wallet(s, customer.pk, currency.pk, "")
        if wallet is None:
            return []
        balance, moves = store.balance_movements(s, wallet.pk, since)
    steps: dict[datetime, Decimal] = {as_utc(since): balance}
    for at, amount in moves:
        balance += amount
        steps[as_utc(at)] = balance
    return sorted(steps.items())
