"""A customer's invoices, read live from the billing provider (`GET /api/v1/customers/{id}/invoices`).

Nothing is stored: each call asks the provider for the customer's invoices (at most `FETCH_LIMIT`,
newest first), then filters (issue dates, states), orders (`issueDate` by default, `dueDate` or
`total`, ascending by default) and pages them here with the invoice id as the cursor. The list is
empty when no provider is connected or the customer has no provider customer (not synced).
`mark_invoice_paid` records a subscription's latest invoice paid out of band. No
invoice belongs to a contract (contracts make no billing contract at the provider), so a `contractExternalId`
filter matches nothing.

Amounts go out in the currency's major units (29.99), computed exactly from the provider's minor
units.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from entitle.billing import store
from entitle.billing.checkout import stripe_customer_id
from entitle.billing.models import SUBSCRIPTION, SUCCESS
from entitle.billing.provider import ProviderInvoice
from entitle.billing.providers import provider_for
from entitle.billing.secrets import secret_box
from entitle.config import load_settings
from entitle.customers import store as customers
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest
from entitle.errors import BillingProviderError, FailedPrecondition, InvalidArgument
from entitle.money import minor_unit_exponent
from entitle.subscriptions import lifecycle as subscription_lifecycle
from entitle.subscriptions import store as subscriptions

log = logging.getLogger(__name__)

FETCH_LIMIT = 1000
INVOICE_STATES: tuple[str, ...] = ("OPEN", "CANCELED", "PAID")
OrderBy = Literal["issueDate", "dueDate", "total"]
OrderDir = Literal["ASC", "DESC"]


@dataclass(frozen=True)
class InvoiceQuery:
    issued_after: datetime | None = None
    issued_before: datetime | None = None
    states: tuple[str, ...] | None = None
    contract_ref: str | None = None
    order_by: OrderBy = "issueDate"
    order_dir: OrderDir = "ASC"


@dataclass(frozen=True)
class CustomerInvoice:
    customer_ref: str
    invoice: ProviderInvoice


def major(amount_minor: Decimal, currency: str) -> Decimal:
    """Minor units to the currency's major units, exactly (2999 usd -> 29.99)."""
    return amount_minor.scaleb(-minor_unit_exponent(currency or "usd"))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def select_invoices(
    invoices: Sequence[ProviderInvoice], query: InvoiceQuery, page: PageRequest
) -> Page[ProviderInvoice]:
    """Filter, order and page invoices (pure: no I/O). Cursors are invoice ids."""
    if query.contract_ref:
        return Page(items=[], next=None, prev=None)
    chosen = list(invoices)
    if query.issued_after is not None:
        after = _aware(query.issued_after)
        chosen = [i for i in chosen if i.issued_at is not None and i.issued_at >= after]
    if query.issued_before is not None:
        before = _aware(query.issued_before)
        chosen = [i for i in chosen if i.issued_at is not None and i.issued_at <= before]
    if query.states is not None:
        chosen = [i for i in chosen if i.state in query.states]
    floor = datetime.min.replace(tzinfo=UTC)

    def key(i: ProviderInvoice) -> tuple[object, str]:
        if query.order_by == "total":
            return (major(i.total_minor, i.currency), i.id)
        when = i.due_at if query.order_by == "dueDate" else i.issued_at
        return (when or floor, i.id)

    chosen.sort(key=key, reverse=query.order_dir == "DESC")
    ids = [i.id for i in chosen]
    if page.after:
        if page.after not in ids:
            raise InvalidArgument(f"invalid pagination cursor {page.after!r}")
        start = ids.index(page.after) + 1
        window = chosen[start : start + page.limit]
        has_before = start > 0
        has_after = start + page.limit < len(chosen)
    elif page.before:
        if page.before not in ids:
            raise InvalidArgument(f"invalid pagination cursor {page.before!r}")
        end = ids.index(page.before)
        start = max(0, end - page.limit)
        window = chosen[start:end]
        has_before = start > 0
        has_after = end < len(chosen)
    else:
        window = chosen[: page.limit]
        has_before = False
        has_after = page.limit < len(chosen)
    return Page(
        items=window,
        next=window[-1].id if window and has_after else None,
        prev=window[0].id if window and has_before else None,
    )


def list_invoices(
    db: Database, env_id: int, customer_ref: str, query: InvoiceQuery, page: PageRequest
) -> tuple[str, Page[ProviderInvoice]]:
    """The customer's invoices at the provider (an empty page without a provider or provider customer)."""
    settings = load_settings()
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        integration = store.integration_for_customer(s, customer)
        billing_id = stripe_customer_id(s, integration, customer) if integration is not None else None
    if integration is None or billing_id is None:
        return customer_ref, Page(items=[], next=None, prev=None)
    provider = provider_for(integration, secret_box(settings.data_dir))
    try:
        found = provider.list_invoices(billing_id, limit=FETCH_LIMIT)
    except Exception as exc:
        log.warning("listing Stripe invoices of customer %s failed: %s", customer_ref, exc)
        raise BillingProviderError(f"Stripe could not list the customer's invoices: {exc}"[:1000]) from exc
    return customer_ref, select_invoices(found, query, page)


def mark_invoice_paid(db: Database, env_id: int, subscription_ref: str) -> str:
    """`POST /api/v1/subscriptions/{id}/invoice/paid`: the latest provider invoice of a subscription paid by
    invoice was paid outside the provider (a bank transfer). The provider records it paid without a charge,
    and a subscription waiting for that payment is ACTIVE at once (the provider's `invoice.paid` webhook,
    arriving later, finds nothing left to do)."""
    settings = load_settings()
    with db.read() as s:
        sub = subscriptions.get(s, env_id, subscription_ref)
        if sub.payment_collection_method != "INVOICE":
            raise FailedPrecondition(
                f"subscription '{subscription_ref}' is charged (paymentCollectionMethod "
                f"{sub.payment_collection_method}): only an invoiced subscription's invoice is paid out of band"
            )
        integration = store.integration_for_subscription(s, sub)
        link = store.link(s, integration.pk, SUBSCRIPTION, sub.pk) if integration is not None else None
        if integration is None or link is None or link.sync_state != SUCCESS or not link.billing_id:
            raise FailedPrecondition(
                f"subscription '{subscription_ref}' has no invoice at a billing provider (not synced to one)"
            )
        billing_id = link.billing_id
        pending = sub.status == "PAYMENT_PENDING" or (sub.status == "ACTIVE" and sub.payment_collection == "FAILED")
    provider = provider_for(integration, secret_box(settings.data_dir))
    # One key per request: a second call finds the invoice paid (409), never a replay of the first answer.
    provider.mark_latest_invoice_paid(billing_id, idempotency_key=f"entitle-invoice-paid-{uuid.uuid4().hex}")
    if pending:
        with contextlib.suppress(FailedPrecondition):  # ended meanwhile
            subscription_lifecycle.payment_succeeded(db, env_id, subscription_ref)
    return subscription_ref


__all__ = ["INVOICE_STATES", "InvoiceQuery", "list_invoices", "major", "mark_invoice_paid", "select_invoices"]
