"""Which provider serves an environment: the one its integration names (its secrets decrypted here, the
only place they are), or the none provider without one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from entitle.billing.models import STRIPE, Integration
from entitle.billing.provider import (
    JOB_TIMEOUT_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    BillingDetails,
    BillingProvider,
    CatalogEntity,
    CheckoutRequest,
    CheckoutSession,
    CouponSpec,
    CreditInvoiceSpec,
    CustomerSpec,
    MeterSpec,
    PaymentMethodDetails,
    PlanChange,
    PromotionCode,
    ProviderAccount,
    ProviderEvent,
    ProviderInvoice,
    SubscriptionSpec,
    SyncedCatalogEntity,
    UsageReport,
)
from entitle.billing.secrets import SecretBox
from entitle.errors import FailedPrecondition


def later(operation: str, slice_name: str) -> NotImplementedError:
    return NotImplementedError(
        f"{operation} is not implemented yet: it is the {slice_name} work of issue 4 (billing orchestration)"
    )


class NoneProvider:
    """No billing provider: nothing is synced and nothing waits for money (the default)."""

    vendor = "NONE"

    def sync_catalog_entity(
        self,
        entity: CatalogEntity,
        previous: SyncedCatalogEntity | None,
        *,
        archive_replaced: bool,
        idempotency_key: str,
    ) -> SyncedCatalogEntity | None:
        return None

    def sync_customer(self, customer: CustomerSpec, *, existing_id: str | None, idempotency_key: str) -> str | None:
        return None

    def create_subscription(self, subscription: SubscriptionSpec, *, idempotency_key: str) -> str | None:
        return None

    def update_subscription(self, billing_id: str, subscription: SubscriptionSpec, *, idempotency_key: str) -> bool:
        return False

    def change_subscription(
        self, billing_id: str, subscription: SubscriptionSpec, *, at: datetime, idempotency_key: str
    ) -> PlanChange | None:
        return None

    def cancel_subscription(self, billing_id: str, *, at: datetime | None, idempotency_key: str) -> None:
        return None

    def report_usage(self, usage: UsageReport, *, idempotency_key: str) -> None:
        return None

    def reported_usage(
        self, meter_billing_id: str, customer_billing_id: str, since: datetime, until: datetime
    ) -> Decimal:
        return Decimal(0)

    def sync_coupon(self, coupon: CouponSpec, *, idempotency_key: str) -> str | None:
        return None

    def delete_coupon(self, billing_id: str, *, idempotency_key: str) -> None:
        return None

    def ensure_meter(self, meter: MeterSpec, *, idempotency_key: str) -> str | None:
        return None

    def create_checkout_session(self, checkout: CheckoutRequest, *, idempotency_key: str) -> CheckoutSession:
        raise FailedPrecondition("checkout needs a billing provider: connect one with POST /api/v1/integrations")

    def create_portal_session(
        self, customer_billing_id: str, return_url: str, *, idempotency_key: str, configuration: str | None = None
    ) -> str:
        raise FailedPrecondition(
            "a billing portal needs a billing provider: connect one with POST /api/v1/integrations"
        )

    def handle_event(self, payload: bytes, signature: str | None) -> ProviderEvent | None:
        raise FailedPrecondition("no billing provider is connected to receive events")

    def subscription_status(self, billing_id: str) -> str | None:
        return None

    def mark_latest_invoice_paid(self, subscription_billing_id: str, *, idempotency_key: str) -> str:
        raise FailedPrecondition("no billing provider is connected: there is no invoice to mark paid")

    def create_credit_invoice(
        self, spec: CreditInvoiceSpec, *, idempotency_key: str, still_wanted: Callable[[], bool] | None = None
    ) -> ProviderInvoice:
        raise FailedPrecondition("no billing provider is connected: a credit grant cannot be invoiced")

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        raise FailedPrecondition("no billing provider is connected: there is no invoice to void")

    def find_credit_invoice(
        self, customer_billing_id: str, environment_ref: str, grant_ref: str, *, made_since: datetime
    ) -> ProviderInvoice | None:
        return None

    def set_default_payment_method(
        self, customer_billing_id: str, payment_method_id: str, *, idempotency_key: str
    ) -> None:
        return None

    def apply_billing_details(self, customer_billing_id: str, details: BillingDetails, *, idempotency_key: str) -> None:
        return None

    def find_promotion_code(self, code: str) -> PromotionCode | None:
        return None

    def tax_rate_for(self, percentage: Decimal, *, idempotency_key: str) -> str:
        raise later("tax rates", "none provider")

    def list_invoices(self, customer_billing_id: str, *, limit: int) -> list[ProviderInvoice]:
        return []

    def check_account(self) -> ProviderAccount:
        raise FailedPrecondition("no billing provider is connected")

    def ensure_portal_configuration(self, existing_id: str | None, metadata: dict[str, str]) -> str | None:
        return None

    def payment_method(self, payment_method_id: str) -> PaymentMethodDetails:
        raise FailedPrecondition("no billing provider is connected")


def provider_for_key(vendor: str, secret_key: str, api_base: str | None) -> BillingProvider:
    """A provider for a key not stored yet (connecting checks it first), with the short request timeout."""
    if vendor != STRIPE:
        raise FailedPrecondition(f"billing vendor '{vendor}' is not supported")
    from entitle.billing.stripe_provider import StripeProvider

    return StripeProvider(secret_key, api_base=api_base, timeout=REQUEST_TIMEOUT_SECONDS)


def is_permanent_provider_error(exc: BaseException) -> bool:
    """Whether a job's provider error is one retrying cannot fix (the job is then dead at once)."""
    if type(exc).__module__.split(".")[0] != "stripe":
        return False
    from entitle.billing.stripe_support import is_permanent

    return is_permanent(exc)


def provider_for(integration: Integration | None, box: SecretBox, *, timeout: float | None = None) -> BillingProvider:
    """The provider of an environment's integration (the none provider without one)."""
    if integration is None:
        return NoneProvider()
    if integration.removed_at is not None:
        raise FailedPrecondition(f"the {integration.vendor} integration {integration.ref_id} was removed")
    if integration.vendor == STRIPE:
        from entitle.billing.stripe_provider import StripeProvider  # imports the SDK only when needed

        webhook = box.decrypt(integration.webhook_secret_encrypted) if integration.webhook_secret_encrypted else None
        return StripeProvider(
            box.decrypt(integration.secret_key_encrypted),
            api_base=integration.api_base,
            webhook_secret=webhook,
            automatic_tax=integration.tax_enabled,
            timeout=timeout if timeout is not None else JOB_TIMEOUT_SECONDS,
        )
    raise FailedPrecondition(f"billing vendor '{integration.vendor}' is not supported")
