from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from entitle.audit.models import AuditEntry
from entitle.http.wire import WireModel


class AuditEntryOut(WireModel):
    id: str
    occurred_at: datetime
    # Who: a console user's email, or the prefix of the API key that made the call.
    actor: str
    actor_type: Literal["USER", "API_KEY", "CLI"]
    entity_type: str
    entity_id: str
    action: Literal["CREATE", "UPDATE", "DELETE"]
    # CREATE: the new row's values; UPDATE: `{field: [before, after]}`; secrets read "[redacted]".
    changes: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            id=str(entry.pk),
            occurred_at=entry.occurred_at,
            actor=entry.actor,
            actor_type={"user": "USER", "api_key": "API_KEY"}.get(entry.actor_kind, "CLI"),
            entity_type=entry.entity_type,
            entity_id=entry.entity_id,
            action=entry.action.upper(),
            changes=entry.changes or {},
        )
