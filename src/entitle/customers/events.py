"""What happens to customers, announced in the transaction that did it (see `entitle.domain_events`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from entitle.customers.models import Customer
from entitle.domain_events import DomainEvent, publish


@dataclass(frozen=True, kw_only=True)
class CustomerEvent(DomainEvent):
    customer: Customer


@dataclass(frozen=True, kw_only=True)
class CustomerCreated(CustomerEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class CustomerUpdated(CustomerEvent):
    # The fields a billing provider's customer also holds (`name`, `email`, `language`) this update
    # changed, so the billing adapter re-sends them only when they did.
    contact_changed: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class CustomerArchived(CustomerEvent):
    """Its name and email are erased; its subscriptions end (the subscriptions domain reacts)."""


@dataclass(frozen=True, kw_only=True)
class CustomerUnarchived(CustomerEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class EntitlementsChanged(DomainEvent):
    """What a customer (for one resource, or `resource_ref` None for the customer itself) is entitled
    to may have changed: stream clients and webhook receivers re-read it, caches drop it."""

    customer_ref: str
    resource_ref: str | None = None


_ONCE = "entitle.customers.entitlements_changed"


def entitlements_changed(session: Session, env_id: int, customer_ref: str, resource_ref: str | None = None) -> None:
    """Publish `EntitlementsChanged` at most once per transaction for one customer and resource.

    One cause often touches several rows (an upgrade cancels one subscription and creates another;
    archiving a customer ends its subscriptions): listeners hear of it once, not once per row."""
    seen: set[tuple[int, str, str | None]] = session.info.setdefault(_ONCE, set())
    key = (env_id, customer_ref, resource_ref)
    if key in seen:
        return
    seen.add(key)
    publish(session, EntitlementsChanged(env_id=env_id, customer_ref=customer_ref, resource_ref=resource_ref))
