"""Paid credit grants invoiced through the billing provider (docs/credits.md, "Paid grants"; docs/stripe.md).

The credits domain writes an invoiced grant PAYMENT_PENDING and asks this adapter, through its
`paid_grants` port (`PaidGrants`), in the same transaction:

- `request_invoice` refuses a customer no integration bills (400 BILLING_INTEGRATION_REQUIRED), or one
  without an email to send the invoice to (400 CUSTOMER_EMAIL_REQUIRED), and enqueues
  `billing.invoice_credit_grant`, ordered after the customer's own sync (a customer not at Stripe yet is
  made there first; a `billingAddress` reaches the Stripe customer first);
- `invoice_now`, after that transaction committed and while the request waits, does the job's work when the
  customer is already at Stripe: the job then finds the invoice made. Both send Stripe keys derived from the
  grant (`_key`), so whichever runs (or retries) makes one invoice.

The invoice's later life comes back through the Stripe webhooks, stored once and processed as jobs
(`inbound.process_event` hands an invoice carrying `entitleCreditGrantId` here, `handle_event`):
`invoice.paid` starts the grant, `invoice.voided` / `invoice.marked_uncollectible` void a grant still
waiting, `invoice.payment_failed` / `invoice.overdue` mark its collection FAILED. Each re-reads the grant
under its wallet's lock (`credits.paid`), so a webhook delivered twice grants nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from entitle.billing import rules, store
from entitle.billing.customer_sync import billing_info_passed
from entitle.billing.models import CUSTOMER, IGNORED, PROCESSED, Integration
from entitle.billing.provider import DEFAULT_DAYS_UNTIL_DUE, REQUEST_TIMEOUT_SECONDS, CreditInvoiceSpec, ProviderInvoice
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.billing.subscription_sync import _ordering_key
from entitle.clock import as_utc, utcnow
from entitle.config import load_settings
from entitle.credits import paid
from entitle.credits.models import CreditGrant, Wallet
from entitle.credits.ports import InvoiceTerms, paid_grants
from entitle.customers.models import Customer
from entitle.customers.ports import BillingInformationRefused
from entitle.db import Database
from entitle.environments.models import Environment
from entitle.errors import InvalidArgument
from entitle.jobs.service import JobContext, enqueue, register
from entitle.money import minor_unit_exponent

log = logging.getLogger("entitle.billing")

INVOICE_CREDIT_GRANT_JOB = "billing.invoice_credit_grant"
VOID_CREDIT_INVOICE_JOB = "billing.void_credit_invoice"
GRANT_METADATA = "entitleCreditGrantId"
INLINE_GRACE = timedelta(minutes=1)  # a request's few Stripe calls (REQUEST_TIMEOUT_SECONDS each) end well before


class PaymentMethodRequired(InvalidArgument):
    code = "PAYMENT_METHOD_REQUIRED"


class CustomerNotAtProvider(RuntimeError):
    """The customer's own sync has not made it at the provider yet (the job retries after it)."""


