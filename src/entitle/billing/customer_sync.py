"""Customer sync on its own: a customer is synced when billing information or a payment method is passed.

The subscription sync makes a Stripe customer for a customer's first paid subscription. A customer is
also synced — before any subscription — when the application passes billing information
(`passthrough.stripe`, on create or update) or a payment method (`POST /api/v1/customers/{id}/payment-method`):
that is how the Stripe Elements flow starts (the application reads the customer's `billingId`, creates
a SetupIntent for it, and the card lands on that Stripe customer). A `defaultPaymentMethod` given when
the customer is created is kept and attached by the subscription sync when it makes the Stripe
customer; it does not sync the customer on its own.

`billing_info_passed` runs in the customer's transaction and enqueues one `billing.sync_customer` job
(ordered with the customer's subscription jobs); the job creates the Stripe customer (or refreshes it
and makes the payment method its default) with the job's idempotency key, and records the link and the
customer's `billingId`.

Billing information (addresses, tax ids, invoice name and fields, provider metadata) is forwarded and
forgotten: `forward_billing_information` (the customers domain's `ports.billing_information`) puts it
in the job's sealed payload — encrypted at rest, erased once the job succeeds or an operator discards it
(a DEAD job keeps it for `jobs retry`) — and nowhere else. With no integration able to take it, it is
refused (400 BILLING_INTEGRATION_REQUIRED).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from entitle.billing import store
from entitle.billing.customer_links import customer_spec, link_customer
from entitle.billing.models import CUSTOMER, ERROR, PENDING, SUCCESS, Integration
from entitle.billing.provider import BillingDetails
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.subscription_sync import _ordering_key
from entitle.config import load_settings
from entitle.customers.models import Customer
from entitle.customers.ports import BillingInformationRefused
from entitle.db import Database
from entitle.jobs.service import JobContext, enqueue, register

SYNC_CUSTOMER_JOB = "billing.sync_customer"
# session.info: the (integration, customer) pairs this transaction has enqueued a customer sync for.
_SYNCING = "billing.customers_syncing"


def billing_info_passed(
    session: Session,
    customer: Customer,
    integration: Integration | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Hook: billing information or a payment method was passed for `customer`; sync it when the
    integration billing it (`integration`, else `store.integration_for_customer`) syncs customers.
    `details` (wire `passthrough.stripe`) travel sealed in the job."""
    if integration is None:
        integration = store.integration_for_customer(session, customer)
    if integration is None or not integration.sync_customers:
        return
    session.flush()
    store.put_link(session, integration, CUSTOMER, customer.pk, PENDING)
    session.info.setdefault(_SYNCING, set()).add((integration.pk, customer.pk))
    enqueue(
        session,
        customer.environment_id,
        SYNC_CUSTOMER_JOB,
        {"integrationPk": integration.pk, "customerPk": customer.pk},
        ordering_key=_ordering_key(integration, customer.pk),
        sealed={"billingDetails": details} if details else None,
    )


def forward_billing_information(session: Session, customer: Customer, details: dict[str, Any]) -> None:
    """`customers.ports.billing_information`: to the integration billing the customer, or a 400."""
    integration = store.integration_for_customer(session, customer)
    if integration is None:
        raise BillingInformationRefused(
            f"customer '{customer.ref_id}' has no billing integration to forward billing information to (none is "
            "connected to this environment, or the one billing it was removed): billing information is sent to the "
            "provider and not kept by Entitle"
        )
    if not integration.sync_customers:
        raise BillingInformationRefused(
            f"integration '{integration.ref_id}' does not sync customers (syncCustomers is false): billing "
            "information is sent to the provider's customer and not kept by Entitle"
        )
    billing_info_passed(session, customer, integration, details)


def contact_changed(session: Session, customer: Customer, changed: frozenset[str]) -> None:
    """Hook: the customer's name, email or language changed. A customer already at the provider is sent
    them (a customer not there yet gets them when its first sync creates it)."""
    if not changed:
        return
    integration = store.integration_for_customer(session, customer)
    if integration is None or not integration.sync_customers:
        return
    if (integration.pk, customer.pk) in session.info.get(_SYNCING, ()):
        return  # a sync this transaction enqueued reads the customer when it runs: it sends them
    link = store.link(session, integration.pk, CUSTOMER, customer.pk)
    if (link is None or not link.billing_id) and not customer.billing_id:
        return
    billing_info_passed(session, customer, integration)


@register(SYNC_CUSTOMER_JOB)
def sync_customer(db: Database, ctx: JobContext) -> None:
    settings = load_settings()
    with db.read() as s:
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        customer = s.get(Customer, int(ctx.payload["customerPk"]))
        if integration is None or customer is None or integration.environment_id != ctx.environment_id:
            return
        if customer.archived_at is not None:
            return
        link = store.link(s, integration.pk, CUSTOMER, customer.pk)
        existing = (link.billing_id if link is not None else None) or customer.billing_id
        spec = customer_spec(s, customer, settings.console_base_url)
    provider = provider_for(integration, secret_box(settings.data_dir))
    try:
        sealed = ctx.unseal() or {}
        customer_id = provider.sync_customer(spec, existing_id=existing, idempotency_key=ctx.idempotency_key)
        if customer_id is None:
            raise RuntimeError("the provider did not create a customer")
        if sealed.get("billingDetails"):
            details = BillingDetails.of_wire(sealed["billingDetails"])
            provider.apply_billing_details(customer_id, details, idempotency_key=ctx.idempotency_key)
        if spec.payment_method and (existing is not None or sealed.get("billingDetails")):
            # Made the default again after the details: their invoice settings must not displace it.
            provider.set_default_payment_method(customer_id, spec.payment_method, idempotency_key=ctx.idempotency_key)
    except Exception as exc:
        with db.transaction() as s:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            store.put_link(s, integration, CUSTOMER, customer.pk, ERROR, reason=f"{reason} (attempt {ctx.attempt})")
        raise
    with db.transaction() as s:
        link_customer(s, integration, customer.pk, customer_id)
        row = store.link(s, integration.pk, CUSTOMER, customer.pk)
        assert row is not None and row.sync_state == SUCCESS


__all__ = [
    "SYNC_CUSTOMER_JOB",
    "billing_info_passed",
    "contact_changed",
    "customer_spec",
    "forward_billing_information",
    "sync_customer",
]
