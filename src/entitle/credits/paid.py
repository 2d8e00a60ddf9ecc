"""Paid grants collected through the billing provider (`paymentCollectionMethod` INVOICE, or CHARGE: the
same invoice, charged at once to the customer's default payment method).

A grant invoiced is written PAYMENT_PENDING: no ledger entry, in no balance, never drawn (every read and
movement of a wallet looks at SCHEDULED and ACTIVE grants only). Its invoice is made by the billing
adapter (`ports.paid_grants`: a durable job enqueued in the grant's transaction, and at once while the
request waits when it can). What the provider then reports comes back here, one transaction each, under
the wallet's lock, idempotent (a webhook delivered twice, a job re-run, changes nothing twice):

- `invoice_made`: the invoice's id and state are recorded on the grant (paid: it starts; a charge declined
  or waiting for 3-D Secure: `paymentCollection` FAILED or ACTION_REQUIRED; the grant VOIDED or EXPIRED while
  the invoice was being made: the invoice, still open, is voided at the provider — `ports.paid_grants`);
- `invoice_paid`: the grant starts as any grant starts (SCHEDULED, or ACTIVE with its CREDITS_GRANTED
  entry stamped at the payment, paying an overdraft first, announced by `notices` as any movement);
- `invoice_voided`: a grant still waiting for it is VOIDED (it never held credits: no ledger entry);
- `payment_failed`: `paymentCollection` FAILED; the grant keeps waiting (an invoice can be paid later).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from entitle.clock import as_utc, utcnow
from entitle.credits import engine, ports, rules, store
from entitle.credits.models import CreditGrant, CustomCurrency, Wallet
from entitle.credits.ports import InvoiceTerms
from entitle.credits.rules import EXPIRED, PAID, PAYMENT_PENDING, SCHEDULED, VOIDED
from entitle.credits.schemas import GrantCreate
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.errors import InvalidArgument
from entitle.jobs.service import JobContext, enqueue, register
from entitle.money import minor_unit_exponent
from entitle.subscriptions.rules import days_until_due

INVOICE, CHARGE, NONE = "INVOICE", "CHARGE", "NONE"
NOT_REQUIRED, PROCESSING, FAILED, ACTION_REQUIRED = "NOT_REQUIRED", "PROCESSING", "FAILED", "ACTION_REQUIRED"


def invoice_terms(req: GrantCreate) -> InvoiceTerms | None:
    """The invoicing terms of a grant (None: nothing is collected), or a 400 for terms that cannot hold."""
    method = req.payment_collection_method or NONE
    info = req.billing_information
    if method == NONE:
        if info is not None:
            raise InvalidArgument(
                "billingInformation is for collecting a grant's payment: give it with paymentCollectionMethod "
                "INVOICE or CHARGE"
            )
        return None
    if req.grant_type != PAID:
        raise InvalidArgument(
            f"paymentCollectionMethod {method} collects a PAID grant's cost: a PROMOTIONAL grant costs nothing"
        )
    if req.cost is None or req.cost.amount <= 0:
        raise InvalidArgument(
            f"paymentCollectionMethod {method} needs a cost greater than 0 to collect (a grant that costs nothing "
            "is given with paymentCollectionMethod NONE)"
        )
    if method == CHARGE and info is not None and (info.invoice_days_until_due is not None or info.is_invoice_paid):
        raise InvalidArgument(
            "billingInformation.invoiceDaysUntilDue and isInvoicePaid are terms of a sent invoice: give them with "
            "paymentCollectionMethod INVOICE (CHARGE charges the customer's default payment method at once)"
        )
    exponent = minor_unit_exponent(req.cost.currency)
    if req.cost.amount != req.cost.amount.quantize(Decimal(1).scaleb(-exponent)):
        raise InvalidArgument(
            f"cost.amount has more decimal places than {req.cost.currency.upper()} has ({exponent}): it cannot be "
            "invoiced exactly, and Entitle never rounds money"
        )
    wire = info.model_dump(by_alias=True, exclude_none=True) if info is not None else {}
    address = wire.get("billingAddress") or None
    return InvoiceTerms(
        days_until_due=days_until_due(wire),
        paid_out_of_band=bool(info is not None and info.is_invoice_paid),
        billing_address=address,
        charge=method == CHARGE,
        awaited=req.await_payment_confirmation is not False,
    )


def minor_units(amount: Decimal, currency: str) -> int:
    """A cost in major units as the provider's integer minor units (checked exact by `invoice_terms`)."""
    minor = amount.scaleb(minor_unit_exponent(currency))
    assert minor == minor.to_integral_value()
    return int(minor)


def terms_of(grant: CreditGrant) -> InvoiceTerms:
    kept = grant.collection_terms or {}
    days = kept.get("invoiceDaysUntilDue")
    return InvoiceTerms(
        days_until_due=None if days is None else int(days),
        paid_out_of_band=bool(kept.get("isInvoicePaid")),
        billing_address=None,
        charge=grant.payment_collection_method == CHARGE,
    )


