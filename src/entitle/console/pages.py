"""What the customer and subscription pages show, read through the domains' own service functions (the
same ones the API answers with), plus the console's search."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from entitle.billing import service as billing
from entitle.billing.service import IntegrationView
from entitle.catalog.features import service as features
from entitle.catalog.packages import service as packages
from entitle.catalog.packages.models import PackageView
from entitle.clock import utcnow
from entitle.console import charts, store
from entitle.customers import service as customers
from entitle.customers.models import Customer
from entitle.customers.service import CustomerView
from entitle.db import Database
from entitle.db.pagination import MAX_LIMIT, Page, PageRequest
from entitle.entitlements import service as entitlements
from entitle.entitlements.schemas import EntitlementResult
from entitle.errors import EntitleError
from entitle.jobs import service as jobs
from entitle.jobs.models import DEAD, Job
from entitle.promotions import service as promotions
from entitle.promotions.models import PromotionalEntitlement
from entitle.subscriptions import service as subscriptions
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.preview import preview_change
from entitle.subscriptions.schemas import AddonQuantity, PreviewOut
from entitle.subscriptions.service import SubscriptionView
from entitle.sync_states import SyncState
from entitle.usage import service as usage
from entitle.webhooks import service as webhooks
from entitle.webhooks.models import WebhookDelivery


def search_customers(db: Database, env_id: int, query: str, page: PageRequest) -> Page[Customer]:
    with db.read() as s:
        return store.search_customers(s, env_id, query.strip(), page)


@dataclass(frozen=True)
class UsageBar:
    entitlement: EntitlementResult
    used: Decimal
    limit: Decimal | None
    # A number no usage is counted against (a feature without a meter: a retention in days, a size) has
    # no usage to show, as the API's answer has none: the page shows its value, not a bar.
    metered: bool = True

    @property
    def percent(self) -> int:
        if not self.limit:
            return 0
        return max(0, min(100, int(self.used * 100 / self.limit)))


@dataclass(frozen=True)
class CustomerPage:
    customer: CustomerView
    subscriptions: list[SubscriptionView]
    entitlements: list[UsageBar]
    promotions: list[PromotionalEntitlement]
    plans: list[PackageView]
    usage_charts: dict[str, UsageChart] = field(default_factory=dict)
    # Per integration id: whether it is live (its dashboard links go to live or test objects).
    livemodes: dict[str, bool] = field(default_factory=dict)
    # The newest attempts to deliver webhook events about the customer, with their endpoint's id.
    webhooks: list[tuple[WebhookDelivery, str]] = field(default_factory=list)
    # The environment's live features (id, name; the first page), offered by the promotion form so that
    # a business user picks one rather than types its id from memory.
    features: list[tuple[str, str]] = field(default_factory=list)


HISTORY_DAYS = 30


@dataclass(frozen=True)
class UsageChart:
    """A metered feature's usage history over HISTORY_DAYS as inline SVG, or why there is none."""

    svg: str | None = None
    note: str | None = None


def _usage_charts(db: Database, env_id: int, ref: str, bars: list[UsageBar]) -> dict[str, UsageChart]:
    end = utcnow()
    start = end - timedelta(days=HISTORY_DAYS)
    found: dict[str, UsageChart] = {}
    for bar in bars:
        feature = bar.entitlement.feature
        if feature is None or feature.feature_type != "NUMBER" or not bar.metered:
            continue
        try:
            history = usage.usage_history(db, env_id, ref, feature.id, start, end, None)
        except EntitleError as exc:  # e.g. more reports than one chart shows: say so, keep the page
            found[feature.id] = UsageChart(note=exc.message)
            continue
        points = [(p.timestamp, p.value) for series in history.series for p in series.points]
        found[feature.id] = UsageChart(svg=charts.step_chart(points, start, end, f"{feature.display_name} usage"))
    return found


def customer_page(db: Database, env_id: int, ref: str) -> CustomerPage:
    customer = customers.get_customer_or_archived(db, env_id, ref)
    _, subs = subscriptions.list_subscriptions(db, env_id, PageRequest(limit=100), customer_ref=ref)
    granted: list[UsageBar] = []
    promos: list[PromotionalEntitlement] = []
    promotable: list[tuple[str, str]] = []
    if customer.customer.archived_at is None:
        for result in entitlements.list_entitlements(db, env_id, ref, None).entitlements:
            if not isinstance(result, EntitlementResult):
                continue  # balances have the customer's Credits page
            used = Decimal(result.current_usage or 0)
            limit = None if result.has_unlimited_usage else result.usage_limit
            metered = result.current_usage is not None
            granted.append(UsageBar(result, used, Decimal(limit) if limit is not None else None, metered))
        promos = list(promotions.list_promotions(db, env_id, ref, PageRequest(limit=100)).items)
        offered = features.list_features(db, env_id, PageRequest(limit=MAX_LIMIT)).items
        promotable = [(f.ref_id, f.display_name) for f in offered]
    plans = packages.list_packages(db, env_id, "PLAN", PageRequest(limit=100), statuses=["PUBLISHED"]).items
    usage_charts = _usage_charts(db, env_id, ref, granted) if granted else {}
    return CustomerPage(
        customer,
        list(reversed(subs)),
        granted,
        promos,
        list(plans),
        usage_charts,
        livemodes(db, env_id),
        webhooks.customer_deliveries(db, env_id, customer.customer.ref_id),
        promotable,
    )


