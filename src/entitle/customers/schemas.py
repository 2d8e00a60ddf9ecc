"""Customer wire shapes (stigg/types/v1/customer_*.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field

from entitle.customers.models import Customer, CustomerIntegration
from entitle.http.wire import Amount, HttpUrl, Metadata, RefId, ShortText, Unsupported, WireModel, unsupported_values
from entitle.money import Currency
from entitle.sync_states import SyncState, SyncStateOut

# Deliberately loose: an address the billing provider will accept, not RFC 5322 in full.
Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")]

VendorIdentifier = Literal[
    "AUTH0",
    "ZUORA",
    "STRIPE",
    "HUBSPOT",
    "AWS_MARKETPLACE",
    "SNOWFLAKE",
    "SALESFORCE",
    "BIG_QUERY",
    "OPEN_FGA",
    "APP_STORE",
    "RECEIVED",
    "PREQUEL",
    "AIRWALLEX",
    "STRIPE_INVOICING",
]
LinkableVendor = Literal["STRIPE", "ZUORA", "HUBSPOT", "AWS_MARKETPLACE"]
LINKABLE_VENDORS: tuple[str, ...] = ("STRIPE", "ZUORA", "HUBSPOT", "AWS_MARKETPLACE")
# Entitle bills through Stripe only: a link to another vendor's record would sync nothing.
_OTHER_VENDORS = unsupported_values(*(v for v in get_args(VendorIdentifier) if v != "STRIPE"))


class Address(WireModel):
    city: ShortText | None = None
    country: ShortText | None = None
    line1: ShortText | None = None
    line2: ShortText | None = None
    postal_code: ShortText | None = None
    state: ShortText | None = None


class TaxId(WireModel):
    type: ShortText
    value: ShortText


class StripePassthrough(WireModel):
    """Billing information for the Stripe customer: forwarded to Stripe through a sealed job and never
    kept by Entitle (docs/stripe.md, "Billing information"). The payment method also becomes the
    customer's `defaultPaymentMethod`."""

    billing_address: Address | None = None
    shipping_address: Address | None = None
    customer_name: ShortText | None = None
    invoice_custom_fields: Metadata | None = None
    metadata: Metadata | None = None
    payment_method_id: ShortText | None = None
    tax_ids: list[TaxId] | None = Field(default=None, max_length=25)

    def forwarded(self) -> dict[str, Any]:
        """What travels to the provider, by wire names."""
        return self.model_dump(by_alias=True, exclude_none=True)


class ZuoraPassthrough(WireModel):
    billing_address: Address | None = None
    currency: Currency | None = None
    metadata: Metadata | None = None
    payment_method_id: ShortText | None = None


class Passthrough(WireModel):
    stripe: StripePassthrough | None = None
    zuora: Unsupported[ZuoraPassthrough] = None  # Entitle has no Zuora integration


class PaymentMethodIn(WireModel):
    billing_id: ShortText | None = None
    card_expiry_month: int | None = Field(default=None, ge=1, le=12)
    card_expiry_year: int | None = Field(default=None, ge=1900, le=9999)
    card_last4_digits: ShortText | None = None
    type: Literal["CARD", "BANK", "CASH_APP", "PAYPAL"] | None = None


class PaymentMethodOut(PaymentMethodIn):
    card_brand: str | None = None
    wallet_type: str | None = None


class IntegrationLink(WireModel):
    """A customer's link to a billing integration: `id` names the Entitle integration that bills it and
    `syncedEntityId` its customer there (a Stripe customer id, kept as the customer's `billingId`)."""

    id: RefId
    vendor_identifier: Annotated[VendorIdentifier, _OTHER_VENDORS]
    synced_entity_id: ShortText | None = None


class LinkBody(WireModel):
    """Linking endpoints accept only the vendors the contract lists for them."""

    id: RefId
    vendor_identifier: Annotated[LinkableVendor, _OTHER_VENDORS]
    synced_entity_id: ShortText | None = None


class LinkUpdate(WireModel):
    synced_entity_id: ShortText | None = None


class CustomerFields(WireModel):
    """Fields shared by provision and update."""

    name: ShortText | None = None
    email: Email | None = None
    billing_id: ShortText | None = None
    # Prices have one currency per country, and the provider customer takes it from its first subscription.
    billing_currency: Unsupported[Currency] = None
    # A customer-level coupon is not applied to its subscriptions; "" (no coupon, as the contract allows) is fine.
    coupon_id: Annotated[Unsupported[ShortText], BeforeValidator(lambda value: value or None)] = None
    language: ShortText | None = Field(default=None, max_length=64)
    timezone: ShortText | None = Field(default=None, max_length=64)
    metadata: Metadata | None = None
    integrations: list[IntegrationLink] | None = Field(default=None, max_length=20)
    passthrough: Passthrough | None = None
    # Our extension (Stigg's `shouldSyncFree`): make the customer at the billing provider now, even with
    # no paid subscription to bill.
    should_sync_free: bool | None = None


