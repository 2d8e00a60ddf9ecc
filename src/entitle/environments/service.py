"""Environments partition all data; API keys grant access to exactly one of them."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from entitle.clock import utcnow
from entitle.db import Database
from entitle.db.database import make_private_dir
from entitle.db.pagination import Page, PageRequest
from entitle.environments import key_cache, store
from entitle.environments.models import ApiKey, Environment, KeyKind
from entitle.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unauthenticated

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PRODUCTION_NAMES = frozenset({"production", "prod"})
# A key's `last_used_at` is written at most this often: knowing the minute a key was last used is
# enough to retire it, and a write per request would serialize every read on SQLite.
LAST_USED_GRANULARITY = timedelta(minutes=1)
# Characters of the random part kept in a key's prefix: enough to tell keys apart, far from a guess.
PREFIX_RANDOM_CHARS = 8

log = logging.getLogger("entitle.environments")


@dataclass(frozen=True)
class EncryptedSigningSecrets:
    current: str | None = None
    previous: str | None = None
    previous_expires_at: datetime | None = None


@dataclass(frozen=True)
class Principal:
    """Who is calling: an environment, the key that proved it, and the environment's access settings
    (read with the key, so a request needs no second lookup)."""

    environment_id: int
    environment_name: str
    kind: KeyKind
    key_id: int | None = None
    # The key's display prefix (never the key): how the audit log names the caller.
    key_prefix: str | None = None
    customer_tokens_required: bool = True
    allowed_origins: tuple[str, ...] = ()
    signing_secrets: EncryptedSigningSecrets = EncryptedSigningSecrets()

    def require_server(self) -> None:
        if self.kind is not KeyKind.SERVER:
            raise PermissionDenied("this endpoint needs a server API key; client keys may only read entitlements")


@dataclass(frozen=True)
class KeyView:
    key: ApiKey
    environment_name: str


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


def environment_pk(db: Database, name: str) -> int:
    with db.read() as session:
        env = store.environment_by_name(session, name)
        if env is None:
            raise NotFound("environment", name)
        return env.pk


def create_key(db: Database, environment: str, kind: KeyKind) -> str:
    """Create a key and return it; only its hash is stored, so this is the one time it is seen."""
    env = ensure_environment(db, environment)
    head = f"{kind.value}-{env.name}-"
    raw = head + secrets.token_urlsafe(32)
    with db.transaction() as session:
        session.add(
            ApiKey(
                environment_id=env.pk,
                kind=kind,
                key_hash=hash_key(raw),
                prefix=raw[: len(head) + PREFIX_RANDOM_CHARS],
            )
        )
    return raw


def kept_key(db: Database, environment: str, kind: KeyKind, path: Path) -> str:
    """The key kept in `path` while it still opens `environment` with `kind`, else a new one kept there
    (0600). A kept key goes dead when it is revoked or the database is made anew beside the file: handing
    it out again (the demo's printed key, the /demo page's client key) would hand out one every request
    refuses."""
    if path.exists():
        raw = path.read_text().strip()
        with db.read_engine.connect() as connection:
            found = store.live_key(connection, hash_key(raw))
        if found is not None and found.environment_name == environment and KeyKind(found.kind) == kind:
            return raw
    raw = create_key(db, environment, kind)
    make_private_dir(path.parent)
    path.write_text(raw + "\n")
    path.chmod(0o600)
    return raw


MISSING_KEY = "missing API key: send it in the X-API-KEY header"


def authenticate(db: Database, raw_key: str | None) -> Principal:
    if not raw_key:
        raise Unauthenticated(MISSING_KEY)
    # No cache here: a revocation holds for the very next request of every process (the entitlement
    # read routes alone reuse a server key's answer for up to a second: `key_cache`).
    with db.read_engine.connect() as connection:
        principal, key_pk, last_used_at = _live_principal(connection, raw_key)
    now = utcnow()
    if _touch_due(last_used_at, now):
        _touch(db, key_pk, now)
    return principal


def _touch_due(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is None or now - last_used_at >= LAST_USED_GRANULARITY


def _live_principal(connection: Connection, raw_key: str) -> tuple[Principal, int, datetime | None]:
    found = store.live_key(connection, hash_key(raw_key))
    if found is None:
        raise Unauthenticated("unknown or revoked API key")
    principal = Principal(
        environment_id=found.environment_pk,
        environment_name=found.environment_name,
        kind=KeyKind(found.kind),
        key_id=found.pk,
        key_prefix=found.prefix,
        customer_tokens_required=bool(found.customer_tokens_required),
        allowed_origins=tuple(found.allowed_origins or ()),
        signing_secrets=EncryptedSigningSecrets(
            current=found.signing_secret_encrypted,
            previous=found.previous_signing_secret_encrypted,
            previous_expires_at=found.previous_signing_secret_expires_at,
        ),
    )
    return principal, found.pk, found.last_used_at


class KeyRead:
    """An API key that the use case reads itself, as the first statement of its own transaction, rather
    than in a read (and a worker-thread hop) of its own before it: read there, a revoked key is refused
    as freshly as `authenticate` refuses it, and the refusal rolls back whatever the transaction began.
    `admit`: the caller's checks of the principal read (kind, environment header, naming the actor); they
    run before anything else of the transaction. `read()` without a connection reads the key on its own,
    for a use case that must know its caller before its transaction (one that asks a billing provider
    first). The use case records the key's use (`last_used_at`, `record_use`) once its transaction ended,
    in a transaction of its own as `authenticate` does, whether it succeeded or not."""

    def __init__(self, db: Database, raw_key: str, admit: Callable[[Principal], None]) -> None:
        self.db = db
        self.raw_key = raw_key
        self.admit = admit
        self.principal: Principal | None = None
        self._use: tuple[int, datetime] | None = None

    def read(self, connection: Connection | None = None) -> Principal:
        """The principal, read at the first call (on `connection`, or on a connection of its own)."""
        if self.principal is not None:
            return self.principal
        if connection is None:
            principal = authenticate(self.db, self.raw_key)
        else:
            principal, key_pk, last_used_at = _live_principal(connection, self.raw_key)
            now = utcnow()
            if _touch_due(last_used_at, now):
                self._use = (key_pk, now)
        self.admit(principal)
        self.principal = principal
        return principal

    def environment_of(self, s: Session) -> int:
        """The key's environment, read in `s`'s transaction (if not read yet)."""
        return self.read(s.connection()).environment_id

    def record_use(self) -> None:
        """After the use case's transaction (never inside it: its rollback would forget the use)."""
        if self._use is not None:
            key_pk, now = self._use
            self._use = None
            _touch(self.db, key_pk, now)


