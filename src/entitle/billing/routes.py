"""Our extension: `POST /api/v1/integrations` connects an environment to a billing provider."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from entitle.billing import service
from entitle.billing.schemas import IntegrationIn, IntegrationOut
from entitle.http.deps import DB, ServerKey
from entitle.http.wire import Envelope, envelope

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])


@router.post("", response_model=Envelope[IntegrationOut])
def connect_integration(body: IntegrationIn, key: ServerKey, db: DB, request: Request) -> dict[str, Any]:
    data_dir = request.app.state.settings.data_dir
    return envelope(IntegrationOut.of(service.connect(db, data_dir, key.environment_id, body)))


@router.get("", response_model=Envelope[list[IntegrationOut]])
def list_integrations(key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope([IntegrationOut.of(row) for row in service.list_integrations(db, key.environment_id)])
