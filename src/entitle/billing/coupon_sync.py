"""Coupon sync through the outbox: an Entitle coupon becomes a provider coupon; archiving deletes it there.

1. `coupon_created` runs inside the transaction that creates a coupon (and `enqueue_coupon_sync` in the
   one that connects an integration, for every active coupon): the coupon's link is PENDING and one
   `billing.sync_coupon` job is enqueued.
2. The job builds the provider coupon (a percentage, or the fixed amounts per currency in whole minor
   units; `duration_in_months` -> repeating, none -> forever; metadata linking back) and records its id
   in `billing_links` (kind COUPON) and on the coupon (`billingId`, `billingLinkUrl`).
3. `coupon_archived` runs in the archiving transaction: a synced (or pending) coupon gets a
   `billing.delete_coupon` job, ordered after its sync job. Deleting a provider coupon leaves the
   discounts already applied to subscriptions in place (at Stripe, as in Entitle).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.billing import rules, store
from entitle.billing.models import ERROR, NO_SYNC_REQUIRED, PENDING, STRIPE, SUCCESS, Integration
from entitle.billing.provider import CouponSpec
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.catalog.coupons.models import Coupon
from entitle.config import console_page_url, load_settings
from entitle.db import Database
from entitle.environments.models import Environment
from entitle.jobs.service import JobContext, enqueue, register
from entitle.money import minor_unit_exponent

COUPON = "COUPON"
SYNC_COUPON_JOB = "billing.sync_coupon"
DELETE_COUPON_JOB = "billing.delete_coupon"


def _ordering_key(integration: Integration, coupon: Coupon) -> str:
    return f"billing:{integration.pk}:coupon:{hashlib.sha256(coupon.ref_id.encode()).hexdigest()[:32]}"


def coupon_created(session: Session, coupon: Coupon) -> None:
    """On `CouponCreated`, in the creating transaction: enqueue the sync to every connected integration."""
    for integration in store.active_integrations(session, coupon.environment_id, STRIPE):
        enqueue_coupon_sync(session, integration, coupon)


def enqueue_coupon_sync(session: Session, integration: Integration, coupon: Coupon) -> None:
    store.put_link(session, integration, COUPON, coupon.pk, PENDING)
    enqueue(
        session,
        coupon.environment_id,
        SYNC_COUPON_JOB,
        {"integrationPk": integration.pk, "couponPk": coupon.pk},
        ordering_key=_ordering_key(integration, coupon),
        dedupe_key=f"billing-sync:{integration.pk}:{COUPON}:{coupon.pk}",
    )


def enqueue_all(session: Session, integration: Integration) -> None:
    """On a first connection: every active coupon of the environment is synced."""
    active = session.scalars(
        select(Coupon)
        .where(Coupon.environment_id == integration.environment_id, Coupon.status == "ACTIVE")
        .order_by(Coupon.pk)
    )
    for coupon in active:
        enqueue_coupon_sync(session, integration, coupon)


def coupon_archived(session: Session, coupon: Coupon) -> None:
    """On `CouponArchived`: delete its provider coupon at every connected integration
    that has (or will have) one."""
    for integration in store.active_integrations(session, coupon.environment_id, STRIPE):
        link = store.link(session, integration.pk, COUPON, coupon.pk)
        if link is None or link.sync_state == NO_SYNC_REQUIRED:
            continue
        enqueue(
            session,
            coupon.environment_id,
            DELETE_COUPON_JOB,
            {"integrationPk": integration.pk, "couponPk": coupon.pk},
            ordering_key=_ordering_key(integration, coupon),
            dedupe_key=f"billing-delete:{integration.pk}:{COUPON}:{coupon.pk}",
        )


def coupon_spec(env: Environment, coupon: Coupon, console: str) -> CouponSpec:
    amounts: dict[str, int] = {}
    for entry in coupon.amounts_off or []:
        currency = str(entry["currency"]).lower()
        minor = Decimal(str(entry["amount"])) * (Decimal(10) ** minor_unit_exponent(currency))
        amounts[currency] = int(minor)  # whole: the coupon service refuses finer amounts
    metadata = {
        "entitleEntityId": coupon.ref_id,
        "entitleEntityType": COUPON,
        "entitleEnvironment": env.name,
        "entitleEntityUrl": console_page_url(console, "COUPON", coupon.ref_id),
    }
    return CouponSpec(
        ref=rules.coupon_billing_ref(env.name, coupon.ref_id),
        name=coupon.name,
        percent_off=coupon.percent_off,
        amounts_off_minor=amounts,
        duration_in_months=coupon.duration_in_months,
        metadata={k[:40]: v[:500] for k, v in metadata.items()},
    )


def _dashboard_url(integration: Integration, coupon_id: str) -> str:
    mode = "" if integration.livemode else "test/"
    return f"https://dashboard.stripe.com/{mode}coupons/{quote(coupon_id, safe='')}"


@register(SYNC_COUPON_JOB)
def sync_coupon(db: Database, ctx: JobContext) -> None:
    settings = load_settings()
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        coupon = s.get(Coupon, int(ctx.payload["couponPk"]))
        if integration is None or coupon is None or integration.environment_id != ctx.environment_id:
            return
        done = store.link(s, integration.pk, COUPON, coupon.pk)
        if done is not None and done.sync_state in (SUCCESS, NO_SYNC_REQUIRED):
            return
        archived = coupon.status == "ARCHIVED"
        env = s.get(Environment, coupon.environment_id)
        assert env is not None
        spec = coupon_spec(env, coupon, settings.console_base_url)
    if archived:
        with db.transaction() as s:
            reason = "the coupon was archived before it was synced"
            store.put_link(s, integration, COUPON, coupon.pk, NO_SYNC_REQUIRED, reason=reason)
        return
    provider = provider_for(integration, secret_box(settings.data_dir))
    try:
        billing_id = provider.sync_coupon(spec, idempotency_key=ctx.idempotency_key)
    except Exception as exc:
        with db.transaction() as s:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            store.put_link(s, integration, COUPON, coupon.pk, ERROR, reason=f"{reason} (attempt {ctx.attempt})")
        raise
    with db.transaction() as s:
        if billing_id is None:
            store.put_link(s, integration, COUPON, coupon.pk, NO_SYNC_REQUIRED, reason="no billing provider")
            return
        store.put_link(s, integration, COUPON, coupon.pk, SUCCESS, billing_id=billing_id)
        row = s.get(Coupon, coupon.pk)
        assert row is not None
        row.billing_id = billing_id
        row.billing_link_url = _dashboard_url(integration, billing_id)


@register(DELETE_COUPON_JOB)
def delete_coupon(db: Database, ctx: JobContext) -> None:
    settings = load_settings()
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        coupon = s.get(Coupon, int(ctx.payload["couponPk"]))
        if integration is None or coupon is None or integration.environment_id != ctx.environment_id:
            return
        link = store.link(s, integration.pk, COUPON, coupon.pk)
        if link is None or link.sync_state != SUCCESS or not link.billing_id or link.details.get("deleted"):
            return  # never reached the provider (its sync, ordered first, found it archived), or done
        billing_id = link.billing_id
    provider_for(integration, secret_box(settings.data_dir)).delete_coupon(
        billing_id, idempotency_key=ctx.idempotency_key
    )
    with db.transaction() as s:
        row = store.link(s, integration.pk, COUPON, coupon.pk)
        if row is not None:
            row.details = {**row.details, "deleted": True}


def applied_coupon(s: Session, integration: Integration, env_id: int, coupon_ref: str | None) -> str | bool | None:
    """The provider coupon a subscription's coupon maps to: its id; None when it has none to apply
    (archived and deleted before it was synced); False while its sync is still to come."""
    if not coupon_ref:
        return None
    coupon = s.scalars(select(Coupon).where(Coupon.environment_id == env_id, Coupon.ref_id == coupon_ref)).one_or_none()
    if coupon is None:
        return None
    link = store.link(s, integration.pk, COUPON, coupon.pk)
    if link is None or link.sync_state in (PENDING, ERROR):
        return False if link is not None or coupon.status == "ACTIVE" else None
    if link.sync_state == SUCCESS and link.billing_id and not link.details.get("deleted"):
        return link.billing_id
    return None


__all__ = [
    "COUPON",
    "DELETE_COUPON_JOB",
    "SYNC_COUPON_JOB",
    "applied_coupon",
    "coupon_archived",
    "coupon_created",
    "delete_coupon",
    "enqueue_all",
    "enqueue_coupon_sync",
    "sync_coupon",
]
