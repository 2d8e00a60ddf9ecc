"""What happens to credits, announced in the transaction that moved them (see `entitle.domain_events`).

`notices.py` publishes them just before that transaction commits, from the rows it wrote (ledger entries,
grants created or ended), so every use case that moves a wallet announces it without calling anything.
Adapters turn them into webhooks (`credit_grant.*`, `credit_balance.*`) and stream events
(`credits.updated`).

**When a balance is low.** Stigg's REST contract has no low-balance setting (auto-recharge's threshold
belongs to auto-recharge, which is not enabled), so the rule is Entitle's: a balance is low below
`LOW_BALANCE_SHARE` (10%) of what the wallet's active grants granted, and depleted at zero or less. Each
is announced when a movement *crosses* it downwards (above or at it before, below it after), once per
crossing: a top-up that lifts the balance back arms it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from entitle.credits.schemas import GrantOut
from entitle.domain_events import DomainEvent

LOW_BALANCE_SHARE = Decimal("0.1")


@dataclass(frozen=True, kw_only=True)
class CreditGrantCreated(DomainEvent):
    """A PROMOTIONAL, PAID or RECURRING grant was made (overdraft grants are the wallet's own)."""

    grant: GrantOut


@dataclass(frozen=True, kw_only=True)
class CreditGrantEnded(DomainEvent):
    """A grant expired or was voided (`grant.status` says which)."""

    grant: GrantOut


@dataclass(frozen=True, kw_only=True)
class WalletBalance:
    customer_ref: str
    currency_ref: str
    resource_ref: str | None
    usage_limit: Decimal  # what the active grants granted
    current_usage: Decimal  # consumed, plus held by active reservations
    reserved: Decimal

    @property
    def balance(self) -> Decimal:
        return self.usage_limit - self.current_usage

    @property
    def low_threshold(self) -> Decimal:
        return self.usage_limit * LOW_BALANCE_SHARE


@dataclass(frozen=True, kw_only=True)
class CreditBalanceChanged(DomainEvent):
    """A wallet's balance moved in this transaction; `previous` is what it was before."""

    wallet: WalletBalance
    previous: Decimal


@dataclass(frozen=True, kw_only=True)
class CreditBalanceLow(DomainEvent):
    wallet: WalletBalance
    previous: Decimal


@dataclass(frozen=True, kw_only=True)
class CreditBalanceDepleted(DomainEvent):
    wallet: WalletBalance
    previous: Decimal


@dataclass(frozen=True, kw_only=True)
class CurrencyChanged(DomainEvent):
    """A custom currency was created, edited, archived or unarchived: its fields are in every CREDIT answer,
    and whether it exists decides which credit prices count, so in-memory snapshots of the environment drop
    what they hold of credits."""

    currency_ref: str


def crossed_low(previous: Decimal, wallet: WalletBalance) -> bool:
    """The balance fell below the low threshold in this movement (a wallet that grants nothing is never
    low: it has no allowance to be a share of)."""
    threshold = wallet.low_threshold
    return wallet.usage_limit > 0 and previous >= threshold > wallet.balance


def crossed_zero(previous: Decimal, wallet: WalletBalance) -> bool:
    return previous > 0 >= wallet.balance
