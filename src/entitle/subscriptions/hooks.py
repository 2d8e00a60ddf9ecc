"""Where a billing provider plugs into the subscription lifecycle.

A `PaymentGate` says whether a new paid subscription must wait for its first payment (PAYMENT_PENDING,
no entitlements); outcomes come back through `service.payment_succeeded` / `service.payment_failed`.
The default gate asks the billing adapter (through `ports.billing`): with no provider connected (or
when the subscription will not be synced to it) nothing waits for money and a paid subscription is
ACTIVE at once; a paid subscription the connected Stripe integration will bill waits
(`entitle.billing.subscription_sync.requires_payment`). Tests install their own gate.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from entitle.subscriptions import ports
from entitle.subscriptions.models import Subscription


class PaymentGate(Protocol):
    def requires_payment(self, session: Session, subscription: Subscription) -> bool: ...


class NoPaymentGate:
    def requires_payment(self, session: Session, subscription: Subscription) -> bool:
        return False


class BillingPaymentGate:
    """Waits for payment exactly when the environment's billing provider will bill the subscription
    (asks the billing adapter through `ports.billing`)."""

    def requires_payment(self, session: Session, subscription: Subscription) -> bool:
        return ports.billing.impl.requires_payment(session, subscription)


_gate: PaymentGate = BillingPaymentGate()


def payment_gate() -> PaymentGate:
    return _gate


def install_payment_gate(gate: PaymentGate | None) -> None:
    """Install a gate (None restores the default: the billing provider's)."""
    global _gate
    _gate = gate if gate is not None else BillingPaymentGate()
