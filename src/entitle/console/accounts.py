"""Console users and their sessions: create, sign in (throttled), look up, switch environment, sign out.

Passwords are hashed with argon2id (argon2-cffi's defaults, the RFC 9106 recommendation); a hash made
with older parameters is upgraded at the next successful sign-in. A session is a random token: the
browser holds it encrypted and authenticated with the secret box (Fernet: AES + HMAC-SHA256), the
database only its sha256.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import ClassVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from entitle.clock import utcnow
from entitle.console import rules, store
from entitle.console.models import ConsoleLoginFailures, ConsoleSession, ConsoleUser
from entitle.console.rules import Role
from entitle.db import Database
from entitle.environments import store as environments
from entitle.environments.models import Environment
from entitle.errors import AlreadyExists, EntitleError, FailedPrecondition, NotFound, PermissionDenied, Unauthenticated
from entitle.secrets import SecretBox

SESSION_LIFETIME = timedelta(hours=12)
_hasher = PasswordHasher()


@cache  # made on the first sign-in, not at import: every process importing the app would pay an argon2 hash
def _dummy_hash() -> str:
    """Verified when the email has no user, so a wrong email costs as long as a wrong password (and the
    time of a failure does not tell which emails have accounts)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class Throttled(EntitleError):
    status_code: ClassVar[int] = 429
    code: ClassVar[str] = "TOO_MANY_ATTEMPTS"


@dataclass(frozen=True)
class Signed:
    """Who a console request comes from, and what its forms must carry."""

    user_pk: int
    email: str
    role: Role
    csrf_token: str
    environment_id: int | None

    def may(self, permission: rules.Permission) -> bool:
        return rules.may(self.role, permission)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(db: Database, email: str, role: str, password: str) -> ConsoleUser:
    address = rules.normalize_email(email)
    chosen = rules.role_of(role)
    rules.check_password(password)
    with db.transaction() as s:
        if store.user_by_email(s, address) is not None:
            raise AlreadyExists("console user", address)
        user = ConsoleUser(email=address, role=chosen.value, password_hash=_hasher.hash(password))
        s.add(user)
        s.flush()
        return user


def ensure_user(db: Database, email: str, role: str, password: str) -> bool:
    """Create the user unless one has the email (the demo loader); True when created."""
    try:
        create_user(db, email, role, password)
    except AlreadyExists:
        return False
    return True


def list_users(db: Database) -> list[ConsoleUser]:
    with db.read() as s:
        return store.users(s)


def change_role(db: Database, email: str, role: str, *, by_user_pk: int | None = None) -> ConsoleUser:
    chosen = rules.role_of(role)
    with db.transaction() as s:
        user = store.user_by_email(s, rules.normalize_email(email))
        if user is None:
            raise NotFound("console user", email)
        if user.pk == by_user_pk and chosen is not Role.ADMIN:
            raise FailedPrecondition("you cannot take the admin role from yourself; ask another admin")
        if chosen is not Role.ADMIN and _last_admin(s, user):
            raise FailedPrecondition(f"{user.email} is the last enabled admin: make another user admin first")
        user.role = chosen.value
        return user


def set_disabled(
    db: Database, email: str, disabled: bool, *, by_user_pk: int | None = None, now: datetime | None = None
) -> ConsoleUser:
    """Disable a user (their sessions end at once and they can no longer sign in) or enable them again.
    Nobody disables themselves, and the last enabled admin stays: someone must be able to administer."""
    with db.transaction() as s:
        user = store.user_by_email(s, rules.normalize_email(email))
        if user is None:
            raise NotFound("console user", email)
        if not disabled:
            user.disabled_at = None
            return user
        if user.pk == by_user_pk:
            raise FailedPrecondition("you cannot disable yourself; ask another admin")
        if _last_admin(s, user):
            raise FailedPrecondition(f"{user.email} is the last enabled admin: make another user admin first")
        if user.disabled_at is None:
            user.disabled_at = now or utcnow()
        store.delete_sessions_of(s, user.pk)
        return user


def _last_admin(s: Session, user: ConsoleUser) -> bool:
    """Whether `user` is the only enabled admin. The admins' rows are locked, so two admins disabling
    (or demoting) each other at once cannot both pass."""
    if user.role != Role.ADMIN.value or user.disabled_at is not None:
        return False
    return [a.pk for a in store.enabled_admins(s, for_update=True)] == [user.pk]


def sign_in(db: Database, email: str, password: str, now: datetime | None = None) -> tuple[str, Signed]:
    """A new session token for the right email and password. Each failure counts against the email;
    past `rules.MAX_FAILURES` it is locked for a while, right password or not."""
    now = now or utcnow()
    try:
        address = rules.normalize_email(email)
    except EntitleError:
        raise Unauthenticated("wrong email or password") from None
    with db.transaction() as s:
        row = store.failures_of(s, address)
        state = None if row is None else rules.Failures(row.failures, row.window_start, row.locked_until)
        if rules.locked(state, now):
            raise Throttled("too many failed sign-ins for this email: wait 15 minutes and try again")
        user = store.user_by_email(s, address)
        if user is None:
            _verify(_dummy_hash(), password)
        elif user.disabled_at is None and _verify(user.password_hash, password):
            store.clear_failures(s, address)
            store.delete_expired_sessions(s, now)
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = _hasher.hash(password)
            token = secrets.token_urlsafe(32)
            session = ConsoleSession(
                token_hash=_hash(token),
                user_pk=user.pk,
                csrf_token=secrets.token_urlsafe(32),
                environment_id=None,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
            s.add(session)
            return token, _signed(session, user)
        if user is not None and user.disabled_at is not None and _verify(user.password_hash, password):
            # Only the right password learns why: a wrong one reads as any other failure.
            raise PermissionDenied("this console user is disabled: ask an admin to enable it")
        failed = rules.after_failure(state, now)
        if row is None:
            s.add(ConsoleLoginFailures(email=address, failures=failed.count, window_start=failed.window_start))
        else:
            row.failures, row.window_start, row.locked_until = failed.count, failed.window_start, failed.locked_until
    raise Unauthenticated("wrong email or password")


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _signed(session: ConsoleSession, user: ConsoleUser) -> Signed:
    return Signed(user.pk, user.email, Role(user.role), session.csrf_token, session.environment_id)


def session_of(db: Database, token: str | None, now: datetime | None = None) -> Signed | None:
    if not token:
        return None
    now = now or utcnow()
    with db.read() as s:
        found = store.session_by_hash(s, _hash(token))
        if found is None:
            return None
        session, user = found
        if session.expires_at <= now or user.disabled_at is not None:
            return None
        return _signed(session, user)


def sign_out(db: Database, token: str) -> None:
    with db.transaction() as s:
        store.delete_session(s, _hash(token))


def switch_environment(db: Database, token: str, environment_name: str) -> Environment:
    with db.transaction() as s:
        env = environments.environment_by_name(s, environment_name)
        if env is None:
            raise NotFound("environment", environment_name)
        found = store.session_by_hash(s, _hash(token))
        if found is None:
            raise Unauthenticated("your session has ended: sign in again")
        found[0].environment_id = env.pk
        return env


def list_environments(db: Database) -> list[Environment]:
    with db.read() as s:
        return store.all_environments(s)


# --- the cookie ----------------------------------------------------------------------------------


def cookie_value(box: SecretBox, token: str) -> str:
    return box.encrypt(token)


def token_of(box: SecretBox, cookie: str | None) -> str | None:
    if not cookie:
        return None
    try:
        return box.decrypt(cookie)
    except (EntitleError, ValueError):
        return None
