"""Wire shapes of our integrations extension (not part of the Stigg contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from entitle.billing.invoices import major
from entitle.billing.models import Integration
from entitle.billing.provider import ProviderInvoice
from entitle.customers.schemas import InvoiceLineOut, InvoiceOut
from entitle.sync_states import SyncStateOut

__all__ = ["SyncStateOut"]  # the sync-states endpoint's item, shared with customers and subscriptions
from entitle.http.wire import HttpUrl, WireModel

Secret = Annotated[str, Field(min_length=8, max_length=512, pattern=r"^[A-Za-z0-9_\-]+$")]
PublishableKey = Annotated[str, Field(min_length=8, max_length=255, pattern=r"^pk_(test|live)_[A-Za-z0-9_]+$")]
IntegrationId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class IntegrationIn(WireModel):
    """Connect an environment to a billing provider.

    With `id`: update (or revive, after a removal) that integration of the environment. Without: update
    the integration connected with the same secret key, else connect a new one (a second Stripe account).
    On an update, fields left out keep their stored value (the webhook secret too); `null` clears
    `webhookSecret` and `apiBase`.
    """

    id: IntegrationId | None = None
    vendor_identifier: Literal["STRIPE"]
    api_secret_key: Secret
    # True: this integration becomes the environment's default (bills customers linked to none).
    is_default: bool | None = None
    webhook_secret: Secret | None = None
    # Where the provider's API is reached; only for tests and proxies (https on production environments).
    api_base: HttpUrl | None = None
    sync_customers: bool = True
    sync_subscriptions: bool = True
    tax_enabled: bool = False
    # How long a new paid subscription waits for its first payment before it is cancelled (hours).
    payment_settlement_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 24
    # The account's publishable key (pk_test_/pk_live_, the secret key's mode), handed to the widgets for
    # Stripe.js; left out on an update it is kept, null clears it.
    publishable_key: PublishableKey | None = None


class IntegrationOut(WireModel):
    id: str
    vendor_identifier: str
    secret_key_hint: str
    livemode: bool
    has_webhook_secret: bool
    # Whether it bills the customers linked to no integration (the one marked so, else the first connected).
    is_default: bool
    api_base: str | None = None
    sync_customers: bool
    sync_subscriptions: bool
    tax_enabled: bool
    payment_settlement_hours: int
    publishable_key: str | None = None
    # The provider account the key opens and the portal configuration Entitle keeps there (read on connect).
    account_id: str | None = None
    account_name: str | None = None
    portal_configuration_id: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Integration, *, is_default: bool) -> IntegrationOut:
        return cls(
            id=row.ref_id,
            vendor_identifier=row.vendor,
            secret_key_hint=row.secret_key_hint,
            livemode=row.livemode,
            has_webhook_secret=row.webhook_secret_encrypted is not None,
            is_default=is_default,
            api_base=row.api_base,
            sync_customers=row.sync_customers,
            sync_subscriptions=row.sync_subscriptions,
            tax_enabled=row.tax_enabled,
            payment_settlement_hours=row.payment_settlement_hours,
            publishable_key=row.publishable_key,
            account_id=row.account_id,
            account_name=row.account_name,
            portal_configuration_id=row.portal_configuration_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class StripeEventReceipt(WireModel):
    """What the inbound endpoint did with one delivery of a provider event."""

    id: str
    type: str
    # False: an event type Entitle does not act on (answered 2xx, not stored).
    handled: bool
    # True: this event id was stored before (a redelivery); it is processed once.
    duplicate: bool


EntityType = Literal["PLAN", "ADDON", "CUSTOMER", "SUBSCRIPTION", "COUPON"]


def invoice_out(customer_ref: str, invoice: ProviderInvoice) -> InvoiceOut:
    """A provider invoice as the contract's `GET /api/v1/customers/{id}/invoices` item (amounts in major
    units); the widgets' portal adds its PDF links to it."""
    return InvoiceOut(
        invoice_id=invoice.id,
        state=invoice.state,
        line_items=[
            InvoiceLineOut(
                amount=major(line.amount_minor, invoice.currency),
                description=line.description,
                product_external_id=line.product_ref,
                quantity=line.quantity,
                unit_price=major(line.unit_amount_minor, invoice.currency)
                if line.unit_amount_minor is not None
                else None,
            )
            for line in invoice.lines
        ],
        invoice_number=invoice.number,
        invoice_external_id=invoice.id,
        customer_external_id=customer_ref,
        currency=invoice.currency.upper() or None,
        issue_date=invoice.issued_at,
        due_date=invoice.due_at,
        paid_date=invoice.paid_at,
        subtotal=major(invoice.subtotal_minor, invoice.currency),
        discount=major(invoice.discount_minor, invoice.currency),
        tax=major(invoice.tax_minor, invoice.currency),
        total=major(invoice.total_minor, invoice.currency),
    )
