"""The billing provider interface: what Entitle asks of a provider, in Entitle's terms.

A provider is a thin adapter to one vendor's API. It holds no database state: the orchestration
(`entitle.billing.catalog_sync` and the later slices) loads what to sync, calls the provider from a
job, and records the ids it returns in `billing_links`. Every write a provider makes carries an
idempotency key derived from the job (`JobContext.idempotency_key` plus a suffix per call), so a job
re-run after a crash never creates a second object. Money crosses this interface as exact `Decimal`
minor units, never float.

Implemented: `sync_catalog_entity` (catalog sync), `sync_customer`, `create_subscription`,
`change_subscription` (a plan change kept in place, `entitle.billing.plan_changes`) and
`cancel_subscription` (`entitle.billing.subscription_sync`, which also makes `update_subscription`);
`sync_coupon`, `delete_coupon` (`entitle.billing.coupon_sync`); `ensure_meter`, `report_usage`
(`entitle.billing.usage_sync`); `create_checkout_session`,
`create_portal_session` and `list_invoices` (`entitle.billing.checkout`, `entitle.billing.invoices`: the
only calls made while a request waits). The other operations are declared so the shape of the interface
is settled; they raise `NotImplementedError` naming the later work of issue 4. Which provider serves an
environment, and the none provider, are in `entitle.billing.providers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, Protocol

from entitle.billing.rules import ProviderTier
from entitle.errors import EntitleError, InvalidArgument

Interval = Literal["month", "year"]

# A request that waits for the provider (connecting, attaching a payment method, the portal
# configuration) gives up this soon: the caller gets 503 PROVIDER_UNAVAILABLE and can retry, where a
# job's call (30 s) has nobody waiting on it.
REQUEST_TIMEOUT_SECONDS = 5.0
JOB_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ProviderAccount:
    """The provider account a secret key opens, as connecting reads it."""

    id: str
    name: str | None
    # Permissions Entitle needs that a restricted key lacks (empty for a full secret key).
    missing_permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PaymentMethodDetails:
    """A payment method as the provider holds it: whose it is, and what a customer recognises it by."""

    id: str
    type: str | None  # the contract's CARD, BANK, CASH_APP, PAYPAL; None for a kind it does not name
    customer_billing_id: str | None  # the provider customer it is attached to, if any
    card_brand: str | None = None
    card_last4: str | None = None
    card_exp_month: int | None = None
    card_exp_year: int | None = None

    def as_default(self) -> dict[str, Any]:
        """The customer's `defaultPaymentMethod` (wire names), without the parts the provider did not give."""
        record: dict[str, Any] = {
            "billingId": self.id,
            "type": self.type,
            "cardLast4Digits": self.card_last4,
            "cardExpiryMonth": self.card_exp_month,
            "cardExpiryYear": self.card_exp_year,
            "cardBrand": self.card_brand,
        }
        return {k: v for k, v in record.items() if v is not None}


class ProviderUnavailable(EntitleError):
    """The provider did not answer a request that waits for it (unreachable, timed out, or its own 5xx
    or rate limit): nothing was written; the same request can be sent again."""

    status_code = 503
    code = "PROVIDER_UNAVAILABLE"
    retryable = True
    retry_after_seconds: ClassVar[int] = 5

    def __init__(self, message: str) -> None:
        hint = f"{message}; nothing was written: retry in {self.retry_after_seconds} seconds"
        super().__init__(hint, details={"retryAfterSeconds": self.retry_after_seconds})


class ProviderRefused(InvalidArgument):
    """The provider refused what a request asked of it, for a reason retrying cannot fix (a key it does
    not accept, a missing permission, an object it does not have)."""

    code = "PROVIDER_REFUSED"


class PaymentMethodNotFound(InvalidArgument):
    code = "PAYMENT_METHOD_NOT_FOUND"


class PaymentMethodInUse(InvalidArgument):
    code = "PAYMENT_METHOD_IN_USE"


class MissingPermissions(InvalidArgument):
    code = "PROVIDER_PERMISSIONS_MISSING"