def _touch(db: Database, key_pk: int, now: datetime) -> None:
    try:
        with db.transaction() as session:
            store.touch_key(session, key_pk, now, now - LAST_USED_GRANULARITY)
    except OperationalError as exc:  # bookkeeping: a busy database must not fail the request it serves
        log.info("could not record the use of API key %s: %s", key_pk, exc.orig)


def list_keys(
    db: Database, page: PageRequest, *, environment_id: int | None = None, include_revoked: bool = True
) -> Page[KeyView]:
    with db.read() as session:
        found = store.keys_page(session, page, environment_id=environment_id, include_revoked=include_revoked)
        names = store.environment_names(session)
    return Page(
        items=[KeyView(key, names[key.environment_id]) for key in found.items], next=found.next, prev=found.prev
    )


def _key_pk(key_id: str) -> int | None:
    return int(key_id) if key_id.isascii() and key_id.isdigit() and len(key_id) <= 18 else None


def revoke_key(
    db: Database, key_id: str, *, environment_id: int | None = None, caller_key_id: int | None = None
) -> KeyView:
    """Revoke a key by its id; revoking twice keeps the first time. Every process refuses the key from
    its next request on (`authenticate` reads it each time). A key does not revoke itself through the
    API: that would lock its caller out halfway through a rotation (use another key, or the CLI)."""
    pk = _key_pk(key_id)
    if pk is not None and pk == caller_key_id:
        raise FailedPrecondition(
            "a key cannot revoke itself: revoke it with another server key, or with `entitle keys revoke`"
        )
    with db.transaction() as session:
        found = None if pk is None else store.key_by_pk(session, pk, environment_id, for_update=True)
        if found is None:
            raise NotFound("API key", key_id)
        revoked = _revoke(*found)
    key_cache.forget_all()
    return revoked


def revoke_raw_key(db: Database, raw_key: str) -> KeyView:
    """Revoke a key given the key itself (a leaked one, from the command line)."""
    with db.transaction() as session:
        found = store.key_by_hash(session, hash_key(raw_key), include_revoked=True, for_update=True)
        if found is None:
            raise NotFound("API key", "(the key given)")
        revoked = _revoke(*found)
    key_cache.forget_all()
    return revoked


def _revoke(key: ApiKey, env: Environment) -> KeyView:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return KeyView(key, env.name)
