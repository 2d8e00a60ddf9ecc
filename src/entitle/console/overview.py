"""The overview page's figures, read in one transaction. Prices come from the same functions the
subscription preview uses (`entitle.subscriptions.preview`, `pricing`), so MRR and a preview agree."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from entitle.billing.models import ERROR, BillingLink
from entitle.catalog.coupons import store as coupons
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import Package
from entitle.clock import utcnow
from entitle.console import rules
from entitle.credits.models import CreditGrant
from entitle.credits.rules import PAID
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.events.models import Event
from entitle.jobs.models import DEAD, Job
from entitle.subscriptions import price_rules, pricing
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription, SubscriptionCharge
from entitle.subscriptions.preview import price_lines, prices_of
from entitle.usage.models import UsageRecord

CHART_DAYS = 30
LISTED = 50


@dataclass
class Overview:
    customers: int
    # (plan, status) -> subscriptions, for ACTIVE and IN_TRIAL
    per_plan: dict[tuple[str, str], int]
    trials_ending: list[tuple[str, str, datetime]]  # (subscription, customer, trial end)
    mrr: dict[str, Decimal]
    # Active paid subscriptions that also bill from usage (in arrears): not in MRR, counted apart.
    usage_billed: int
    failed_payments: list[tuple[str, str]]  # (subscription, customer), the newest LISTED
    sync_errors: list[tuple[str, str, str]]  # (entity kind, billing id or entity, reason), the newest LISTED
    dead_jobs: int
    new_per_day: list[tuple[date, int]] = field(default_factory=list)
    # All of them, where the lists above stop at LISTED.
    failed_payment_count: int = 0
    sync_error_count: int = 0
    # Usage reported per day: accepted usage reports (`POST /api/v2/usage`) and raw events ingested.
    reports_per_day: list[tuple[date, int]] = field(default_factory=list)
    events_per_day: list[tuple[date, int]] = field(default_factory=list)
    # One-off charges of the last CHART_DAYS days per currency, not in MRR: paid credit grants at their
    # cost (the only charge Entitle records that does not recur), and how many there were.
    one_off: dict[str, Decimal] = field(default_factory=dict)
    one_off_count: int = 0


def overview(db: Database, env_id: int, now: datetime | None = None) -> Overview:
    now = now or utcnow()
    with db.read() as s:
        customers = s.scalar(
            select(func.count())
            .select_from(Customer)
            .where(Customer.environment_id == env_id, Customer.archived_at.is_(None))
        )
        per_plan = {
            (plan, status): int(n)
            for plan, status, n in s.execute(
                select(Subscription.plan_ref, Subscription.status, func.count())
                .where(Subscription.environment_id == env_id, Subscription.status.in_(("ACTIVE", "IN_TRIAL")))
                .group_by(Subscription.plan_ref, Subscription.status)
                .order_by(Subscription.plan_ref, Subscription.status)
            )
        }
        trials = s.execute(
            select(Subscription.ref_id, Customer.ref_id, Subscription.trial_end_date)
            .join(Customer, Customer.pk == Subscription.customer_pk)
            .where(
                Subscription.environment_id == env_id,
                Subscription.status == "IN_TRIAL",
                Subscription.trial_end_date >= now,
                Subscription.trial_end_date < now + timedelta(days=7),
            )
            .order_by(Subscription.trial_end_date)
            .limit(50)
        )
        charges, usage_billed = _recurring(s, env_id)
        failing = (Subscription.environment_id == env_id, Subscription.payment_collection == "FAILED")
        failed = s.execute(
            select(Subscription.ref_id, Customer.ref_id)
            .join(Customer, Customer.pk == Subscription.customer_pk)
            .where(*failing)
            .order_by(Subscription.pk.desc())
            .limit(LISTED)
        )
        failed_count = s.scalar(select(func.count()).select_from(Subscription).where(*failing))
        erring = (BillingLink.environment_id == env_id, BillingLink.sync_state == ERROR)
        errors = s.execute(
            select(BillingLink.entity_kind, BillingLink.billing_id, BillingLink.entity_pk, BillingLink.reason)
            .where(*erring)
            .order_by(BillingLink.pk.desc())
            .limit(LISTED)
        )
        error_count = s.scalar(select(func.count()).select_from(BillingLink).where(*erring))
        dead = s.scalar(select(func.count()).select_from(Job).where(Job.environment_id == env_id, Job.status == DEAD))
        since = (now - timedelta(days=CHART_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        charts = chart_queries(env_id, since, s.get_bind().dialect.name)
        created = Counter(at.date() for at in s.scalars(charts["subscriptions"]))
        days = _days(since.date(), CHART_DAYS)
        reports = _per_day(s, charts["usage_reports"])
        events = _per_day(s, charts["events"])
        one_off = [(currency, Decimal(amount)) for currency, amount in s.execute(charts["one_off"])]
        return Overview(
            customers=int(customers or 0),
            per_plan=per_plan,
            trials_ending=[(sub, cust, end) for sub, cust, end in trials if end is not None],
            mrr=rules.mrr(charges),
            usage_billed=usage_billed,
            failed_payments=[(sub, cust) for sub, cust in failed],
            sync_errors=[(kind, billing_id or f"#{pk}", reason or "") for kind, billing_id, pk, reason in errors],
            dead_jobs=int(dead or 0),
            new_per_day=[(day, created.get(day, 0)) for day in days],
            failed_payment_count=int(failed_count or 0),
            sync_error_count=int(error_count or 0),
            reports_per_day=[(day, reports.get(day, 0)) for day in days],
            events_per_day=[(day, events.get(day, 0)) for day in days],
            one_off=rules.one_off_totals(one_off),
            one_off_count=sum(1 for _, amount in one_off if amount > 0),
        )


def chart_queries(env_id: int, since: datetime, dialect: str) -> dict[str, Select[*tuple[Any, ...]]]:
    """The charts' queries: each reads one environment's rows from `since` on, through an
    (environment, time) index (migration 0031), never the environment's whole history."""
    return {
        "subscriptions": select(Subscription.created_at).where(
            Subscription.environment_id == env_id, Subscription.created_at >= since
        ),
        "usage_reports": _per_day_query(UsageRecord.timestamp, UsageRecord.environment_id == env_id, since, dialect),
        "events": _per_day_query(Event.timestamp, Event.environment_id == env_id, since, dialect),
        "one_off": _one_off_query(env_id, since),
    }