class PaidGrants:
    """`credits.ports.paid_grants`."""

    def request_invoice(self, s: Session, customer: Customer, grant: CreditGrant, terms: InvoiceTerms) -> bool:
        integration = store.integration_for_customer(s, customer)
        if integration is None:
            raise BillingInformationRefused(
                f"paymentCollectionMethod INVOICE: customer '{customer.ref_id}' has no billing integration to send "
                "the grant's invoice through (none is connected to this environment, or the one billing it was "
                "removed): connect one (POST /api/v1/integrations), or grant with paymentCollectionMethod NONE"
            )
        if not integration.sync_customers:
            raise BillingInformationRefused(
                f"paymentCollectionMethod INVOICE: integration '{integration.ref_id}' does not sync customers "
                "(syncCustomers is false), so it has no customer to invoice"
            )
        if terms.charge:
            if not customer.default_payment_method:
                raise PaymentMethodRequired(
                    f"paymentCollectionMethod CHARGE charges customer '{customer.ref_id}'s default payment method, "
                    "and it has none: give one (defaultPaymentMethod on the customer), or invoice the grant "
                    "(paymentCollectionMethod INVOICE)"
                )
        else:
            rules.check_invoice_recipient("INVOICE", "PAID", customer.email)
        link = store.link(s, integration.pk, CUSTOMER, customer.pk)
        at_provider = bool((link.billing_id if link is not None else None) or customer.billing_id)
        if terms.billing_address or not at_provider:
            address = {"billingAddress": terms.billing_address} if terms.billing_address else None
            billing_info_passed(s, customer, integration, address)  # a customer sync, ordered before the job
        now = at_provider and not terms.billing_address
        enqueue(
            s,
            customer.environment_id,
            INVOICE_CREDIT_GRANT_JOB,
            {"integrationPk": integration.pk, "grantPk": grant.pk},
            # The request does it while it waits: the job is the fallback, due once that had time to finish. (Were
            # they to overlap, both send the same keys: Stripe refuses the second while the first runs, and the job
            # retries and finds the invoice made.)
            run_at=utcnow() + INLINE_GRACE if now and terms.awaited else None,
            # After the customer's sync when one goes first; else in no order, so a job not due yet holds up
            # none of the customer's other billing work.
            ordering_key=None if now else _ordering_key(integration, customer.pk),
            dedupe_key=f"credit-invoice:{grant.pk}",
        )
        return now

    def cancel_invoice(self, s: Session, customer: Customer, grant: CreditGrant) -> None:
        integration = store.integration_for_customer(s, customer)
        if integration is None:
            return  # removed meanwhile: its invoices are the provider account's
        enqueue(
            s,
            customer.environment_id,
            VOID_CREDIT_INVOICE_JOB,
            {"integrationPk": integration.pk, "grantPk": grant.pk, "invoiceRef": grant.invoice_ref},
            ordering_key=_ordering_key(integration, customer.pk),  # after the invoicing, if it is still to run
            # One per invoice: a void that found no invoice yet (its job done, nothing to reach) does not keep
            # the invoice recorded after it (`paid._reported` asks again) from being voided.
            dedupe_key=f"credit-invoice-void:{grant.pk}:{grant.invoice_ref or ''}",
        )

    def invoice_now(self, db: Database, env_id: int, grant_pk: int) -> bool:
        try:
            return _invoice(db, env_id, grant_pk, timeout=REQUEST_TIMEOUT_SECONDS, first=True)
        except Exception:  # the job retries it; the answer says PAYMENT_PENDING meanwhile
            log.warning(
                "invoicing credit grant %s while the request waited failed; the job retries", grant_pk, exc_info=True
            )
            return False


def _key(env_id: int, grant_pk: int, grant_ref: str) -> str:
    return f"entitle-credit-grant-{env_id}-{grant_pk}-{grant_ref}"


@dataclass(frozen=True)
class _Reach:
    """How a grant's customer is reached at the provider."""

    integration: Integration | None  # None: no integration bills it (any more)
    billing_id: str | None  # None: not at the provider (yet)
    env_name: str
    customer_ref: str


def _reach(s: Session, env_id: int, wallet_pk: int, integration: Integration | None = None) -> _Reach | None:
    """The customer of a wallet at `integration` (default: the one billing it); None: customer deleted."""
    wallet = s.get(Wallet, wallet_pk)
    customer = s.get(Customer, wallet.customer_pk) if wallet is not None else None
    env = s.get(Environment, env_id)
    if customer is None or env is None:
        return None
    integration = integration or store.integration_for_customer(s, customer)
    link = store.link(s, integration.pk, CUSTOMER, customer.pk) if integration is not None else None
    billing_id = (link.billing_id if link is not None else None) or customer.billing_id
    return _Reach(integration, billing_id, env.name, customer.ref_id)