class CustomerProvision(CustomerFields):
    id: RefId
    default_payment_method: PaymentMethodIn | None = None


class CustomerUpdate(CustomerFields):
    pass


class ImportedCustomer(WireModel):
    id: RefId
    email: Email | None = None
    name: ShortText | None = None
    billing_id: ShortText | None = None
    metadata: Metadata | None = None
    payment_method_id: Unsupported[ShortText] = None
    salesforce_id: Unsupported[ShortText] = None
    updated_at: Unsupported[datetime] = None


class CustomerImport(WireModel):
    customers: list[ImportedCustomer] = Field(min_length=1, max_length=1000)
    integration_id: Unsupported[RefId] = None


class ImportResult(WireModel):
    new_customers: list[str]


class CustomerIntegrationOut(WireModel):
    id: str
    vendor_identifier: str
    synced_entity_id: str | None = None

    @classmethod
    def of(cls, link: CustomerIntegration) -> CustomerIntegrationOut:
        return cls(
            id=link.integration_id, vendor_identifier=link.vendor_identifier, synced_entity_id=link.synced_entity_id
        )


class CustomerOut(WireModel):
    id: str
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None
    name: str | None = None
    email: str | None = None
    billing_id: str | None = None
    billing_currency: str | None = None
    coupon_id: str | None = None
    language: str | None = None
    timezone: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    default_payment_method: PaymentMethodOut | None = None
    integrations: list[CustomerIntegrationOut] = Field(default_factory=list)
    # Always null: billing information goes to the provider and is not kept (docs/stripe.md).
    passthrough: dict[str, Any] | None = None
    # Our extension: its sync with each billing integration (state, provider id, error or reason).
    sync_states: list[SyncStateOut] = Field(default_factory=list)

    @classmethod
    def of(
        cls, c: Customer, links: list[CustomerIntegration] | None = None, sync_states: list[SyncState] | None = None
    ) -> CustomerOut:
        states = sync_states or []
        return cls.model_validate(
            {
                "id": c.ref_id,
                "created_at": c.created_at,
                "updated_at": c.updated_at,
                "archived_at": c.archived_at,
                "name": c.name,
                "email": c.email,
                "billing_id": c.billing_id,
                "billing_currency": c.billing_currency,
                "coupon_id": c.coupon_ref,
                "language": c.language,
                "timezone": c.timezone,
                "metadata": c.metadata_ or {},
                "default_payment_method": c.default_payment_method,
                "integrations": _integrations(links or [], states),
                "passthrough": None,
                "sync_states": [SyncStateOut.of(state, c.ref_id) for state in states],
            }
        )


def _integrations(links: list[CustomerIntegration], states: list[SyncState]) -> list[CustomerIntegrationOut]:
    """The customer's integration links, and where a billing integration synced it (`{id: <integration
    id>, vendorIdentifier: STRIPE, syncedEntityId: cus_...}`), so a client sees where the customer lives."""
    out = [CustomerIntegrationOut.of(link) for link in links]
    by_id = {item.id: item for item in out}
    for state in states:
        if state.status != "SUCCESS" or not state.billing_id:
            continue
        shown = by_id.get(state.integration_id)
        if shown is None:
            shown = CustomerIntegrationOut(id=state.integration_id, vendor_identifier=state.vendor_identifier)
            by_id[shown.id] = shown
            out.append(shown)
        if shown.synced_entity_id is None:
            shown.synced_entity_id = state.billing_id
    return out


# -- billing: payment method, portal and invoices ----------------------------------------------------


class PaymentMethodAttach(WireModel):
    """`POST /api/v1/customers/{id}/payment-method`: the application collected a card itself (Elements)."""

    integration_id: ShortText
    payment_method_id: ShortText
    vendor_identifier: VendorIdentifier
    billing_currency: Unsupported[Currency] = None


class PortalSessionIn(WireModel):
    """Our extension: `POST /api/v1/customers/{id}/portal-session`."""

    return_url: HttpUrl


class PortalSessionOut(WireModel):
    url: str


class InvoiceLineOut(WireModel):
    amount: Amount | None = None
    description: str | None = None
    product_external_id: str | None = None
    quantity: Amount | None = None
    unit_price: Amount | None = None


class InvoiceOut(WireModel):
    """stigg/types/v1/customer_list_invoices_response.py"""

    invoice_id: str
    state: Literal["OPEN", "CANCELED", "PAID"]
    line_items: list[InvoiceLineOut]
    invoice_number: str | None = None
    invoice_external_id: str | None = None
    customer_external_id: str | None = None
    contract_external_id: str | None = None
    currency: str | None = None
    issue_date: datetime | None = None
    due_date: datetime | None = None
    paid_date: datetime | None = None
    subtotal: Amount | None = None
    discount: Amount | None = None
    tax: Amount | None = None
    total: Amount | None = None