@dataclass(frozen=True)
class PriceSpec:
    """One price of a plan or add-on version, as a provider should bill it."""

    key: str  # stable across versions (the charge id): how a later version finds the price it may reuse
    currency: str  # lowercase ISO 4217
    unit_amount_minor: Decimal  # exact, in the currency's minor units; may be fractional (0.5 cent per call)
    interval: Interval | None  # None: charged once
    nickname: str
    metadata: dict[str, str] = field(default_factory=dict)
    # A usage-based charge: billed by the provider from the usage reported to this meter (no quantity).
    meter: MeterSpec | None = None
    # A tiered price (`unit_amount_minor` is then unused): the tiers and "graduated" | "volume".
    tiers: tuple[ProviderTier, ...] = ()
    tiers_mode: str | None = None
    # A price per block of units: the provider divides the quantity by this and rounds up.
    divide_by: int | None = None


@dataclass(frozen=True)
class CatalogEntity:
    """A plan or add-on version: one product at the provider, one price per supported charge."""

    kind: Literal["PLAN", "ADDON"]
    name: str
    description: str | None
    metadata: dict[str, str]
    prices: tuple[PriceSpec, ...]


@dataclass(frozen=True)
class SyncedPrice:
    billing_id: str
    # What the price was created with, as the provider compares it to decide whether a later version
    # can keep it (provider prices are immutable: a changed amount or interval is a new price).
    fingerprint: dict[str, Any]


@dataclass(frozen=True)
class SyncedCatalogEntity:
    product_id: str
    prices: dict[str, SyncedPrice]  # by PriceSpec.key
    archived: tuple[str, ...] = ()  # provider price ids this sync archived


@dataclass(frozen=True)
class CustomerSpec:
    ref: str
    name: str | None
    email: str | None
    currency: str | None
    metadata: dict[str, str]
    payment_method: str | None = None  # a provider payment method id to attach as the default
    locales: tuple[str, ...] = ()  # the customer's `language` as the provider's locales (rules.stripe_locales)


@dataclass(frozen=True)
class BillingDetails:
    """Billing information passed through to the provider's customer, never kept by Entitle (it travels
    in a sealed job): `passthrough.stripe` of a customer, or the customer part of a subscription's
    `billingInformation`. Addresses use Stripe's keys (`line1`, `postal_code`, ...)."""

    billing_address: dict[str, str] | None = None
    shipping_address: dict[str, str] | None = None
    invoice_name: str | None = None  # the name on invoices (`customerName`)
    invoice_custom_fields: dict[str, str] | None = None
    metadata: dict[str, str] | None = None
    tax_ids: tuple[tuple[str, str], ...] = ()  # (type, value)

    @classmethod
    def of_wire(cls, doc: dict[str, Any]) -> BillingDetails:
        def address(value: Any) -> dict[str, str] | None:
            if not value:
                return None
            return {("postal_code" if k == "postalCode" else k): str(v) for k, v in value.items() if v is not None}

        return cls(
            billing_address=address(doc.get("billingAddress")),
            shipping_address=address(doc.get("shippingAddress")),
            invoice_name=doc.get("customerName"),
            invoice_custom_fields=doc.get("invoiceCustomFields"),
            metadata=doc.get("metadata"),
            tax_ids=tuple((str(t["type"]), str(t["value"])) for t in doc.get("taxIds") or ()),
        )


@dataclass(frozen=True)
class PromotionCode:
    """A provider promotion code, as `appliedCoupon.promotionCode` / `promotionCode` name it."""

    id: str
    code: str
    coupon_billing_id: str
    active: bool
    # Stripe's own limits, checked again (and finally) by Stripe when the code is applied.
    max_redemptions: int | None = None
    times_redeemed: int = 0
    customer_billing_id: str | None = None  # only this provider customer may redeem it

    def exhausted(self) -> bool:
        return self.max_redemptions is not None and self.times_redeemed >= self.max_redemptions


@dataclass(frozen=True)
class SubscriptionItem:
    price_billing_id: str
    quantity: int | None = 1  # None: a metered price (the provider bills the reported usage)
    # A subscription's price override (exact, in the currency's minor units): the provider bills the item
    # at a price of this subscription's own, made from `price_billing_id` with this unit amount.
    override_unit_amount_minor: Decimal | None = None


CollectionMethod = Literal["charge_automatically", "send_invoice"]
DEFAULT_DAYS_UNTIL_DUE = 30  # send_invoice without billingInformation.invoiceDaysUntilDue
ProrationBehavior = Literal["create_prorations", "none", "always_invoice"]


