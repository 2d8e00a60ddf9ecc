"""Whose usage it is: a customer's grants (loaded once per transaction step), the usage window a
moment falls in, and what a counter's new value announces (`UsageChanged`, `UsageLimitHit`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple, Protocol

from sqlalchemy.orm import Session

from entitle.catalog.features.models import Feature
from entitle.catalog.packages.allowance import Allowance
from entitle.customers.models import Customer
from entitle.domain_events import publish
from entitle.grants.engine import Grant, Window, customer_grants, usage_window
from entitle.usage.events import UsageChanged, UsageLimitHit


class CustomerKey(Protocol):
    """What usage announces of a customer: its pk and id (a `Customer` row, or a `Who`)."""

    @property
    def pk(self) -> int: ...
    @property
    def ref_id(self) -> str: ...


def customer_row(s: Session, customer: CustomerKey) -> Customer:
    """The customer's row: itself when it is one, else read by its pk (what was resolved ahead holds only
    its pk and id)."""
    if isinstance(customer, Customer):
        return customer
    row = s.get(Customer, customer.pk)
    assert row is not None, customer  # customers are archived, never deleted
    return row


class Who(NamedTuple):
    """A customer by its pk and id, where no row of it is needed (ingestion's counters and announcements)."""

    pk: int
    ref_id: str


class GrantCache:
    """Grants per (customer, resource), loaded once."""

    def __init__(
        self,
        s: Session,
        env_id: int,
        now: datetime,
        known: dict[tuple[int, str | None], dict[str, Grant]] | None = None,
    ) -> None:
        """`known`: grants already resolved at `now` (those of some features only: the ones asked)."""
        self.s, self.env_id, self.now = s, env_id, now
        self._cache: dict[tuple[int, str | None], dict[str, Grant]] = dict(known or {})

    def of(self, customer: CustomerKey, resource_ref: str | None) -> dict[str, Grant]:
        key = (customer.pk, resource_ref)
        if key not in self._cache:
            # Grants resolved ahead come with the customer's pk and id only (`usage.ahead`), and cover its
            # owners: a row is read here only for an owner they do not.
            row = customer_row(self.s, customer)
            self._cache[key] = customer_grants(self.s, self.env_id, row, resource_ref, self.now)[0]
        return self._cache[key]

    def forget(self, customer: CustomerKey, resource_ref: str | None) -> None:
        self._cache.pop((customer.pk, resource_ref), None)

    def window(self, customer: CustomerKey, feature: Feature, resource_ref: str | None, at: datetime) -> Window:
        grant = self.of(customer, resource_ref).get(feature.ref_id)
        return usage_window(feature, grant.allowance if grant else None, grant.usage_anchor if grant else None, at)


@dataclass(slots=True)
class CounterMoved:
    """A counter's new value, and what it is measured against. Not frozen, though nobody changes one:
    an ingestion batch makes one per counter it moves (~120), and a frozen one cost four times more to
    build (each field set through `object.__setattr__`)."""

    customer: CustomerKey
    feature_ref: str
    resource_ref: str | None
    window: Window
    allowance: Allowance | None
    current: Decimal
    in_current_window: bool
    # False: the batch left the value as it was (`current`), which stream clients and the snapshots
    # already hold: no `UsageChanged`.
    changed: bool = True


def announce(s: Session, env_id: int, moved: CounterMoved) -> None:
    """`UsageChanged` for the current window (stream clients hear it), and `UsageLimitHit` when a hard
    limit is reached or a soft one exceeded (the webhooks adapter sends each once per window and limit).
    Usage is never refused for a limit: the check denies access at a hard limit."""
    if moved.in_current_window and moved.changed:
        publish(
            s,
            UsageChanged(
                env_id=env_id,
                customer_ref=moved.customer.ref_id,
                resource_ref=moved.resource_ref,
                feature_ref=moved.feature_ref,
                current=moved.current,
            ),
        )
    allowance = moved.allowance
    if allowance is None or allowance.has_unlimited or allowance.usage_limit is None:
        return
    if allowance.has_soft_limit:
        if moved.current <= allowance.usage_limit:
            return
    elif moved.current < allowance.usage_limit:
        return
    publish(
        s,
        UsageLimitHit(
            env_id=env_id,
            soft=allowance.has_soft_limit,
            customer_pk=moved.customer.pk,
            customer_ref=moved.customer.ref_id,
            feature_ref=moved.feature_ref,
            resource_ref=moved.resource_ref,
            window_start=moved.window.start,
            window_end=moved.window.end,
            limit=allowance.usage_limit,
            current=moved.current,
        ),
    )
