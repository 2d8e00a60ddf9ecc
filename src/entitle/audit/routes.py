"""`GET /api/v1/audit-log` (our extension, server key only): the environment's writes, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.audit import service
from entitle.audit.schemas import AuditEntryOut
from entitle.http.deps import DB, Paging, ServerKey
from entitle.http.wire import PageEnvelope, page_envelope

router = APIRouter(prefix="/api/v1/audit-log", tags=["audit log"])


@router.get("", response_model=PageEnvelope[AuditEntryOut])
def list_audit_log(
    key: ServerKey,
    db: DB,
    page: Paging,
    entity_type: Annotated[str | None, Query(alias="entityType", max_length=64)] = None,
    entity_id: Annotated[str | None, Query(alias="entityId", max_length=255)] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
) -> dict[str, Any]:
    where = service.AuditFilter(entity_type=entity_type, entity_id=entity_id, actor=actor)
    return page_envelope(service.list_entries(db, key.environment_id, page, where), AuditEntryOut.of)
