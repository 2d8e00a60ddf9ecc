"""Usage reporting through the outbox: a period's metered usage becomes provider meter events, once.

A usage-based charge (`USAGE_BASED`, not an overage) is a metered provider price backed by a provider
meter per feature (`entitle.billing.catalog_sync`); the subscription carries it as an item without a
quantity, and the provider bills whatever usage was reported to the meter for the period.

`billing.report_invoice_usage` is enqueued by the inbound webhook handler when the provider announces
a subscription's invoice (`invoice.created`, payload `integrationPk`, `invoiceId`,
`subscriptionBillingId`, `periodStart`, `periodEnd`). Stripe leaves a new subscription invoice a draft
for about an hour before finalizing it, and usage reported in that hour with a timestamp inside the
period is billed on it. For each metered feature of the subscription the job:

1. looks for the period's row in `billing_usage_reports` (integration, subscription, feature, period):
   SENT -> nothing to do; PENDING -> re-send exactly what it holds;
2. otherwise measures the period's usage from Entitle's usage counters (`rules.period_usage`: the
   windows overlapping the period, less what the previous period already billed of a window that
   spans both) and writes the row PENDING with the value and the meter event's identifier (derived
   from subscription, feature and period) *before* calling the provider;
3. sends one meter event (the provider counts an identifier once) and marks the row SENT.

An overage charge (usage beyond the included amount) is a metered price on the feature's own overage
meter: its row (`feature_ref` "<feature>#overage") measures only the usage past the subscription's
included amount per usage window (`rules.period_overage`; the included amount is the subscription's
entitlement: plan, add-ons and overrides). A tiered price with a block size, or a fractional block
size, sends the usage as `rules.provider_quantity` makes it (whole blocks), so the provider bills what
Entitle's pricing would.

A retried job, a duplicated job, or a worker that died between the provider's answer and step 3 sends
the same identifier with the same value again, which the provider counts once: usage is never
double-counted, and never measured twice for a period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from entitle.billing import rules, store
from entitle.billing.models import CUSTOMER, PACKAGE_CHARGE, SUBSCRIPTION, SUCCESS, Integration
from entitle.billing.provider import BillingProvider, MeterSpec, UsageReport
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.usage_models import REPORT_PENDING, REPORT_SENT, BillingUsageReport
from entitle.catalog.packages import store as packages
from entitle.clock import utcnow
from entitle.config import load_settings
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.environments.models import Environment
from entitle.grants.engine import resource_key, subscription_terms
from entitle.jobs.service import JobContext, register
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription
from entitle.usage.models import UsageCounter

REPORT_INVOICE_USAGE_JOB = "billing.report_invoice_usage"


def meter_spec(env_name: str, feature_ref: str, *, overage: bool = False) -> MeterSpec:
    return MeterSpec(
        event_name=rules.meter_event_name(env_name, feature_ref, overage=overage),
        display_name=f"{feature_ref} {'overage' if overage else 'usage'}",
    )


def _instant(value: Any) -> datetime:
    """A period bound as the webhook gives it: unix seconds, or an ISO 8601 string."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value), tz=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Metered:
    """A feature billed through a metered price of the subscription: its usage, or its overage."""

    feature_ref: str
    overage: bool = False
    shape: rules.PriceShape | None = None  # how the measured usage becomes the quantity sent
    included: Decimal | None = None  # overage: the usage the subscription includes per window (None: unlimited)

    @property
    def key(self) -> str:
        """The report row's `feature_ref` (and the identifier's): the feature, or `<feature>#overage`."""
        return f"{self.feature_ref[:246]}#overage" if self.overage else self.feature_ref


