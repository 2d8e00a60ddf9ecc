"""The credits domain's use cases, one transaction each, split by subject:
`currencies` (custom currencies), `grants` (grants, the ledger, the scheduler's catch-up), `consumption`
(direct consumption), `reservations` (credit checks, holds and their release), `recurring` (grants from
subscriptions), `pricing` (credit-priced features), `estimates` (what a usage or an event would cost).
`engine` moves a wallet's
grants and writes the ledger; `rules` holds the pure rules (precision, status, draw order)."""

from __future__ import annotations

from entitle.credits.consumption import IdempotencyKeyReused, consume, consume_batch
from entitle.credits.currencies import (
    associated_entities,
    create_currency,
    get_currency,
    list_currencies,
    set_archived,
    update_currency,
)
from entitle.credits.estimates import estimate_event, estimate_usage
from entitle.credits.grants import create_grant, find_grant, list_grants, list_ledger, void_grant
from entitle.credits.reservations import ReservationConflict, check, release
from entitle.credits.settings import auto_recharge
from entitle.credits.usage import balance_history, credit_usage

__all__ = [
    "IdempotencyKeyReused",
    "ReservationConflict",
    "associated_entities",
    "auto_recharge",
    "balance_history",
    "check",
    "consume",
    "consume_batch",
    "create_currency",
    "create_grant",
    "credit_usage",
    "estimate_event",
    "estimate_usage",
    "find_grant",
    "get_currency",
    "list_currencies",
    "list_grants",
    "list_ledger",
    "release",
    "set_archived",
    "update_currency",
    "void_grant",
]
