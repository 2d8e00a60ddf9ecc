"""What the credits domain asks the billing adapter above it (installed by `entitle.wiring`).

- `paid_grants`: a PAID grant collected through the billing provider (`paymentCollectionMethod` INVOICE, or
  CHARGE: the invoice is charged to the customer's default payment method at once).
  `request_invoice` runs in the transaction that writes the grant: it refuses a customer no billing
  integration bills (400 BILLING_INTEGRATION_REQUIRED, nothing written) and enqueues the durable job that
  makes the invoice (the outbox: the job exists if and only if the grant does). `invoice_now` is asked after
  that transaction commits, while the request waits (`awaitPaymentConfirmation`): it makes the invoice at
  once when it can (the same work as the job, with the same provider idempotency keys, so the job then
  finds it made); it never raises for the provider's failures — the job retries them — and says whether
  the invoice was made. `cancel_invoice` runs in the transaction that voids (or expires) a grant still
  waiting for its payment, and in the one that records an open invoice of a grant that ended meanwhile
  (`paid._reported`): the invoice nobody should pay any more is voided at the provider (by a job, after the
  invoicing; one per invoice, so the second asking, with the invoice now known, is not lost to the first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from entitle.credits.models import CreditGrant
from entitle.customers.models import Customer
from entitle.customers.ports import BillingInformationRefused
from entitle.db import Database
from entitle.domain_events import Port


@dataclass(frozen=True)
class InvoiceTerms:
    """What the invoice of a grant is made with (from the request's `billingInformation`)."""

    days_until_due: int | None  # None: the integration's default for sent invoices
    paid_out_of_band: bool  # `isInvoicePaid`: recorded paid at once (a bank transfer, a cheque); no charge
    billing_address: dict[str, Any] | None  # forwarded to the provider's customer, never kept
    charge: bool = False  # CHARGE: the customer's default payment method is charged at once (no invoice sent)
    awaited: bool = False  # the request will ask `invoice_now` (awaitPaymentConfirmation): the job is its fallback


class PaidGrantBilling(Protocol):
    def request_invoice(self, s: Session, customer: Customer, grant: CreditGrant, terms: InvoiceTerms) -> bool:
        """Enqueue the grant's invoicing in the caller's transaction; True when `invoice_now` may make it
        during the request (the customer is already at the provider and nothing must reach it first)."""
        ...

    def invoice_now(self, db: Database, env_id: int, grant_pk: int) -> bool: ...

    def cancel_invoice(self, s: Session, customer: Customer, grant: CreditGrant) -> None: ...


class _NoBilling:
    def request_invoice(self, s: Session, customer: Customer, grant: CreditGrant, terms: InvoiceTerms) -> bool:
        raise BillingInformationRefused(
            "paymentCollectionMethod INVOICE or CHARGE collects the grant's cost through a billing integration, and no "
            "billing integration is connected to this environment: connect one (POST /api/v1/integrations) first"
        )

    def invoice_now(self, db: Database, env_id: int, grant_pk: int) -> bool:
        return False

    def cancel_invoice(self, s: Session, customer: Customer, grant: CreditGrant) -> None:
        return None


paid_grants: Port[PaidGrantBilling] = Port("credits.paid_grants", default=_NoBilling())
