"""What the usage domain asks the layers above it, installed at start-up by `entitle.wiring`.

- `charge_credits`: usage of a feature priced in credits (a CREDIT_BASED price with a credit rate) draws
  the customer's credits in the transaction that counts it; the answer is the credit block of the usage
  report (None: the feature is not priced in credits for that customer). Installed by `entitle.credits`.
- `credit_priced`: which features `charge_credits` may draw for (an ingestion batch asks once, not per
  counter it moved). Installed by `entitle.credits`.
- `grant_changes`: whether a customer's grants may have changed since a mark (any `EntitlementsChanged`
  of theirs, any `FeatureChanged` of the environment committed after it). Ingestion resolves a batch's
  grants before its write transaction (on SQLite that transaction holds the database's write lock) and
  uses them inside only when this says nothing changed. Installed by `entitle.push`, whose change log
  records exactly those announcements in the transactions that make them; without it, nothing resolved
  beforehand is trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from entitle.customers.models import Customer
from entitle.domain_events import Port


@dataclass(frozen=True)
class CreditCharge:
    """What one usage drew, and the wallet's balance after it."""

    currency_ref: str
    consumed: Decimal
    current_usage: Decimal
    usage_limit: Decimal
    timestamp: datetime
    period_end: datetime | None


# (session, env_id, customer, feature ref, resource ref, usage delta, at, event id) -> the charge, or None
ChargeCredits = Callable[[Session, int, Customer, str, str | None, Decimal, datetime, str], CreditCharge | None]


def _not_priced(
    s: Session,
    env_id: int,
    customer: Customer,
    feature_ref: str,
    resource_ref: str | None,
    delta: Decimal,
    at: datetime,
    event_id: str,
) -> CreditCharge | None:
    return None


charge_credits: Port[ChargeCredits] = Port("usage.charge_credits", default=_not_priced)

# (session, env_id) -> the features `charge_credits` may draw credits for, asked once per ingestion batch so
# that a batch asks `charge_credits` only about those (None: it may for any feature). Installed by
# `entitle.credits` beside `charge_credits`.
CreditPriced = Callable[[Session, int], Collection[str] | None]


def _any_may_be(s: Session, env_id: int) -> Collection[str] | None:
    return None


credit_priced: Port[CreditPriced] = Port("usage.credit_priced", default=_any_may_be)


@dataclass(frozen=True)
class GrantChanges:
    # (session, env_id) -> a mark, read before the grants it vouches for, in the same transaction.
    mark: Callable[[Session, int], int]
    # (session, env_id, mark, customer ids) -> True only when none of those customers' grants, nor any
    # feature of the environment, changed in a transaction committed after the mark was read.
    unchanged_since: Callable[[Session, int, int, Collection[str]], bool]
    # (session, env_id, mark) -> the customers whose grants changed after the mark; None when a feature
    # of the environment changed too, or it cannot tell.
    changed_since: Callable[[Session, int, int], frozenset[str] | None]


def _no_mark(s: Session, env_id: int) -> int:
    return 0


def _cannot_tell(s: Session, env_id: int, mark: int, customer_refs: Collection[str]) -> bool:
    return False


def _cannot_say(s: Session, env_id: int, mark: int) -> frozenset[str] | None:
    return None


grant_changes: Port[GrantChanges] = Port(
    "usage.grant_changes",
    default=GrantChanges(mark=_no_mark, unchanged_since=_cannot_tell, changed_since=_cannot_say),
)
