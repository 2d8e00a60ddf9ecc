"""Promotional entitlements: grant (an upsert per feature), list, revoke."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.catalog.features import store as features
from entitle.catalog.features.models import Feature
from entitle.catalog.packages.rules import check_feature_entitlement
from entitle.catalog.packages.service import feature_shape
from entitle.clock import as_utc, utcnow
from entitle.customers import store as customers
from entitle.customers.events import entitlements_changed
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest
from entitle.domain_events import publish
from entitle.errors import InvalidArgument, NotFound
from entitle.jobs import service as jobs
from entitle.promotions import store
from entitle.promotions.events import PromotionExpired, PromotionsGranted, PromotionsRevoked
from entitle.promotions.models import PromotionalEntitlement
from entitle.promotions.rules import promotion_end
from entitle.promotions.schemas import PromotionIn


def _check(item: PromotionIn, feature: Feature) -> None:
    """The catalog's rule for an entitlement of the feature's type: a field that does not apply to it
    (a limit on an ENUM, enumValues on a NUMBER, usageLimit beside hasUnlimitedUsage) is refused, as a
    plan refuses it, rather than stored and then ignored by every check."""
    check_feature_entitlement(
        feature_shape(feature),
        usage_limit=Decimal(item.usage_limit) if item.usage_limit is not None else None,
        has_unlimited_usage=bool(item.has_unlimited_usage),
        has_soft_limit=bool(item.has_soft_limit),
        reset_period=item.reset_period,
        enum_values=item.enum_values,
    )


def grant(db: Database, env_id: int, customer_ref: str, items: list[PromotionIn]) -> list[PromotionalEntitlement]:
    """Grant each feature; granting a feature the customer already has replaces that grant, from now."""
    refs = [i.feature_id for i in items]
    if len(set(refs)) != len(refs):
        raise InvalidArgument("each feature may appear once per request")
    now = utcnow()
    with db.transaction() as s:
        customer = customers.get_live(s, env_id, customer_ref, for_update=True, write=True)
        known = features.get_many(s, env_id, refs)
        existing = store.for_customer(s, customer.pk)
        granted: list[PromotionalEntitlement] = []
        for item in items:
            feature = known.get(item.feature_id)
            if feature is None:
                raise NotFound("feature", item.feature_id)
            _check(item, feature)
            try:
                end = promotion_end(item.period, now, item.custom_end_date and as_utc(item.custom_end_date))
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from exc
            row = existing.get(item.feature_id) or PromotionalEntitlement(
                environment_id=env_id, customer_pk=customer.pk, feature_ref=item.feature_id
            )
            row.period = item.period
            row.start_date = now
            row.end_date = end
            row.usage_limit = Decimal(item.usage_limit) if item.usage_limit is not None else None
            row.has_unlimited_usage = bool(item.has_unlimited_usage)
            row.has_soft_limit = bool(item.has_soft_limit)
            row.is_visible = True if item.is_visible is None else item.is_visible
            row.enum_values = list(item.enum_values) if item.enum_values is not None else None
            row.reset_period = item.reset_period
            row.reset_period_configuration = item.reset_configuration()
            row.description = item.description
            row.paused = False
            row.updated_at = now
            s.add(row)
            granted.append(row)
        s.flush()
        if granted:
            publish(s, PromotionsGranted(env_id=env_id, customer_ref=customer.ref_id, rows=tuple(granted)))
            for row in granted:
                if row.end_date is not None:
                    schedule_expiry(s, row)
            entitlements_changed(s, env_id, customer.ref_id)
        return granted


def list_promotions(
    db: Database,
    env_id: int,
    customer_ref: str,
    page: PageRequest,
    *,
    statuses: list[str] | None = None,
    created_at: CreatedAtRange = CreatedAtRange(),
) -> Page[PromotionalEntitlement]:
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        return store.list_page(s, customer.pk, page, statuses=statuses, created_at=created_at, now=utcnow())


def revoke(db: Database, env_id: int, customer_ref: str, feature_ref: str) -> PromotionalEntitlement:
    with db.transaction() as s:
        customer = customers.get_live(s, env_id, customer_ref, for_update=True, write=True)
        row = store.for_customer(s, customer.pk).get(feature_ref)
        if row is None:
            raise NotFound("promotional entitlement", feature_ref)
        publish(s, PromotionsRevoked(env_id=env_id, customer_ref=customer.ref_id, rows=(row,)))
        entitlements_changed(s, env_id, customer.ref_id)
        s.delete(row)
        return row


# The job kind earlier releases stored (pending jobs of a running system keep it).
JOB_EXPIRED = "webhooks.promotion_expired"


def schedule_expiry(s: Session, row: PromotionalEntitlement) -> None:
    """A job at the promotion's end date; one per grant and end (granting again moves the end)."""
    assert row.end_date is not None
    jobs.enqueue(
        s,
        row.environment_id,
        JOB_EXPIRED,
        {"promotion": row.pk, "endDate": row.end_date.isoformat()},
        run_at=row.end_date,
        dedupe_key=f"promotion-expired:{row.pk}:{row.end_date.isoformat()}",
    )


@jobs.register(JOB_EXPIRED)
def _on_expired(db: Database, ctx: jobs.JobContext) -> None:
    end = datetime.fromisoformat(ctx.payload["endDate"])
    with db.transaction() as s:
        row = s.get(PromotionalEntitlement, int(ctx.payload["promotion"]))
        # Revoked, or granted again with another end, since: that grant's own job speaks for it.
        if row is None or row.end_date != end or end > utcnow():
            return
        customer = s.get(Customer, row.customer_pk)
        if customer is None:
            return
        publish(s, PromotionExpired(env_id=row.environment_id, customer_ref=customer.ref_id, rows=(row,)))
        entitlements_changed(s, row.environment_id, customer.ref_id)
