"""An entity's sync with a billing integration, as customers and subscriptions show it (`syncStates`).

The billing adapter keeps these (`entitle.billing.store`); the customers and subscriptions domains, below
it, read them through the `reader` port it installs at start-up. With no billing adapter installed an
entity has no sync states.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Select
from sqlalchemy.orm import Session

from entitle.domain_events import Port
from entitle.http.wire import WireModel

# The entity kinds a domain asks about (the billing links' `entity_kind`).
CUSTOMER = "CUSTOMER"
SUBSCRIPTION = "SUBSCRIPTION"


@dataclass(frozen=True)
class SyncState:
    """One entity's sync with one integration, as `syncStates` and the sync-states endpoint show it."""

    entity_type: str  # PLAN | ADDON | CUSTOMER | SUBSCRIPTION | COUPON
    entity_id: str
    entity_version: int | None
    integration_id: str
    vendor_identifier: str
    billing_id: str | None
    status: str
    reason: str | None
    synced_at: datetime | None

    @property
    def error(self) -> str | None:
        return self.reason if self.status == "ERROR" else None


# (session, the entities' environments, entity kind, entity pks) -> the sync states of each entity that has
# any. The environments let the reader skip its query when the transaction already knows they have no
# billing integration (every new customer's answer, in an environment billing nothing).
Reader = Callable[[Session, Collection[int], str, Iterable[int]], dict[int, list[SyncState]]]


def _none(
    session: Session, env_ids: Collection[int], kind: str, entity_pks: Iterable[int]
) -> dict[int, list[SyncState]]:
    return {}


reader: Port[Reader] = Port("sync_states.reader", default=_none)


def sync_states_of(
    session: Session, env_ids: Collection[int], kind: str, entity_pks: Iterable[int]
) -> dict[int, list[SyncState]]:
    return reader.impl(session, env_ids, kind, entity_pks)


SYNC_STATUSES: tuple[str, ...] = ("PENDING", "SUCCESS", "ERROR", "NO_SYNC_REQUIRED")
# (entity kind, statuses) -> a query of the pks of the entities with a sync in one of those statuses,
# for a list to filter on (the console's subscriptions list); None: no entity has a sync state.
Matcher = Callable[[str, list[str]], Select[int] | None]


def _no_match(kind: str, statuses: list[str]) -> Select[int] | None:
    return None


matcher: Port[Matcher] = Port("sync_states.matcher", default=_no_match)


class SyncStateOut(WireModel):
    """One entity's sync with one integration (our extension; `syncStates` on customers and subscriptions)."""

    entity_type: str
    entity_id: str
    # The plan or add-on version (each published version is synced on its own).
    entity_version: int | None = None
    integration_id: str
    vendor_identifier: str
    # The provider's id of the entity (cus_..., sub_..., prod_..., a coupon id) once synced.
    billing_id: str | None = None
    status: Literal["PENDING", "SUCCESS", "ERROR", "NO_SYNC_REQUIRED"]
    # The provider's (or Entitle's) error, for ERROR.
    error: str | None = None
    # Why, for NO_SYNC_REQUIRED (and what a PENDING waits for, when known).
    reason: str | None = None
    synced_at: datetime | None = None

    @classmethod
    def of(cls, state: SyncState, entity_id: str | None = None) -> SyncStateOut:
        return cls(
            entity_type=state.entity_type,
            entity_id=entity_id if entity_id is not None else state.entity_id,
            entity_version=state.entity_version,
            integration_id=state.integration_id,
            vendor_identifier=state.vendor_identifier,
            billing_id=state.billing_id,
            status=state.status,
            error=state.error,
            reason=None if state.status == "ERROR" else state.reason,
            synced_at=state.synced_at,
        )