def metered_charges(s: Session, integration: Integration, sub: Subscription) -> list[Metered]:
    """The features of the subscription's usage-based and overage charges billed through a metered price."""
    package_pks = [sub.plan_pk] + [a.addon_pk for a in subscriptions.addons_of(s, [sub.pk]).get(sub.pk, [])]
    charges = [
        c
        for pk in package_pks
        for c in packages.charges_of(s, pk)
        if c.billing_model == "USAGE_BASED" and c.feature_ref and c.billing_period == sub.billing_period
    ]
    links = store.links(s, integration.pk, PACKAGE_CHARGE, [c.pk for c in charges])
    terms = (
        subscription_terms(s, sub.environment_id, [sub]).get(sub.pk, {}) if any(c.is_overage for c in charges) else {}
    )
    found: dict[tuple[str, bool], Metered] = {}
    for c in charges:
        link = links.get(c.pk)
        if link is None or link.sync_state != SUCCESS or not c.feature_ref or (c.feature_ref, c.is_overage) in found:
            continue
        shape = rules.charge_shape(c)
        included: Decimal | None = None
        if c.is_overage:
            grant = terms.get(("FEATURE", c.feature_ref))
            if grant is None or not grant.is_granted:
                included = Decimal(0)
            elif not grant.has_unlimited_usage:
                included = grant.usage_limit or Decimal(0)
        found[(c.feature_ref, c.is_overage)] = Metered(
            c.feature_ref, c.is_overage, None if isinstance(shape, str) else shape, included
        )
    return sorted(found.values(), key=lambda m: m.key)


def metered_features(s: Session, integration: Integration, sub: Subscription) -> list[str]:
    """The features of the subscription's usage-based charges (not overage) billed through a metered price."""
    return [m.feature_ref for m in metered_charges(s, integration, sub) if not m.overage]


def _windows(s: Session, sub: Subscription, feature_ref: str, end: datetime) -> list[tuple[datetime, Decimal]]:
    rows = s.scalars(
        select(UsageCounter).where(
            UsageCounter.customer_pk == sub.customer_pk,
            UsageCounter.feature_ref == feature_ref,
            UsageCounter.resource_ref == resource_key(sub.resource_ref),
            UsageCounter.window_start < end,
        )
    )
    return [(row.window_start, row.value) for row in rows]


def _previous(
    s: Session, integration: Integration, sub: Subscription, feature_ref: str, start: datetime
) -> tuple[datetime, Decimal] | None:
    row = s.scalars(
        select(BillingUsageReport)
        .where(
            BillingUsageReport.integration_pk == integration.pk,
            BillingUsageReport.subscription_pk == sub.pk,
            BillingUsageReport.feature_ref == feature_ref,
            BillingUsageReport.period_start < start,
        )
        .order_by(BillingUsageReport.period_start.desc())
        .limit(1)
    ).one_or_none()
    if row is None or row.window_start is None:
        return None
    return row.window_start, row.cumulative


def _report_row(
    s: Session, integration_pk: int, sub_pk: int, feature_ref: str, start: datetime
) -> BillingUsageReport | None:
    return s.scalars(
        select(BillingUsageReport).where(
            BillingUsageReport.integration_pk == integration_pk,
            BillingUsageReport.subscription_pk == sub_pk,
            BillingUsageReport.feature_ref == feature_ref,
            BillingUsageReport.period_start == start,
        )
    ).one_or_none()


@dataclass(frozen=True)
class _Context:
    integration: Integration
    sub: Subscription
    env_name: str
    customer_billing_id: str
    features: list[Metered]


def _context(db: Database, ctx: JobContext) -> _Context | None:
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        if integration is None or integration.environment_id != ctx.environment_id:
            return None
        linked = store.links_by_billing_id(s, integration.pk, SUBSCRIPTION, [str(ctx.payload["subscriptionBillingId"])])
        if not linked:
            return None  # not a subscription Entitle synced
        sub = subscriptions.by_pk(s, linked[0].entity_pk)
        env = s.get(Environment, ctx.environment_id)
        if sub is None or env is None:
            return None
        paying = sub.paying_customer_pk or sub.customer_pk
        customer_link = store.link(s, integration.pk, CUSTOMER, paying)
        customer = s.get(Customer, paying)
        customer_id = (customer_link.billing_id if customer_link else None) or (
            customer.billing_id if customer else None
        )
        if customer_id is None:
            raise RuntimeError(f"subscription '{sub.ref_id}' has no provider customer to report usage for")
        return _Context(integration, sub, env.name, customer_id, metered_charges(s, integration, sub))


