"""A subscription's billing information, forwarded to the provider and not kept, and its promotion codes.

`billingInformation` of a provisioning or an update: `billingAddress` and `taxIds` go to the provider
customer (a sealed `billing.sync_customer` job, as a customer's `passthrough.stripe` does), `metadata`,
`taxRateIds`, `taxPercentage` and `invoiceDaysUntilDue` to the provider subscription (sealed in its
`billing.sync_subscription` or `billing.update_subscription` job). Refused (400) when nothing can take
them: no integration bills the subscription, or (for the subscription's part) the provider never gets a
subscription for it (free, trial, custom-priced, sync off, a Checkout makes it).

A promotion code is looked up at the provider while the request waits (the answer must be a 400 when it
is unknown, expired, used up or another customer's) — before the provisioning transaction opens
(`prefetch_promotion_code`), so no lock is held meanwhile — and applies the Entitle coupon its provider
coupon was synced from; the provider subscription (or Checkout) gets the code itself, so the provider
counts its redemptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.billing import customer_sync, store
from entitle.billing.checkout import stripe_customer_id
from entitle.billing.models import COUPON, NO_SYNC_REQUIRED, SUBSCRIPTION, BillingLink, Integration
from entitle.billing.provider import BillingProvider, PromotionCode
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.subscription_sync import no_sync_reason
from entitle.catalog.coupons.models import Coupon
from entitle.config import load_settings
from entitle.customers import store as customer_store
from entitle.customers.models import Customer
from entitle.customers.ports import BillingInformationRefused
from entitle.db import Database
from entitle.errors import BillingProviderError, InvalidArgument
from entitle.subscriptions import rules as subscription_rules
from entitle.subscriptions.models import Subscription

FOR_CUSTOMER = ("billingAddress", "taxIds")
FOR_SUBSCRIPTION = ("metadata", "taxRateIds", "taxPercentage", "invoiceDaysUntilDue")


def _part(information: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: information[k] for k in keys if information.get(k) not in (None, [], {})}


def _billing_integration(s: Session, sub: Subscription) -> Integration:
    integration = store.integration_for_subscription(s, sub)
    if integration is None:
        raise BillingInformationRefused(
            f"subscription '{sub.ref_id}' has no billing integration to forward billingInformation to (none is "
            "connected to this environment, or the one billing its customer was removed): it is sent to the "
            "provider and not kept by Entitle"
        )
    return integration


def forward(s: Session, sub: Subscription, information: Mapping[str, Any], *, via_checkout: bool, new: bool) -> None:
    """In the provisioning (`new`) or update transaction, before the subscription's sync is enqueued."""
    for_customer = _part(information, FOR_CUSTOMER)
    for_subscription = _part(information, FOR_SUBSCRIPTION)
    if not for_customer and not for_subscription:
        return
    integration = _billing_integration(s, sub)
    customer = s.get(Customer, sub.paying_customer_pk or sub.customer_pk)
    assert customer is not None
    if for_customer:
        if not integration.sync_customers:
            raise BillingInformationRefused(
                f"integration '{integration.ref_id}' does not sync customers (syncCustomers is false): "
                "billingInformation.billingAddress and taxIds go to the provider's customer and are not kept"
            )
        customer_sync.billing_info_passed(s, customer, integration, for_customer)
    if not for_subscription:
        return
    fields = ", ".join(f"billingInformation.{k}" for k in for_subscription)
    if via_checkout:
        raise InvalidArgument(f"{fields}: a Stripe Checkout makes the provider subscription; they cannot reach it")
    if new:
        reason = no_sync_reason(s, integration, customer, sub)
    else:
        link = store.link(s, integration.pk, SUBSCRIPTION, sub.pk)
        reason = "it was not synced" if link is None else link.reason if link.sync_state == NO_SYNC_REQUIRED else None
    if reason is not None:
        raise InvalidArgument(
            f"{fields}: they go to the provider subscription and are not kept, but subscription '{sub.ref_id}' is "
            f"not billed by the provider ({reason})"
        )
    if "invoiceDaysUntilDue" in for_subscription:  # checked (whole days, INVOICE) by the subscriptions domain
        for_subscription["invoiceDaysUntilDue"] = subscription_rules.days_until_due(information)
    store.stash_sealed(s, sub.pk, for_subscription)


# Promotion codes looked up before the provisioning transaction opened, by (integration pk, code), in
# that transaction's `session.info`: the provider is not called while the transaction holds its locks.
_PREFETCHED = "entitle.billing.prefetched_promotion_codes"


def _lookup(provider: BillingProvider, code: str) -> PromotionCode | None:
    try:
        return provider.find_promotion_code(code)
    except Exception as exc:  # the provider is down or refused us: the request cannot be answered now
        raise BillingProviderError(f"could not look up promotion code '{code}' at the provider: {exc}") from exc