def _record_unheard(db: Database, env_id: int, grant_pk: int) -> None:
    """The grant ended with no invoice recorded, and an earlier attempt may have made one all the same (Stripe
    did it, the answer was lost): recorded now if it is at the provider, so an open one is voided like any
    invoice recorded on a grant that ended (`paid._reported`)."""
    ended = paid.ended_unrecorded(db, env_id, grant_pk)
    if ended is None:
        return
    grant_ref, wallet_pk, made_since = ended
    with db.read() as s:
        reach = _reach(s, env_id, wallet_pk)
    if reach is None or reach.integration is None or not reach.billing_id:
        return  # nothing to reach, or the customer never reached the provider: no invoice was made
    provider = provider_for(reach.integration, secret_box(load_settings().data_dir))
    found = provider.find_credit_invoice(reach.billing_id, reach.env_name, grant_ref, made_since=made_since)
    if found is not None:
        paid.invoice_made(db, env_id, grant_ref, latest_invoice(found))


def _invoice(db: Database, env_id: int, grant_pk: int, *, timeout: float | None = None, first: bool = False) -> bool:
    """Make the grant's invoice unless it has one (or no longer waits). True when it has one after.

    `first`: no attempt ran before (the request, just after the grant was written). Any later attempt first
    looks at Stripe for the invoice an earlier one made (`CreditInvoiceSpec.made_since`): the idempotency keys
    alone would make a second invoice for a job retried more than a day later (Stripe forgets them)."""
    pending = paid.pending_invoice(db, env_id, grant_pk)
    if pending is None:
        if not first:
            _record_unheard(db, env_id, grant_pk)
        return True
    grant_ref, what = pending
    with db.read() as s:
        reach = _reach(s, env_id, int(what["walletPk"]))
    if reach is None:
        return False
    integration, billing_id, env_name = reach.integration, reach.billing_id, reach.env_name
    if integration is None:
        raise BillingInformationRefused("the customer's billing integration was removed: the grant cannot be invoiced")
    if not billing_id:
        raise CustomerNotAtProvider(f"customer {reach.customer_ref} is not at the provider yet (its sync runs first)")
    days = what["daysUntilDue"]
    spec = CreditInvoiceSpec(
        customer_billing_id=billing_id,
        grant_ref=grant_ref,
        environment_ref=env_name,
        description=f"{what['displayName']}: {what['amount']} {what['currencyName']}",
        amount_minor=int(what["costMinor"]),
        currency=str(what["costCurrency"]),
        days_until_due=DEFAULT_DAYS_UNTIL_DUE if days is None else int(days),
        paid_out_of_band=bool(what["paidOutOfBand"]),
        charge=bool(what["charge"]),
        made_since=None if first else what["createdAt"],
    )
    provider = provider_for(integration, secret_box(load_settings().data_dir), timeout=timeout)
    made = provider.create_credit_invoice(
        spec,
        idempotency_key=_key(env_id, grant_pk, grant_ref),
        still_wanted=lambda: paid.still_waiting(db, env_id, grant_pk),
    )
    paid.invoice_made(db, env_id, grant_ref, latest_invoice(made))
    return True


@register(INVOICE_CREDIT_GRANT_JOB)
def invoice_credit_grant(db: Database, ctx: JobContext) -> None:
    _invoice(db, ctx.environment_id, int(ctx.payload["grantPk"]))