@register(REPORT_INVOICE_USAGE_JOB)
def report_invoice_usage(db: Database, ctx: JobContext) -> None:
    found = _context(db, ctx)
    if found is None or not found.features:
        return
    start, end = _instant(ctx.payload["periodStart"]), _instant(ctx.payload["periodEnd"])
    if not start < end:
        return  # not a billing period: nothing may be measured or marked sent for it
    provider = provider_for(found.integration, secret_box(load_settings().data_dir))
    for metered in found.features:
        row = _measure(db, found, metered, start, end, ctx.idempotency_key)
        if row is None or row.state == REPORT_SENT:
            continue
        if row.value > 0 and not _already_counted(provider, row):
            provider.report_usage(
                UsageReport(
                    customer_billing_id=row.customer_billing_id,
                    meter=row.event_name,
                    value=row.value,
                    timestamp=rules.usage_event_time(start, end, utcnow()),
                    identifier=row.identifier,
                ),
                idempotency_key=ctx.idempotency_key,
            )
        _mark_sent(db, row.pk)


def _already_counted(provider: BillingProvider, row: BillingUsageReport) -> bool:
    """Whether an earlier attempt's event is at the provider, for a row still PENDING past the provider's
    identifier window. Within the window re-sending is safe (the identifier counts once, and the meter's
    summaries may still lag behind the event); past it a re-sent identifier counts again, so the meter is
    read for the minutes the event lies in (only this period's event of the subscription's feature lies
    there) and a value already there is not sent twice."""
    if utcnow() - row.created_at < rules.METER_IDENTIFIER_WINDOW:
        return False
    since, until = rules.usage_lookup_range(row.period_start, row.period_end)
    counted = provider.reported_usage(row.meter_billing_id, row.customer_billing_id, since, until)
    return counted >= row.value


def _measure(
    db: Database, found: _Context, metered: Metered, start: datetime, end: datetime, idempotency_key: str
) -> BillingUsageReport | None:
    """The period's report row: the one already written, or a new PENDING one with the usage measured now."""
    integration, sub = found.integration, found.sub
    feature_ref, key = metered.feature_ref, metered.key
    with db.read() as s:
        existing = _report_row(s, integration.pk, sub.pk, key, start)
        if existing is not None:
            return existing
        windows = _windows(s, sub, feature_ref, end)
        previous = _previous(s, integration, sub, key, start)
    if not metered.overage:
        value, window_start, cumulative = rules.period_usage(windows, start, end, previous)
    elif metered.included is None:  # unlimited: nothing is ever past the included amount
        value, window_start, cumulative = Decimal(0), None, Decimal(0)
    else:
        value, window_start, cumulative = rules.period_overage(windows, start, end, previous, metered.included)
    if metered.shape is not None and value > 0:
        value = rules.provider_quantity(metered.shape, value)
    meter = meter_spec(found.env_name, feature_ref, overage=metered.overage)
    provider = provider_for(integration, secret_box(load_settings().data_dir))
    meter_id = provider.ensure_meter(meter, idempotency_key=f"{idempotency_key}:{meter.event_name}")
    try:
        with db.transaction() as s:
            row = BillingUsageReport(
                environment_id=sub.environment_id,
                integration_pk=integration.pk,
                subscription_pk=sub.pk,
                feature_ref=key,
                period_start=start,
                period_end=end,
                value=value,
                window_start=window_start,
                cumulative=cumulative,
                meter_billing_id=meter_id or "",
                event_name=meter.event_name,
                customer_billing_id=found.customer_billing_id,
                identifier=rules.usage_identifier(sub.ref_id, key, start),
                state=REPORT_PENDING,
            )
            s.add(row)
            s.flush()
            s.expunge(row)
            return row
    except IntegrityError:  # a concurrent run wrote it first: use that one
        with db.read() as s:
            return _report_row(s, integration.pk, sub.pk, key, start)


def _mark_sent(db: Database, pk: int) -> None:
    with db.transaction() as s:
        row = s.get(BillingUsageReport, pk)
        if row is not None and row.state != REPORT_SENT:
            row.state = REPORT_SENT
            row.sent_at = utcnow()


__all__ = [
    "REPORT_INVOICE_USAGE_JOB",
    "Metered",
    "meter_spec",
    "metered_charges",
    "metered_features",
    "report_invoice_usage",
]
