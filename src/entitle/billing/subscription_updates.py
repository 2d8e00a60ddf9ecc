"""Changes to a synced subscription in place reach its provider subscription (docs/stripe.md, "Subscription
updates"): `subscription_changed` runs in the transaction that changes it (plan version, add-ons,
quantities, billing period, coupon, billing information) and enqueues one `billing.update_subscription`
job, which brings the provider subscription to the subscription as it is when the job runs, sending only
what differs. Billing information and a promotion code a request gave travel with that job (sealed, and
in its payload), since Entitle keeps neither."""

from __future__ import annotations

from typing import cast

from sqlalchemy.orm import Session

from entitle.billing import store
from entitle.billing.models import CUSTOMER, NO_SYNC_REQUIRED, SUBSCRIPTION, SUCCESS, Integration
from entitle.billing.provider import ProrationBehavior, subscription_extras
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.subscription_sync import (
    _OPEN,
    UPDATE_SUBSCRIPTION_JOB,
    NotReadyToSync,
    _ordering_key,
    _read,
    promotion_code_for,
    promotion_payload,
)
from entitle.clock import utcnow
from entitle.config import load_settings
from entitle.db import Database
from entitle.jobs.service import JobContext, enqueue, register
from entitle.subscriptions import store as subscriptions
from entitle.subscriptions.models import Subscription


def subscription_changed(
    session: Session, sub: Subscription, *, scheduled: bool = False, proration: str | None = None
) -> None:
    """On `BillingTermsChanged`, in the transaction that changes a subscription in place (plan version, add-ons,
    quantities, billing period, coupon): a synced (or pending) subscription gets one
    `billing.update_subscription` job, ordered after its customer's earlier jobs.

    `scheduled`: the change is a scheduled update taking effect now, at the end of a period, so the
    provider prorates nothing; a change made in the middle of a period is prorated
    (`create_prorations`, or the update's `billingInformation.prorationBehavior` as `proration`).
    """
    sealed = store.take_sealed(session, sub.pk)  # checked by `forwarding.forward`: this sub is synced
    promotion = store.take_promotion(session, sub.pk)
    integration = store.integration_for_subscription(session, sub)
    if integration is None:
        return
    link = store.link(session, integration.pk, SUBSCRIPTION, sub.pk)
    if link is None or link.sync_state == NO_SYNC_REQUIRED:
        return  # not billed through the provider (a pending sync sends the state as it is then)
    enqueue(
        session,
        sub.environment_id,
        UPDATE_SUBSCRIPTION_JOB,
        {
            "integrationPk": integration.pk,
            "subscriptionPk": sub.pk,
            "proration": "none" if scheduled else (proration or "create_prorations"),
        }
        | promotion_payload(promotion),
        ordering_key=_ordering_key(integration, sub.paying_customer_pk or sub.customer_pk),
        sealed={"subscription": sealed} if sealed else None,
    )


@register(UPDATE_SUBSCRIPTION_JOB)
def update_subscription(db: Database, ctx: JobContext) -> None:
    """Bring the provider subscription to the subscription as it is now (not as it was when the job was
    enqueued: several changes in a row make one update, the later jobs find nothing to change)."""
    settings = load_settings()
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        sub = subscriptions.by_pk(s, int(ctx.payload["subscriptionPk"]))
        if integration is None or sub is None or integration.environment_id != ctx.environment_id:
            return
        link = store.link(s, integration.pk, SUBSCRIPTION, sub.pk)
        if (link is not None and link.details.get("canceled")) or sub.status not in _OPEN:
            return  # the cancellation job ends it at the provider
        if link is None or link.sync_state != SUCCESS or not link.billing_id:
            if ctx.sealed_token is None:
                return  # not at the provider (yet: its sync, ordered first, sends the current state)
            # It carries billing information for the provider subscription: it waits for the sync, never drops it.
            missing: NotReadyToSync | None = NotReadyToSync("the subscription is not at the provider yet")
        else:
            billing_id = link.billing_id
            customer_link = store.link(s, integration.pk, CUSTOMER, sub.paying_customer_pk or sub.customer_pk)
            try:
                plan = _read(s, integration, sub, settings.console_base_url)
            except NotReadyToSync as exc:
                missing = exc
            else:
                missing = None
    if missing is not None:
        _update_failed(db, integration, sub.pk, missing, ctx.attempt)
        raise missing
    customer_id = (customer_link.billing_id if customer_link is not None else None) or plan.customer_billing_id
    assert customer_id is not None
    proration = cast(ProrationBehavior, ctx.payload.get("proration") or "create_prorations")
    provider = provider_for(integration, secret_box(settings.data_dir))
    try:
        extras = subscription_extras(provider, ctx.unseal(), idempotency_key=ctx.idempotency_key)
        promotion = promotion_code_for(ctx.payload, plan.coupon_billing_id)
        changed = provider.update_subscription(
            billing_id, plan.spec(sub, customer_id, proration, extras, promotion), idempotency_key=ctx.idempotency_key
        )
    except Exception as exc:
        _update_failed(db, integration, sub.pk, exc, ctx.attempt)
        raise
    with db.transaction() as s:
        row = store.link(s, integration.pk, SUBSCRIPTION, sub.pk)
        if row is not None:
            details = {k: v for k, v in row.details.items() if k != "updateError"}
            if changed:
                details["updatedAt"] = utcnow().isoformat()
            row.details = details


def _update_failed(db: Database, integration: Integration, sub_pk: int, exc: Exception, attempt: int) -> None:
    """A failing update is shown on the link (`details.updateError`) without touching its sync state:
    the subscription is at the provider (its cancellation must still find it SUCCESS)."""
    with db.transaction() as s:
        row = store.link(s, integration.pk, SUBSCRIPTION, sub_pk)
        if row is not None:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            row.details = {**row.details, "updateError": f"{reason} (attempt {attempt})"}


__all__ = ["subscription_changed", "update_subscription"]