def kept_terms(terms: InvoiceTerms) -> dict[str, Any]:
    """What the invoicing job reads again (the address is forwarded to the provider, never kept)."""
    return {"invoiceDaysUntilDue": terms.days_until_due, "isInvoicePaid": terms.paid_out_of_band}


# -- what the provider reports ---------------------------------------------------------------------------


def _locked(s: Session, env_id: int, grant_ref: str) -> tuple[CreditGrant, Wallet] | None:
    grant = store.find_grant(s, env_id, grant_ref)
    if grant is None:
        return None
    wallet = s.get(Wallet, grant.wallet_pk)
    assert wallet is not None
    wallet = store.locked_wallet(s, env_id, wallet.customer_pk, wallet.currency_pk, wallet.resource_ref)
    s.refresh(grant)  # read again under the wallet's lock: another delivery may have moved it
    return grant, wallet


def _record(grant: CreditGrant, invoice: dict[str, Any], now: datetime) -> None:
    if not rules.invoice_supersedes(grant.latest_invoice, invoice):
        return  # a late webhook's older state of the invoice: what is recorded is newer
    grant.invoice_ref = str(invoice["billingId"])
    grant.latest_invoice = invoice
    grant.updated_at = now


def _start(s: Session, wallet: Wallet, grant: CreditGrant, now: datetime) -> None:
    """The payment arrived: the grant starts as any grant does, stamped at the payment (the ledger is in the
    order of the movements), unless it already ended meanwhile (an expiry passed: it never held credits)."""
    grants = engine.catch_up(s, wallet, now)
    grant.payment_collection = NOT_REQUIRED
    if grant.expire_at is not None and grant.expire_at <= now:
        grant.status = EXPIRED
        return
    grant.status = SCHEDULED
    grants.append(grant)
    if grant.effective_at <= now:
        engine.activate(s, wallet, grant, grants, now)
    else:
        engine.schedule(s, wallet, grant.effective_at)
    if grant.expire_at is not None:
        engine.schedule(s, wallet, grant.expire_at)


def _reported(
    db: Database,
    env_id: int,
    grant_ref: str,
    invoice: dict[str, Any],
    waiting: Callable[[Session, Wallet, CreditGrant, datetime], None],
) -> str | None:
    """What the provider reported of the grant's invoice, in one transaction under the wallet's lock: the
    invoice's state recorded, and `waiting` applied to a grant still waiting for its payment (a grant that no
    longer waits, started already or voided, only records it: a redelivery changes nothing twice; an invoice
    still open of a grant VOIDED or EXPIRED is voided at the provider). Returns the grant's status after
    (None: no such grant)."""
    with db.transaction() as s:
        found = _locked(s, env_id, grant_ref)
        if found is None:
            return None
        grant, wallet = found
        now = utcnow()
        _record(grant, invoice, now)
        if grant.status == PAYMENT_PENDING:
            waiting(s, wallet, grant, now)
        elif grant.status in (VOIDED, EXPIRED) and invoice.get("status") == "OPEN":
            # The grant ended while its invoice was being made (or while it was open): whoever ended it may have
            # found no invoice to void yet. Recorded and seen here under the same lock, so one of the two always
            # sees the other: this invoice is voided at the provider too (by its own job, with its own key).
            customer = s.get(Customer, wallet.customer_pk)
            assert customer is not None
            ports.paid_grants.impl.cancel_invoice(s, customer, grant)
        return grant.status


def invoice_made(db: Database, env_id: int, grant_ref: str, invoice: dict[str, Any]) -> bool:
    """Record the grant's new invoice (and start the grant when the invoice is already paid). False: no such
    grant (deleted with its customer)."""

    def made(s: Session, wallet: Wallet, grant: CreditGrant, now: datetime) -> None:
        if invoice.get("status") == "PAID":
            _start(s, wallet, grant, now)
        elif invoice.get("status") == "CANCELED":
            _void(s, wallet, grant, now)
        else:
            grant.payment_collection = collection_of(invoice, grant.payment_collection)

    return _reported(db, env_id, grant_ref, invoice, made) is not None


def collection_of(invoice: dict[str, Any], current: str) -> str:
    """A waiting grant's `paymentCollection` after its open invoice's latest attempt: the customer must act
    (3-D Secure: ACTION_REQUIRED, `latestInvoice.paymentUrl` is where), the charge failed (FAILED, with its
    error), else as it was."""
    if invoice.get("requiresAction"):
        return ACTION_REQUIRED
    if invoice.get("errorMessage"):
        return FAILED
    return current


def invoice_paid(db: Database, env_id: int, grant_ref: str, invoice: dict[str, Any]) -> str | None:
    """The grant's invoice was paid: a grant waiting for it starts."""
    return _reported(db, env_id, grant_ref, invoice, _start)


def _void(s: Session, wallet: Wallet, grant: CreditGrant, now: datetime) -> None:
    engine.end(s, wallet, grant, VOIDED, now)  # it never started: no ledger entry
    grant.payment_collection = NOT_REQUIRED


def invoice_voided(db: Database, env_id: int, grant_ref: str, invoice: dict[str, Any]) -> str | None:
    """The grant's invoice was voided or marked uncollectible: a grant still waiting for it is VOIDED."""
    return _reported(db, env_id, grant_ref, invoice, _void)


