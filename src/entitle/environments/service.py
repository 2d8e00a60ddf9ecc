"""Environments partition all data; API keys grant access to exactly one of them."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from entitle.db import Database
from entitle.environments import store
from entitle.environments.models import ApiKey, Environment, KeyKind
from entitle.errors import InvalidArgument, PermissionDenied, Unauthenticated

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PRODUCTION_NAMES = frozenset({"production", "prod"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: an environment and the kind of key that proved it."""

    environment_id: int
    environment_name: str
    kind: KeyKind

    def require_server(self) -> None:
        if self.kind is not KeyKind.SERVER:
            raise PermissionDenied("this endpoint needs a server API key; client keys may only read entitlements")


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def ensure_environment(db: Database, name: str) -> Environment:
    if not _NAME.match(name):
        raise InvalidArgument("environment names are 1-64 lowercase letters, digits, '-' or '_'")
    with db.transaction() as session:
        env = store.environment_by_name(session, name)
        if env is None:
            env = Environment(name=name, is_production=name in PRODUCTION_NAMES)
            session.add(env)
            session.flush()
        return env


def create_key(db: Database, environment: str, kind: KeyKind) -> str:
    """Create a key and return it; only its hash is stored, so this is the one time it is seen."""
    env = ensure_environment(db, environment)
    raw = f"{kind.value}-{env.name}-{secrets.token_urlsafe(32)}"
    with db.transaction() as session:
        session.add(ApiKey(environment_id=env.pk, kind=kind, key_hash=hash_key(raw), prefix=raw[:20]))
    return raw


def authenticate(db: Database, raw_key: str | None) -> Principal:
    if not raw_key:
        raise Unauthenticated("missing API key: send it in the X-API-KEY header")
    with db.read() as session:
        found = store.key_by_hash(session, hash_key(raw_key))
    if found is None:
        raise Unauthenticated("unknown or revoked API key")
    key, env = found
    return Principal(environment_id=env.pk, environment_name=env.name, kind=key.kind)
