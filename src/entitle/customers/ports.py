"""What the customers domain asks of the subscriptions above it (installed by `entitle.wiring`)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from entitle.customers.models import Customer
from entitle.domain_events import Port

# The resources (ids, sorted) a customer has held subscriptions for, ended ones included.
HeldResources = Callable[[Session, Customer], list[str]]


def _none(session: Session, customer: Customer) -> list[str]:
    return []


held_resources: Port[HeldResources] = Port("customers.held_resources", default=_none)