def _failed(s: Session, wallet: Wallet, grant: CreditGrant, now: datetime) -> None:
    grant.payment_collection = FAILED


def payment_failed(db: Database, env_id: int, grant_ref: str, invoice: dict[str, Any]) -> str | None:
    """A payment of the grant's invoice failed: still waiting (the invoice stays open), collection FAILED."""
    return _reported(db, env_id, grant_ref, invoice, _failed)


EXPIRE_UNPAID_JOB = "credits.expire_unpaid"


def expire_unpaid_at(s: Session, grant: CreditGrant, at: datetime) -> None:
    enqueue(s, grant.environment_id, EXPIRE_UNPAID_JOB, {"grant": grant.pk}, run_at=at, dedupe_key=f"unpaid:{grant.pk}")


@register(EXPIRE_UNPAID_JOB)
def expire_unpaid(db: Database, ctx: JobContext) -> None:
    """A grant still waiting for its payment when it was to expire never held a credit and never will: it is
    EXPIRED (no ledger entry), and its invoice is voided at the provider, so nobody pays for nothing."""
    with db.transaction() as s:
        grant = s.get(CreditGrant, int(ctx.payload["grant"]))
        if grant is None or grant.environment_id != ctx.environment_id:
            return
        found = _locked(s, ctx.environment_id, grant.ref_id)
        if found is None:
            return
        grant, wallet = found
        if grant.status != PAYMENT_PENDING:
            return  # paid (it started and ends as any grant), or voided
        now = utcnow()
        engine.end(s, wallet, grant, EXPIRED, now)
        grant.payment_collection, grant.updated_at = NOT_REQUIRED, now
        customer = s.get(Customer, wallet.customer_pk)
        assert customer is not None
        ports.paid_grants.impl.cancel_invoice(s, customer, grant)


def still_waiting(db: Database, env_id: int, grant_pk: int) -> bool:
    """Whether the grant still waits for its payment (not voided, not past its expiry): asked by the invoicing
    just before it charges the customer or records the invoice paid, so a grant that ended while its invoice
    was being made is not paid for (its invoice, recorded open, is voided: `_reported`)."""
    with db.read() as s:
        grant = s.get(CreditGrant, grant_pk)
        if grant is None or grant.environment_id != env_id or grant.status != PAYMENT_PENDING:
            return False
        return grant.expire_at is None or as_utc(grant.expire_at) > utcnow()


def ended_unrecorded(db: Database, env_id: int, grant_pk: int) -> tuple[str, int, datetime] | None:
    """An invoiced grant that ended (VOIDED, EXPIRED) with no invoice recorded: its id, wallet and creation, for
    the invoicing to look for an invoice an attempt made whose answer was lost. None otherwise."""
    with db.read() as s:
        grant = s.get(CreditGrant, grant_pk)
        if grant is None or grant.environment_id != env_id or grant.invoice_ref is not None:
            return None
        if grant.status not in (VOIDED, EXPIRED) or grant.payment_collection_method not in (INVOICE, CHARGE):
            return None
        return grant.ref_id, grant.wallet_pk, as_utc(grant.created_at)


def pending_invoice(db: Database, env_id: int, grant_pk: int) -> tuple[str, dict[str, Any]] | None:
    """For the invoicing job: the grant's id and what its invoice is made of, while it still needs one (None:
    made already, or the grant no longer waits)."""
    with db.read() as s:
        grant = s.get(CreditGrant, grant_pk)
        if grant is None or grant.environment_id != env_id or grant.status != PAYMENT_PENDING:
            return None
        if grant.invoice_ref is not None:
            return None
        terms = terms_of(grant)
        wallet = s.get(Wallet, grant.wallet_pk)
        currency = s.get(CustomCurrency, wallet.currency_pk) if wallet is not None else None
        return grant.ref_id, {
            "displayName": grant.display_name,
            # The invoice line names what is bought: "Top-up: 1000 AI credits" (not 1000.000000000000).
            "amount": f"{grant.amount.normalize():f}",
            "currencyName": currency.display_name if currency is not None else "credits",
            "costAmount": grant.cost_amount,
            "costCurrency": grant.cost_currency,
            "costMinor": minor_units(grant.cost_amount, grant.cost_currency),
            "daysUntilDue": terms.days_until_due,
            "paidOutOfBand": terms.paid_out_of_band,
            "charge": terms.charge,
            "walletPk": grant.wallet_pk,
            "createdAt": as_utc(grant.created_at),  # no earlier attempt can have made an invoice before
        }


__all__ = [
    "ACTION_REQUIRED",
    "CHARGE",
    "EXPIRE_UNPAID_JOB",
    "FAILED",
    "INVOICE",
    "NOT_REQUIRED",
    "PROCESSING",
    "ended_unrecorded",
    "invoice_made",
    "invoice_paid",
    "invoice_terms",
    "invoice_voided",
    "kept_terms",
    "minor_units",
    "payment_failed",
    "pending_invoice",
    "still_waiting",
]