@register(VOID_CREDIT_INVOICE_JOB)
def void_credit_invoice(db: Database, ctx: JobContext) -> None:
    """A grant voided (or expired) while it waited for its payment: its invoice is voided at the provider too,
    so nobody pays for credits that will never be granted (an invoice paid meanwhile is left as it is: refund
    it). With no invoice recorded, one may still be at the provider: made by an attempt whose answer was lost
    (the invoicing, finding the grant ended, never records it), so it is looked for there."""
    with db.read() as s:
        grant = s.get(CreditGrant, int(ctx.payload["grantPk"]))
        integration = s.get(Integration, int(ctx.payload["integrationPk"]))
        if grant is None or integration is None or integration.removed_at is not None:
            return  # nothing to reach
        invoice_ref, grant_ref = ctx.payload.get("invoiceRef") or grant.invoice_ref, grant.ref_id
        made_since = as_utc(grant.created_at)
        reach = _reach(s, ctx.environment_id, grant.wallet_pk, integration)
    provider = provider_for(integration, secret_box(load_settings().data_dir))
    if invoice_ref is None:
        # An invoice being made right now is not found yet, or only as a draft: its recording, under the wallet's
        # lock after this void, finds the grant ended and enqueues the void of it (`paid._reported`).
        if reach is None or not reach.billing_id:
            return  # the customer never reached the provider: no invoice was made
        found = provider.find_credit_invoice(reach.billing_id, reach.env_name, grant_ref, made_since=made_since)
        if found is None:
            return
        invoice_ref = found.id
    key = f"{_key(ctx.environment_id, grant.pk, grant_ref)}:{invoice_ref}"  # its own key, per invoice
    voided = provider.void_invoice(invoice_ref, idempotency_key=key)
    paid.invoice_made(db, ctx.environment_id, grant_ref, latest_invoice(voided))


def latest_invoice(invoice: ProviderInvoice, *, error: str | None = None) -> dict[str, Any]:
    """The grant's `latestInvoice` as kept on it (wire names; amounts exact, in major units, as text)."""
    exponent = minor_unit_exponent(invoice.currency or "usd")
    now = utcnow()

    def instant(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "billingId": invoice.id,
        "billingReason": "MANUAL",
        "status": invoice.state,
        "currency": invoice.currency or None,
        "createdAt": instant(invoice.issued_at or now),
        "updatedAt": instant(now),
        "dueDate": instant(invoice.due_at),
        "paymentUrl": invoice.hosted_url,
        "pdfUrl": invoice.pdf_url,
        "requiresAction": invoice.requires_action,
        "subTotal": str(invoice.subtotal_minor.scaleb(-exponent)),
        "tax": str(invoice.tax_minor.scaleb(-exponent)),
        "total": str(invoice.total_minor.scaleb(-exponent)),
        "errorMessage": error or invoice.payment_error,
    }


# -- the invoice's webhooks -------------------------------------------------------------------------------

_PAID = ("invoice.paid", "invoice.payment_succeeded")
_VOIDED = ("invoice.voided", "invoice.marked_uncollectible")
_FAILED = ("invoice.payment_failed", "invoice.overdue")


def grant_of(obj: dict[str, Any]) -> str | None:
    """The credit grant an invoice event is about (the metadata Entitle put on its invoice), or None."""
    metadata = obj.get("metadata")
    if obj.get("object") != "invoice" or not isinstance(metadata, dict):
        return None
    ref = metadata.get(GRANT_METADATA)
    return str(ref) if isinstance(ref, str) and ref else None


def handle_event(
    db: Database,
    integration: Integration,
    event_type: str,
    invoice: ProviderInvoice,
    grant_ref: str,
    reason: str | None,
) -> tuple[str, str]:
    env = integration.environment_id
    if event_type in _PAID:
        status = paid.invoice_paid(db, env, grant_ref, latest_invoice(invoice))
        verb = "paid"
    elif event_type in _VOIDED:
        status = paid.invoice_voided(db, env, grant_ref, latest_invoice(invoice))
        verb = "cancelled"
    elif event_type in _FAILED:
        status = paid.payment_failed(db, env, grant_ref, latest_invoice(invoice, error=reason))
        verb = "not paid"
    else:
        return IGNORED, f"{event_type} changes nothing of credit grant {grant_ref}"
    if status is None:
        return IGNORED, f"no credit grant {grant_ref} (its customer was deleted?)"
    return PROCESSED, f"invoice {invoice.id} {verb}: credit grant {grant_ref} is {status}"


def install() -> None:
    paid_grants.install(PaidGrants())


__all__ = [
    "INVOICE_CREDIT_GRANT_JOB",
    "VOID_CREDIT_INVOICE_JOB",
    "PaidGrants",
    "grant_of",
    "handle_event",
    "install",
    "latest_invoice",
]
