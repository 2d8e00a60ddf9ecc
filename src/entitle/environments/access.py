"""What a client key may do in an environment: customer tokens (and the secret that signs them) and
the browser origins allowed to call. See docs/customer-tokens.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from entitle.clock import utcnow
from entitle.db import Database
from entitle.environments import rules, store
from entitle.environments.models import Environment, KeyKind
from entitle.environments.service import Principal
from entitle.errors import InvalidArgument, NotFound, Unauthenticated
from entitle.secrets import SecretBox

MAX_GRACE = timedelta(days=30)


@dataclass(frozen=True)
class EnvironmentSettings:
    name: str
    is_production: bool
    customer_tokens_required: bool
    allowed_origins: list[str]
    signing_secret_created_at: datetime | None
    previous_signing_secret_expires_at: datetime | None

    @classmethod
    def of(cls, env: Environment) -> EnvironmentSettings:
        previous_until = env.previous_signing_secret_expires_at
        if previous_until is not None and previous_until <= utcnow():
            previous_until = None  # the grace period is over: there is no previous secret any more
        return cls(
            name=env.name,
            is_production=env.is_production,
            customer_tokens_required=env.customer_tokens_required,
            allowed_origins=list(env.allowed_origins or []),
            signing_secret_created_at=env.signing_secret_created_at,
            previous_signing_secret_expires_at=previous_until,
        )


def check_customer_access(principal: Principal, customer_id: str, token: str | None, box: SecretBox) -> None:
    """A client key may read or act on `customer_id` only with a valid customer token for it (unless the
    environment turned tokens off). Server keys pass. Raises 401 with the same answer whether the
    customer exists or not: nothing about the customer is read here."""
    if principal.kind is KeyKind.SERVER or not principal.customer_tokens_required:
        return
    encrypted = principal.signing_secrets
    now = utcnow()
    plain = rules.SigningSecrets(
        current=box.decrypt(encrypted.current) if encrypted.current else None,
        previous=box.decrypt(encrypted.previous) if encrypted.previous else None,
        previous_expires_at=encrypted.previous_expires_at,
    )
    refusal = rules.customer_token_refusal(token, customer_id, plain.valid_at(now), now)
    if refusal is not None:
        raise Unauthenticated(refusal)


def environment_settings(db: Database, environment_id: int) -> EnvironmentSettings:
    with db.read() as session:
        env = store.environment_by_pk(session, environment_id)
        if env is None:
            raise NotFound("environment", str(environment_id))
        return EnvironmentSettings.of(env)


def settings_by_name(db: Database, name: str) -> EnvironmentSettings:
    with db.read() as session:
        env = store.environment_by_name(session, name)
        if env is None:
            raise NotFound("environment", name)
        return EnvironmentSettings.of(env)


def update_settings(
    db: Database,
    name: str,
    *,
    customer_tokens_required: bool | None = None,
    allowed_origins: list[str] | None = None,
) -> EnvironmentSettings:
    origins = rules.normalize_origins(allowed_origins) if allowed_origins is not None else None
    with db.transaction() as session:
        env = store.environment_by_name(session, name, for_update=True)
        if env is None:
            raise NotFound("environment", name)
        if customer_tokens_required is not None:
            env.customer_tokens_required = customer_tokens_required
        if origins is not None:
            env.allowed_origins = origins
        session.flush()
        return EnvironmentSettings.of(env)


def signing_secret(db: Database, box: SecretBox, name: str) -> str:
    """The environment's customer-token signing secret, made on first use."""
    with db.transaction() as session:
        env = store.environment_by_name(session, name, for_update=True)
        if env is None:
            raise NotFound("environment", name)
        if env.signing_secret_encrypted is None:
            secret = rules.new_signing_secret()
            env.signing_secret_encrypted = box.encrypt(secret)
            env.signing_secret_created_at = utcnow()
            return secret
        return box.decrypt(env.signing_secret_encrypted)


def rotate_signing_secret(db: Database, box: SecretBox, name: str, grace: timedelta) -> tuple[str, datetime | None]:
    """Replace the signing secret; tokens signed with the one replaced stay valid for `grace` (a page
    open in a browser keeps working until its backend hands it a new token). Returns the new secret and
    the end of the old one's grace period (None when there was no old one, or no grace)."""
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise InvalidArgument(f"the grace period must be between 0 and {MAX_GRACE.days} days")
    secret = rules.new_signing_secret()
    now = utcnow()
    with db.transaction() as session:
        env = store.environment_by_name(session, name, for_update=True)
        if env is None:
            raise NotFound("environment", name)
        keep_previous = env.signing_secret_encrypted is not None and grace > timedelta(0)
        env.previous_signing_secret_encrypted = env.signing_secret_encrypted if keep_previous else None
        env.previous_signing_secret_expires_at = now + grace if keep_previous else None
        env.signing_secret_encrypted = box.encrypt(secret)
        env.signing_secret_created_at = now
        return secret, env.previous_signing_secret_expires_at


def origin_allowed_somewhere(db: Database, origin: str) -> bool:
    """Whether any environment allows `origin`: a CORS preflight carries no key, so it cannot say which."""
    with db.read() as session:
        return any(origin in origins for origins in store.all_allowed_origins(session))