def livemodes(db: Database, env_id: int) -> dict[str, bool]:
    return {view.row.ref_id: view.row.livemode for view in billing.list_integrations(db, env_id)}


@dataclass(frozen=True)
class IntegrationsPage:
    integrations: list[IntegrationView]
    # Per integration: its entities whose last sync failed (newest first, at most a page).
    sync_errors: dict[str, list[SyncState]]
    dead_jobs: list[Job]


def integrations_page(db: Database, env_id: int) -> IntegrationsPage:
    connected = billing.list_integrations(db, env_id)
    errors: dict[str, list[SyncState]] = {}
    for view in connected:
        states = billing.sync_states(db, env_id, view.row.ref_id, PageRequest(limit=100)).items
        errors[view.row.ref_id] = [state for state in states if state.status == "ERROR"]
    dead = jobs.list_jobs(db, env_id, PageRequest(limit=100), [DEAD]).items
    return IntegrationsPage(connected, errors, list(dead))


@dataclass(frozen=True)
class ChangePage:
    """A subscription with what it may change to: the published plans of its product and the add-ons its
    plan declares compatible (the rules of the change itself are the API's, applied on confirm)."""

    subscription: SubscriptionView
    plans: list[PackageView]
    addons: list[PackageView]

    def quantity_of(self, addon_ref: str) -> int:
        return next((a.quantity for a in self.subscription.addons if a.addon_ref == addon_ref), 0)


def change_page(db: Database, env_id: int, subscription_ref: str) -> ChangePage:
    view = subscriptions.get_subscription(db, env_id, subscription_ref)
    plan = packages.get_package(db, env_id, "PLAN", view.sub.plan_ref)
    published = ["PUBLISHED"]
    plans = packages.list_packages(
        db, env_id, "PLAN", PageRequest(limit=100), product_ref=plan.product_ref, statuses=published
    ).items
    compatible = set(plan.package.compatible_addon_ids or [])
    addons = [
        a
        for a in packages.list_packages(
            db, env_id, "ADDON", PageRequest(limit=100), product_ref=plan.product_ref, statuses=published
        ).items
        if a.package.ref_id in compatible
    ]
    return ChangePage(view, list(plans), addons)


def addons_preview(
    db: Database, env_id: int, subscription_ref: str, wanted: list[AddonQuantity]
) -> tuple[SubscriptionView, PreviewOut]:
    """What the subscription would cost with `wanted` add-ons instead of its own: the API's preview of
    its plan and period with those add-ons (prorated against what it pays now)."""
    return change_preview(db, env_id, subscription_ref, addons=wanted)


@dataclass(frozen=True)
class PeriodPreview:
    subscription: SubscriptionView
    preview: PreviewOut
    # The switch waits for the end of the current period (`changes.update_subscription` schedules it):
    # nothing is due now, whatever proration the preview prices for an upgrade made now.
    deferred: bool


def period_preview(
    db: Database, env_id: int, subscription_ref: str, billing_period: str, schedule_strategy: str | None
) -> PeriodPreview:
    """What the subscription would cost on its plan billed every `billing_period` instead, with its
    own add-ons: the API's preview, as a plan change is previewed."""
    view, preview = change_preview(
        db, env_id, subscription_ref, billing_period=billing_period, schedule_strategy=schedule_strategy
    )
    return PeriodPreview(view, preview, schedule_strategy != "IMMEDIATE" and view.billing_window() is not None)


def change_preview(
    db: Database,
    env_id: int,
    subscription_ref: str,
    *,
    addons: list[AddonQuantity] | None = None,
    billing_period: str | None = None,
    schedule_strategy: str | None = None,
) -> tuple[SubscriptionView, PreviewOut]:
    """The API's preview of the subscription's own plan with some of its terms changed (the others as
    they are now: `preview.preview_change`)."""
    view = subscriptions.get_subscription(db, env_id, subscription_ref)
    changed = preview_change(
        db, env_id, view, addons=addons, billing_period=billing_period, schedule_strategy=schedule_strategy
    )
    return view, changed


@dataclass(frozen=True)
class SubscriptionFilters:
    plan_ref: str | None = None
    statuses: list[str] | None = None
    pricing_types: list[str] | None = None
    billing_periods: list[str] | None = None
    sync_statuses: list[str] | None = None


@dataclass(frozen=True)
class SubscriptionsPage:
    page: Page[Subscription]
    views: list[SubscriptionView]
    plans: list[PackageView]
    livemodes: dict[str, bool]


def subscriptions_page(db: Database, env_id: int, page: PageRequest, where: SubscriptionFilters) -> SubscriptionsPage:
    found, views = subscriptions.list_subscriptions(
        db,
        env_id,
        page,
        plan_ref=where.plan_ref,
        statuses=where.statuses,
        pricing_types=where.pricing_types,
        billing_periods=where.billing_periods,
        sync_statuses=where.sync_statuses,
    )
    plans = packages.list_packages(db, env_id, "PLAN", PageRequest(limit=100)).items
    return SubscriptionsPage(found, views, list(plans), livemodes(db, env_id))
