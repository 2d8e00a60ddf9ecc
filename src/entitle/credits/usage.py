"""`GET /api/v1/credits/usage`: the credits a customer consumed over time, one series per feature
(direct consumptions, which name no feature, form the series with featureId null), from the ledger's
CREDITS_CONSUMED entries. Points are hourly over spans up to two days, daily beyond; only buckets with
consumption are listed. `groupBy` is refused (400 UNSUPPORTED_FIELD): series per dimension value are
not computed yet."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from entitle.catalog.features import store as features
from entitle.clock import as_utc, utcnow
from entitle.credits import store
from entitle.credits.models import LedgerEntry
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
) -> CreditUsage:
    now = utcnow()
    begin, finish = _window(time_range, start, end, now)
    hourly = finish - begin <= timedelta(days=2)
    with db.read() as s:
        customer = customers.find(s, env_id, customer_ref)
        if customer is None:
            raise NotFound("customer", customer_ref)
        currency = store.get_currency(s, env_id, currency_ref) if currency_ref is not None else None
        wallets = store.wallets_of(s, customer.pk, currency.pk if currency else None, resource_key(resource_ref))
        rows = s.execute(
            select(LedgerEntry.feature_ref, LedgerEntry.timestamp, LedgerEntry.amount, LedgerEntry.event_id).where(
                LedgerEntry.wallet_pk.in_([w.pk for w in wallets]),
                LedgerEntry.event_type == "CREDITS_CONSUMED",
                LedgerEntry.timestamp >= begin,
                LedgerEntry.timestamp < finish,
            )
        ).all()
        names = {f.ref_id: f.display_name for f in features.get_many(s, env_id, [r[0] for r in rows if r[0]]).values()}
    totals: dict[str | None, Decimal] = defaultdict(Decimal)
    events: dict[str | None, set[str | None]] = defaultdict(set)
    points: dict[str | None, dict[datetime, tuple[Decimal, set[str | None]]]] = defaultdict(dict)
    for feature_ref, at, amount, event_id in rows:
        bucket = _bucket(as_utc(at), hourly)
        value, seen = points[feature_ref].get(bucket, (Decimal(0), set()))
        points[feature_ref][bucket] = (value - amount, seen | {event_id})
        totals[feature_ref] -= amount
        events[feature_ref].add(event_id)
    keys = sorted(totals, key=lambda k: (k is not None, k or ""))
    offset = decode_cursor(page.after) if page.after else 0
    chosen = keys[offset : offset + page.limit]
    series = [
        CreditUsageSeries(
            feature_id=key,
            feature_name=names.get(key) if key else None,
            total_credits=totals[key],
            event_count=len(events[key]),
            points=[
                CreditUsagePoint(timestamp=at, value=value, event_count=len(seen))
                for at, (value, seen) in sorted(points[key].items())
            ],
        )
        for key in chosen
    ]
    more = offset + page.limit < len(keys)
    return CreditUsage(
        series=series,
        pagination=Pagination(next=encode_cursor(offset + page.limit) if more else None, prev=None),
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
