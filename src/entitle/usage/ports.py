"""What the usage domain asks the layers above it, installed at start-up by `entitle.wiring`.

- `charge_credits`: usage of a feature priced in credits (a CREDIT_BASED price with a credit rate) draws
  the customer's credits in the transaction that counts it; the answer is the credit block of the usage
  report (None: the feature is not priced in credits for that customer). Installed by `entitle.credits`.
"""

from __future__ import annotations

from collections.abc import Callable
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
