"""Queries of the audit log."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.audit.models import AuditEntry
from entitle.audit.rules import AuditFilter
from entitle.db.pagination import Page, PageRequest, decode_cursor, encode_cursor


def entries_page(s: Session, env_id: int, page: PageRequest, where: AuditFilter) -> Page[AuditEntry]:
    """Newest first (an audit log is read from the latest change back): `after` goes further back."""
    stmt = select(AuditEntry).where(AuditEntry.environment_id == env_id)
    if where.entity_type:
        stmt = stmt.where(AuditEntry.entity_type == where.entity_type)
    if where.entity_id:
        stmt = stmt.where(AuditEntry.entity_id == where.entity_id)
    if where.actor:
        stmt = stmt.where(AuditEntry.actor == where.actor)
    if page.before:
        boundary = decode_cursor(page.before)
        rows = list(s.scalars(stmt.where(AuditEntry.pk > boundary).order_by(AuditEntry.pk).limit(page.limit + 1)))
        has_more = len(rows) > page.limit
        items = list(reversed(rows[: page.limit]))
        return Page(
            items=items,
            next=encode_cursor(items[-1].pk) if items else None,
            prev=encode_cursor(items[0].pk) if items and has_more else None,
        )
    if page.after:
        stmt = stmt.where(AuditEntry.pk < decode_cursor(page.after))
    rows = list(s.scalars(stmt.order_by(AuditEntry.pk.desc()).limit(page.limit + 1)))
    has_more = len(rows) > page.limit
    items = rows[: page.limit]
    return Page(
        items=items,
        next=encode_cursor(items[-1].pk) if items and has_more else None,
        prev=encode_cursor(items[0].pk) if items and page.after else None,
    )
