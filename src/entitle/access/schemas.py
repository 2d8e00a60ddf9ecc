from __future__ import annotations

from datetime import datetime
from typing import Literal

from entitle.environments.access import EnvironmentSettings
from entitle.environments.service import KeyView
from entitle.http.wire import WireModel


class ApiKeyOut(WireModel):
    """An API key as a list shows it: never the key, only its prefix."""

    id: str
    prefix: str
    kind: Literal["SERVER", "CLIENT"]
    environment: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, view: KeyView) -> ApiKeyOut:
        key = view.key
        return cls(
            id=str(key.pk),
            prefix=key.prefix,
            kind="SERVER" if key.kind.value == "server" else "CLIENT",
            environment=view.environment_name,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class EnvironmentSettingsOut(WireModel):
    name: str
    is_production: bool
    customer_tokens_required: bool
    allowed_origins: list[str]
    signing_secret_created_at: datetime | None = None
    previous_signing_secret_expires_at: datetime | None = None

    @classmethod
    def of(cls, s: EnvironmentSettings) -> EnvironmentSettingsOut:
        return cls(
            name=s.name,
            is_production=s.is_production,
            customer_tokens_required=s.customer_tokens_required,
            allowed_origins=s.allowed_origins,
            signing_secret_created_at=s.signing_secret_created_at,
            previous_signing_secret_expires_at=s.previous_signing_secret_expires_at,
        )