@dataclass(frozen=True)
class SubscriptionSpec:
    ref: str
    customer_billing_id: str
    items: tuple[SubscriptionItem, ...]
    trial_end: datetime | None
    metadata: dict[str, str]
    coupon_billing_id: str | None = None  # the provider coupon applied as the subscription's discount
    # The provider promotion code a request applied (it applies `coupon_billing_id`): sent instead of the
    # coupon, so the provider counts the redemption and enforces the code's own restrictions.
    promotion_code_billing_id: str | None = None
    collection_method: CollectionMethod = "charge_automatically"
    # With send_invoice: given by the request (forwarded, not kept); None leaves the provider's as it is
    # (a new subscription, or one switching to send_invoice, gets DEFAULT_DAYS_UNTIL_DUE).
    days_until_due: int | None = None
    default_payment_method: str | None = None  # with charge_automatically, when the customer has one
    # For an update: how the provider settles a change in the middle of a period.
    proration_behavior: ProrationBehavior = "create_prorations"
    # From the request's `billingInformation`, forwarded and not kept (None: leave the provider's as is).
    tax_rate_ids: tuple[str, ...] | None = None
    extra_metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class PlanChange:
    """What the provider did with a plan change made in place (`BillingProvider.change_subscription`).

    `invoice_id`: the invoice the change made (its prorations, charged now), None when it made none
    (nothing to charge now, or prorations left for the next invoice). `paid`: the change took effect —
    its invoice is paid, sent to be paid on invoice terms, or it had none to pay; False leaves the
    subscription on its old items until that invoice is paid (the provider's pending update)."""

    invoice_id: str | None
    paid: bool


@dataclass(frozen=True)
class CouponSpec:
    """An Entitle coupon as a provider coupon: a percentage, or fixed minor-unit amounts per currency."""

    ref: str  # the provider object's id (derived from the environment and the coupon id)
    name: str
    percent_off: Decimal | None
    amounts_off_minor: dict[str, int]  # lowercase currency -> whole minor units
    duration_in_months: int | None  # None: forever
    metadata: dict[str, str]


@dataclass(frozen=True)
class MeterSpec:
    """A metered feature as a provider meter: events named `event_name`, summed per customer."""

    event_name: str
    display_name: str


@dataclass(frozen=True)
class UsageReport:
    customer_billing_id: str
    meter: str
    value: Decimal
    timestamp: datetime
    identifier: str


@dataclass(frozen=True)
class CheckoutRequest:
    """A hosted checkout that, once paid, creates the provider subscription itself."""

    customer_billing_id: str
    items: tuple[SubscriptionItem, ...]
    success_url: str
    cancel_url: str | None
    metadata: dict[str, str]  # on the session and on the subscription it creates
    allow_promo_codes: bool = False
    collect_tax_id: bool = False
    collect_billing_address: bool = False
    collect_phone_number: bool = False
    client_reference_id: str | None = None
    coupon_billing_id: str | None = None  # the subscription's coupon, applied in the checkout
    promotion_code_billing_id: str | None = None  # the promotion code it came from, applied instead
    expires_at: datetime | None = None  # None: the provider's default


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True)
class InvoiceLine:
    description: str | None
    quantity: Decimal | None
    unit_amount_minor: Decimal | None
    amount_minor: Decimal
    product_ref: str | None  # the Entitle plan or add-on the line bills, when the price says


@dataclass(frozen=True)
class ProviderInvoice:
    """An invoice as the provider reports it; amounts in the currency's minor units."""

    id: str
    number: str | None
    state: Literal["OPEN", "CANCELED", "PAID"]
    currency: str  # lowercase ISO 4217
    issued_at: datetime | None
    due_at: datetime | None
    paid_at: datetime | None
    subtotal_minor: Decimal
    discount_minor: Decimal
    tax_minor: Decimal
    total_minor: Decimal
    lines: tuple[InvoiceLine, ...]
    # The provider's own pages for it (a portal links them; Entitle keeps no copy).
    pdf_url: str | None = None
    hosted_url: str | None = None
    # The latest payment attempt of an open invoice: the customer must act (3-D Secure), or it failed (why).
    requires_action: bool = False
    payment_error: str | None = None