def _per_day_query(
    at: InstrumentedAttribute[datetime], in_env: ColumnElement[bool], since: datetime, dialect: str
) -> Select[*tuple[Any, ...]]:
    """Rows per UTC day from `since`, counted by the database. SQLite stores naive UTC text; PostgreSQL's
    `date()` of a timestamptz would use the session's time zone, so the UTC wall time is taken first."""
    utc = func.timezone("UTC", at) if dialect == "postgresql" else at
    day = func.date(utc)
    return select(day, func.count()).where(in_env, at >= since).group_by(day)


def _per_day(s: Session, query: Select[*tuple[Any, ...]]) -> Counter[date]:
    found: Counter[date] = Counter()
    for value, n in s.execute(query):
        found[value if isinstance(value, date) else date.fromisoformat(str(value)[:10])] += int(n)
    return found


def _one_off_query(env_id: int, since: datetime) -> Select[*tuple[Any, ...]]:
    """Paid credit grants made since `since` at their cost; a voided grant is left out (voiding undoes
    a grant made by mistake, and counting both it and its replacement would count the sale twice)."""
    return select(CreditGrant.cost_currency, CreditGrant.cost_amount).where(
        CreditGrant.environment_id == env_id,
        CreditGrant.grant_type == PAID,
        CreditGrant.voided_at.is_(None),
        CreditGrant.created_at >= since,
    )


def _days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]


def _recurring(s: Session, env_id: int) -> tuple[list[rules.RecurringCharge], int]:
    """Each active paid subscription's recurring charge per period, priced as a preview prices it."""
    subs = list(
        s.scalars(
            select(Subscription).where(
                Subscription.environment_id == env_id,
                Subscription.status == "ACTIVE",
                Subscription.pricing_type == "PAID",
                Subscription.billing_period.is_not(None),
            )
        )
    )
    pks = [sub.pk for sub in subs]
    addons = subscriptions.addons_of(s, pks)
    quantities: dict[int, dict[str, Decimal]] = {}
    for charge in s.scalars(select(SubscriptionCharge).where(SubscriptionCharge.subscription_pk.in_(pks))):
        key = pricing.quantity_key(charge.charge_type, charge.ref_id)
        quantities.setdefault(charge.subscription_pk, {})[key] = charge.quantity
    found: list[rules.RecurringCharge] = []
    usage_billed = 0
    for sub in subs:
        plan = s.get(Package, sub.plan_pk)
        if plan is None or sub.billing_period is None:
            continue
        with_addons = [(p, a.quantity) for a in addons.get(sub.pk, []) if (p := s.get(Package, a.addon_pk))]
        units = Decimal(sub.unit_quantity or 1)
        # A deal's overridden prices are what the subscription costs, not the list prices.
        overrides = price_rules.amounts(sub.price_overrides)
        lines = price_lines(
            s,
            plan,
            with_addons,
            sub.billing_period,
            sub.billing_country_code,
            quantities.get(sub.pk, {}),
            units,
            overrides,
        )
        all_prices = prices_of(packages.charges_of(s, plan.pk), sub.billing_period, sub.billing_country_code, "")
        if any(p.billing_model == "USAGE_BASED" for p in all_prices):
            usage_billed += 1
        if not lines:
            continue
        currency = lines[0].currency
        percent: Decimal | None = None
        fixed: Decimal | None = None
        coupon = coupons.find(s, env_id, sub.coupon_ref) if sub.coupon_ref else None
        if coupon is not None and coupon.status == "ACTIVE":
            percent = coupon.percent_off
            fixed = next(
                (Decimal(str(a["amount"])) for a in coupon.amounts_off or [] if a.get("currency") == currency), None
            )
        invoice = pricing.invoice(currency, lines, percent_off=percent, amount_off=fixed)
        found.append(
            rules.RecurringCharge(
                currency=currency,
                billing_period=sub.billing_period,
                amount=invoice.total,
                status=sub.status,
                pricing_type=sub.pricing_type,
                in_trial=False,
            )
        )
    return found, usage_billed