def prefetch_promotion_code(
    db: Database,
    env_id: int,
    customer_ref: str,
    billing_information: Mapping[str, Any] | None,
    code: str,
    *,
    customer_integration: str | None = None,
) -> dict[str, Any]:
    """Before provisioning: look the code up at the integration that will most likely bill the
    subscription (its `integrationId`, else the customer's: `customer_integration` for a customer created in
    the same request), outside any transaction. What it returns goes into the provisioning session's
    `info`; a guess that proves wrong there is looked up again."""
    with db.read() as s:
        named = (billing_information or {}).get("integrationId")
        if not (isinstance(named, str) and named != "STRIPE"):
            named = customer_integration
        integration = store.integration_in(s, env_id, named) if named else None
        if integration is None:
            customer = customer_store.find(s, env_id, customer_ref)
            integration = (
                store.integration_for_customer(s, customer)
                if customer is not None
                else store.default_integration(s, env_id)
            )
        if integration is None:
            return {}
        provider = provider_for(integration, secret_box(load_settings().data_dir))
        key = (integration.pk, code)
    return {_PREFETCHED: {key: _lookup(provider, code)}}


class PromotionCodeRefused(InvalidArgument):
    """A promotion code the provider does not know, or that cannot apply here: what a checkout shows
    beside its promotion code field."""

    code = "PROMOTION_CODE_INVALID"


def _promotion_coupon(
    s: Session, integration: Integration, payer: Customer, env_id: int, code: str
) -> tuple[PromotionCode, str]:
    """The provider's promotion code and the id of the Entitle coupon it applies (400 when the code is
    unknown, inactive, expired, used up or another customer's, or its coupon is not one Entitle synced)."""
    prefetched: dict[tuple[int, str], PromotionCode | None] = s.info.get(_PREFETCHED, {})
    if (integration.pk, code) in prefetched:
        promotion = prefetched[(integration.pk, code)]
    else:
        promotion = _lookup(provider_for(integration, secret_box(load_settings().data_dir)), code)
    if promotion is None:
        raise PromotionCodeRefused(f"promotion code '{code}' does not exist at the billing provider")
    if not promotion.active:
        raise PromotionCodeRefused(f"promotion code '{code}' is expired or inactive")
    if promotion.exhausted():
        raise PromotionCodeRefused(
            f"promotion code '{code}' has been redeemed its maximum number of times ({promotion.max_redemptions})"
        )
    if promotion.customer_billing_id is not None and promotion.customer_billing_id != stripe_customer_id(
        s, integration, payer
    ):
        raise PromotionCodeRefused(f"promotion code '{code}' is for another customer of the billing provider")
    coupon = s.scalars(
        select(Coupon)
        .join(BillingLink, BillingLink.entity_pk == Coupon.pk)
        .where(
            BillingLink.integration_pk == integration.pk,
            BillingLink.entity_kind == COUPON,
            BillingLink.billing_id == promotion.coupon_billing_id,
            Coupon.environment_id == env_id,
        )
    ).first()
    if coupon is None or coupon.status != "ACTIVE":
        raise PromotionCodeRefused(
            f"promotion code '{code}' applies provider coupon '{promotion.coupon_billing_id}', which is not an active "
            "Entitle coupon: create the coupon in Entitle (it is synced to the provider) and the promotion code for it"
        )
    return promotion, coupon.ref_id


def resolve_promotion_code(s: Session, sub: Subscription, code: str) -> str:
    """The Entitle coupon a provider promotion code applies: its coupon's id (400 when the code is unknown,
    inactive or expired, or its coupon is not one Entitle synced)."""
    integration = store.integration_for_subscription(s, sub)
    if integration is None:
        raise BillingInformationRefused(
            f"promotion code '{code}': a promotion code is the billing provider's, and subscription '{sub.ref_id}' "
            "has no billing integration"
        )
    payer = s.get(Customer, sub.paying_customer_pk or sub.customer_pk)
    assert payer is not None
    promotion, coupon_ref = _promotion_coupon(s, integration, payer, sub.environment_id, code)
    # The code itself is applied at the provider (not just its coupon): the provider counts the redemption
    # and has the last word on its restrictions (first-time customers, minimum amounts).
    store.stash_promotion(s, sub.pk, promotion.id, promotion.coupon_billing_id)
    return coupon_ref


def preview_promotion_code(
    s: Session, env_id: int, payer: Customer, billing_information: Mapping[str, Any] | None, code: str
) -> str:
    """The preview's `appliedCoupon.promotionCode`: the Entitle coupon it would apply, checked as
    provisioning checks it (at the integration `integrationId` names, else the payer's), nothing kept."""
    named = (billing_information or {}).get("integrationId")
    integration = (
        store.integration_in(s, env_id, named)
        if isinstance(named, str) and named != "STRIPE"
        else store.integration_for_customer(s, payer)
    )
    if integration is None:
        raise BillingInformationRefused(
            f"promotion code '{code}': a promotion code is the billing provider's, and no billing integration "
            f"bills customer '{payer.ref_id}'"
        )
    return _promotion_coupon(s, integration, payer, env_id, code)[1]