@dataclass(frozen=True)
class CreditInvoiceSpec:
    """The invoice of one paid credit grant: one line, the grant's cost, sent to the customer to pay."""

    customer_billing_id: str
    grant_ref: str  # metadata `entitleCreditGrantId`: how the invoice's webhooks find the grant
    environment_ref: str
    description: str
    amount_minor: int  # the cost in the currency's minor units (exact; never rounded)
    currency: str  # lowercase ISO 4217
    days_until_due: int
    paid_out_of_band: bool  # recorded paid at once, without charging anything
    charge: bool = False  # charged to the customer's default payment method at once (not sent)
    # When an earlier attempt may have made the invoice (a retried job): the grant's creation, before which none
    # was made. The provider looks for it first and carries it on rather than make a second one, as its
    # idempotency keys are forgotten after a while (Stripe: 24 hours). None: the first attempt, nothing to find.
    made_since: datetime | None = None


@dataclass(frozen=True)
class ProviderEvent:
    id: str
    type: str
    data: dict[str, Any]


class InvalidSignature(InvalidArgument):
    """An inbound provider event whose signature does not verify (or that carries none)."""

    code = "INVALID_SIGNATURE"


class BillingProvider(Protocol):
    vendor: str

    def sync_catalog_entity(
        self,
        entity: CatalogEntity,
        previous: SyncedCatalogEntity | None,
        *,
        archive_replaced: bool,
        idempotency_key: str,
    ) -> SyncedCatalogEntity | None:
        """Create or update the product and prices of a version; None when nothing is synced.

        `previous` is what the nearest earlier synced version of the same plan or add-on got: its
        product is reused, a price whose fingerprint is unchanged is reused, and — when
        `archive_replaced` — every previous price not reused is archived (existing provider
        subscriptions keep the prices they have).
        """
        ...

    def sync_customer(self, customer: CustomerSpec, *, existing_id: str | None, idempotency_key: str) -> str | None: ...

    def create_subscription(self, subscription: SubscriptionSpec, *, idempotency_key: str) -> str | None: ...

    def update_subscription(self, billing_id: str, subscription: SubscriptionSpec, *, idempotency_key: str) -> bool:
        """Bring the provider subscription to `subscription` (items, discount, collection, metadata):
        removed items deleted, new ones added, quantities changed. False when it already matched (a
        retry after the change went through writes nothing)."""
        ...

    def change_subscription(
        self, billing_id: str, subscription: SubscriptionSpec, *, at: datetime, idempotency_key: str
    ) -> PlanChange | None:
        """Move the provider subscription's items to `subscription`'s (a plan change kept in place), prorated
        at `at` by `subscription.proration_behavior`; with `always_invoice` the old items stay until the
        change's invoice is paid. Only the items change (the rest follows by `update_subscription`). None
        when the provider subscription has ended (nothing to change: make a new one)."""
        ...

    def cancel_subscription(self, billing_id: str, *, at: datetime | None, idempotency_key: str) -> None: ...

    def report_usage(self, usage: UsageReport, *, idempotency_key: str) -> None:
        """Send one usage event; the provider counts an `identifier` once, however often it is sent."""
        ...

    def reported_usage(
        self, meter_billing_id: str, customer_billing_id: str, since: datetime, until: datetime
    ) -> Decimal:
        """What the provider's meter counted for the customer from `since` to `until` (whole minutes)."""
        ...

    def sync_coupon(self, coupon: CouponSpec, *, idempotency_key: str) -> str | None:
        """Create the provider coupon (reusing one already made with the same id); returns its id."""
        ...

    def delete_coupon(self, billing_id: str, *, idempotency_key: str) -> None:
        """Delete the provider coupon (discounts already applied stay); a missing coupon is a no-op."""
        ...

    def ensure_meter(self, meter: MeterSpec, *, idempotency_key: str) -> str | None:
        """The provider meter for `meter.event_name` (created when there is none); returns its id."""
        ...

    def create_checkout_session(self, checkout: CheckoutRequest, *, idempotency_key: str) -> CheckoutSession:
        """The session's id and the URL to send the customer to."""
        ...

    def create_portal_session(
        self, customer_billing_id: str, return_url: str, *, idempotency_key: str, configuration: str | None = None
    ) -> str:
        """Returns the URL to send the customer to; `configuration`: the portal configuration it uses."""
        ...

    def list_invoices(self, customer_billing_id: str, *, limit: int) -> list[ProviderInvoice]:
        """The customer's invoices at the provider, newest first, at most `limit`."""
        ...

    def handle_event(self, payload: bytes, signature: str | None) -> ProviderEvent | None:
        """Verify and parse an inbound webhook; None for an event Entitle does not act on."""
        ...

    def subscription_status(self, billing_id: str) -> str | None:
        """The provider subscription's status in the provider's words (Stripe: active, trialing,
        incomplete, ...); None when the provider has no such notion."""
        ...

    def create_credit_invoice(
        self, spec: CreditInvoiceSpec, *, idempotency_key: str, still_wanted: Callable[[], bool] | None = None
    ) -> ProviderInvoice:
        """Make, finalize (and, paid out of band, record paid; or, to charge, pay with the customer's default
        payment method) a credit grant's invoice; every call carries a key derived from `idempotency_key`, so
        a retry makes no second invoice and no second charge. A declined or unauthenticated charge is not an
        error: the open invoice says so (`payment_error`, `requires_action`). `still_wanted` is asked just
        before the payment: False (the grant ended meanwhile) leaves the invoice open, unpaid, for its void."""
        ...

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        """Void an open invoice (one already paid or voided is returned as it is)."""
        ...

    def find_credit_invoice(
        self, customer_billing_id: str, environment_ref: str, grant_ref: str, *, made_since: datetime
    ) -> ProviderInvoice | None:
        """The credit grant's invoice at the provider once finalized (made at or after `made_since`), or None: none
        was made, or only a draft, which nobody can pay."""
        ...

    def mark_latest_invoice_paid(self, subscription_billing_id: str, *, idempotency_key: str) -> str:
        """Record the provider subscription's latest invoice as paid outside the provider (a bank transfer):
        no charge is made. Its id; FailedPrecondition when that invoice is not open."""
        ...

    def set_default_payment_method(
        self, customer_billing_id: str, payment_method_id: str, *, idempotency_key: str
    ) -> None:
        """Make a payment method the provider customer's default for invoices."""
        ...

    def check_account(self) -> ProviderAccount:
        """The account the key opens (one call; a restricted key's missing permissions named). Raises
        `ProviderRefused` for a key the provider refuses, `ProviderUnavailable` when it does not answer."""
        ...

    def ensure_portal_configuration(self, existing_id: str | None, metadata: dict[str, str]) -> str | None:
        """Create (or bring `existing_id` back to) the billing-portal configuration Entitle recommends;
        returns its id. Raises like `check_account`."""
        ...

    def payment_method(self, payment_method_id: str) -> PaymentMethodDetails:
        """The payment method as the provider holds it. Raises `PaymentMethodNotFound`, or like
        `check_account`."""
        ...

    def apply_billing_details(self, customer_billing_id: str, details: BillingDetails, *, idempotency_key: str) -> None:
        """Set the provider customer's addresses, invoice name and fields, metadata; add missing tax ids."""
        ...

    def find_promotion_code(self, code: str) -> PromotionCode | None:
        """The promotion code customers type (None when the provider has none by that code)."""
        ...

    def tax_rate_for(self, percentage: Decimal, *, idempotency_key: str) -> str:
        """A provider tax rate (exclusive) of this percentage, reused when one exists; its id."""
        ...


