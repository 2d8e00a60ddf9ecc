"""Queries for integrations and billing links."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.billing.models import BillingEvent, BillingLink, Integration
from entitle.clock import utcnow


def integration(
    session: Session, env_id: int, vendor: str, *, for_update: bool = False, include_removed: bool = False
) -> Integration | None:
    """The environment's connected integration with a vendor (`include_removed`: or its removed one)."""
    stmt = select(Integration).where(Integration.environment_id == env_id, Integration.vendor == vendor)
    if not include_removed:
        stmt = stmt.where(Integration.removed_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def integrations(session: Session, env_id: int) -> list[Integration]:
    return list(
        session.scalars(
            select(Integration)
            .where(Integration.environment_id == env_id, Integration.removed_at.is_(None))
            .order_by(Integration.pk)
        )
    )


def link(session: Session, integration_pk: int, kind: str, entity_pk: int) -> BillingLink | None:
    return session.scalars(
        select(BillingLink).where(
            BillingLink.integration_pk == integration_pk,
            BillingLink.entity_kind == kind,
            BillingLink.entity_pk == entity_pk,
        )
    ).one_or_none()


def links(session: Session, integration_pk: int, kind: str, entity_pks: Iterable[int]) -> dict[int, BillingLink]:
    pks = list(entity_pks)
    if not pks:
        return {}
    rows = session.scalars(
        select(BillingLink).where(
            BillingLink.integration_pk == integration_pk,
            BillingLink.entity_kind == kind,
            BillingLink.entity_pk.in_(pks),
        )
    )
    return {row.entity_pk: row for row in rows}


def links_by_billing_id(
    session: Session, integration_pk: int, kind: str, billing_ids: Iterable[str]
) -> list[BillingLink]:
    ids = list(billing_ids)
    if not ids:
        return []
    return list(
        session.scalars(
            select(BillingLink).where(
                BillingLink.integration_pk == integration_pk,
                BillingLink.entity_kind == kind,
                BillingLink.billing_id.in_(ids),
            )
        )
    )


def put_link(
    session: Session,
    integration: Integration,
    kind: str,
    entity_pk: int,
    state: str,
    *,
    billing_id: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> BillingLink:
    """Create or overwrite the link of one entity (its billing id survives a state without one)."""
    row = link(session, integration.pk, kind, entity_pk)
    if row is None:
        row = BillingLink(
            environment_id=integration.environment_id,
            integration_pk=integration.pk,
            entity_kind=kind,
            entity_pk=entity_pk,
        )
        session.add(row)
    row.sync_state = state
    row.reason = reason
    if billing_id is not None:
        row.billing_id = billing_id
    if details is not None:
        row.details = details
    if state != "PENDING":
        row.synced_at = utcnow()
    session.flush()
    return row


def integration_by_ref(session: Session, ref: str, vendor: str) -> Integration | None:
    return session.scalars(
        select(Integration).where(
            Integration.ref_id == ref, Integration.vendor == vendor, Integration.removed_at.is_(None)
        )
    ).one_or_none()


def billing_event(
    session: Session, integration_pk: int, event_id: str, *, for_update: bool = False
) -> BillingEvent | None:
    stmt = select(BillingEvent).where(BillingEvent.integration_pk == integration_pk, BillingEvent.event_id == event_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def billing_events(session: Session, integration_pk: int) -> list[BillingEvent]:
    return list(
        session.scalars(
            select(BillingEvent).where(BillingEvent.integration_pk == integration_pk).order_by(BillingEvent.pk)
        )
    )
