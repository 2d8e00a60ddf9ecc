"""Where a billing provider plugs into the subscription lifecycle.

Without a provider (the default) nothing waits for money: a paid subscription is ACTIVE at once.
A provider (the billing work) installs a `PaymentGate` that says whether a new paid subscription
must wait for its first payment, and reports outcomes through `service.payment_succeeded` /
`service.payment_failed`.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from entitle.subscriptions.models import Subscription


class PaymentGate(Protocol):
    def requires_payment(self, session: Session, subscription: Subscription) -> bool: ...


class NoPaymentGate:
    def requires_payment(self, session: Session, subscription: Subscription) -> bool:
        return False


_gate: PaymentGate = NoPaymentGate()


def payment_gate() -> PaymentGate:
    return _gate


def install_payment_gate(gate: PaymentGate | None) -> None:
    """Install a provider's gate (None restores the default: no payment required)."""
    global _gate
    _gate = gate if gate is not None else NoPaymentGate()