@dataclass(frozen=True)
class SubscriptionExtras:
    """What a request's `billingInformation` sends the provider subscription once, from the job's sealed
    payload (None: not given, the provider's stays as it is)."""

    tax_rate_ids: tuple[str, ...] | None = None
    metadata: dict[str, str] | None = None
    days_until_due: int | None = None


def subscription_extras(
    provider: BillingProvider, sealed: dict[str, Any] | None, *, idempotency_key: str
) -> SubscriptionExtras:
    """A sealed subscription part of `billingInformation` as the provider subscription's tax rates (its
    `taxRateIds`, then one for `taxPercentage`), extra metadata and days until its invoices are due."""
    part = (sealed or {}).get("subscription") or {}
    if not part:
        return SubscriptionExtras()
    rates = [str(r) for r in part.get("taxRateIds") or []]
    if part.get("taxPercentage") is not None:
        rates.append(provider.tax_rate_for(Decimal(str(part["taxPercentage"])), idempotency_key=idempotency_key))
    rate_ids = tuple(rates) if ("taxRateIds" in part or "taxPercentage" in part) else None
    metadata = {str(k)[:40]: str(v)[:500] for k, v in (part.get("metadata") or {}).items()} or None
    days = part.get("invoiceDaysUntilDue")
    return SubscriptionExtras(rate_ids, metadata, int(days) if days is not None else None)
