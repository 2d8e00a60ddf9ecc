"""What the console's credit pages show, read through the credits domain's own service functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from entitle.clock import utcnow
from entitle.console import charts
from entitle.credits import service as credits
from entitle.credits.schemas import CreditCheckRequest, CreditCheckResult, CurrencyOut, GrantOut, LedgerEntryOut
from entitle.db import Database
from entitle.db.pagination import CreatedAtRange, Page, PageRequest

HISTORY_DAYS = 30


@dataclass(frozen=True)
class CustomerCredits:
    customer_ref: str
    currencies: list[CurrencyOut]  # the active ones, for the grant form
    balances: list[CreditCheckResult]  # one per currency the customer has grants in
    grants: list[GrantOut]
    ledger: Page[LedgerEntryOut]
    currency_ref: str | None  # the currency the ledger and the chart show (None: every one)
    chart: str | None = None


def customer_credits(
    db: Database, env_id: int, customer_ref: str, currency_ref: str | None, page: PageRequest
) -> CustomerCredits:
    currencies = list(credits.list_currencies(db, env_id, PageRequest(limit=100), ["ACTIVE"]).items)
    grants = list(
        credits.list_grants(
            db,
            env_id,
            PageRequest(limit=100),
            customer_ref=customer_ref,
            currency_ref=currency_ref,
            resource_ref=None,
            created_at=CreatedAtRange(),
        ).items
    )
    held = sorted({g.currency_id for g in grants})
    balances = [credits.check(db, env_id, customer_ref, ref, CreditCheckRequest()) for ref in held]
    ledger = credits.list_ledger(
        db,
        env_id,
        page,
        customer_ref=customer_ref,
        currency_ref=currency_ref,
        resource_ref=None,
        event_types=None,
        reservation_ref=None,
    )
    shown = currency_ref or (held[0] if len(held) == 1 else None)
    chart = None
    if shown is not None:
        end = utcnow()
        start = end - timedelta(days=HISTORY_DAYS)
        steps = credits.balance_history(db, env_id, customer_ref=customer_ref, currency_ref=shown, since=start)
        chart = charts.step_chart(steps, start, end, f"{shown} balance")
    return CustomerCredits(customer_ref, currencies, balances, grants, ledger, shown, chart)
