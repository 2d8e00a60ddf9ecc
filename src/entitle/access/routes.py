"""Our extension endpoints: the calling environment's API keys and access settings (server key only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from entitle.access.schemas import ApiKeyOut, EnvironmentSettingsOut
from entitle.environments import access, service
from entitle.http.deps import DB, Paging, ServerKey
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope

keys_router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
environment_router = APIRouter(prefix="/api/v1/environment", tags=["environment"])


@keys_router.get("", response_model=PageEnvelope[ApiKeyOut])
def list_keys(key: ServerKey, db: DB, page: Paging) -> dict[str, Any]:
    return page_envelope(service.list_keys(db, page, environment_id=key.environment_id), ApiKeyOut.of)


@keys_router.post("/{key_id}/revoke", response_model=Envelope[ApiKeyOut])
def revoke_key(key_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    revoked = service.revoke_key(db, key_id, environment_id=key.environment_id, caller_key_id=key.key_id)
    return envelope(ApiKeyOut.of(revoked))


@environment_router.get("", response_model=Envelope[EnvironmentSettingsOut])
def get_environment(key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(EnvironmentSettingsOut.of(access.environment_settings(db, key.environment_id)))
