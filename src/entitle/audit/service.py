"""Reading the audit log (the hook in `subscribers` writes it)."""

from __future__ import annotations

from entitle.audit import store
from entitle.audit.models import AuditEntry
from entitle.audit.rules import AuditFilter
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest

__all__ = ["AuditFilter", "list_entries"]


def list_entries(db: Database, env_id: int, page: PageRequest, where: AuditFilter | None = None) -> Page[AuditEntry]:
    with db.read() as s:
        return store.entries_page(s, env_id, page, where or AuditFilter())
