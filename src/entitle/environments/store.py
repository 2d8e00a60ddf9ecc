from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.orm import Session

from entitle.db.pagination import Page, PageRequest, paginate
from entitle.db.rows import PreparedSelect
from entitle.environments.models import ApiKey, Environment


def environment_by_name(session: Session, name: str, *, for_update: bool = False) -> Environment | None:
    stmt = select(Environment).where(Environment.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def environment_by_pk(session: Session, pk: int) -> Environment | None:
    return session.get(Environment, pk)


def environment_names(session: Session) -> dict[int, str]:
    return {pk: name for pk, name in session.execute(select(Environment.pk, Environment.name))}


def all_allowed_origins(session: Session) -> list[list[str]]:
    return [list(origins or []) for origins in session.scalars(select(Environment.allowed_origins))]


# What authenticating a request needs of a live key and its environment, as plain columns on a bare
# connection, built once: every request of every route reads it, and the ORM's session, statement
# building and entity loading cost several times the query itself.
_LIVE_KEY = (
    select(
        ApiKey.pk,
        ApiKey.kind,
        ApiKey.prefix,
        ApiKey.last_used_at,
        Environment.pk.label("environment_pk"),
        Environment.name.label("environment_name"),
        Environment.customer_tokens_required,
        Environment.allowed_origins,
        Environment.signing_secret_encrypted,
        Environment.previous_signing_secret_encrypted,
        Environment.previous_signing_secret_expires_at,
    )
    .join(Environment, Environment.pk == ApiKey.environment_id)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


# Sent prepared (`rows.PreparedSelect`: the dialect's SQL through the driver, the columns' own processors).
_PREPARED_LIVE_KEY = PreparedSelect(_LIVE_KEY)


def live_key(connection: Connection, key_hash: str) -> Any:
    """The unrevoked key with this hash and its environment's access settings (a named tuple of `_LIVE_KEY`'s
    columns), or None."""
    return _PREPARED_LIVE_KEY.first(connection, {"key_hash": key_hash})


def key_by_hash(
    session: Session, key_hash: str, *, include_revoked: bool = False, for_update: bool = False
) -> tuple[ApiKey, Environment] | None:
    stmt = (
        select(ApiKey, Environment)
        .join(Environment, Environment.pk == ApiKey.environment_id)
        .where(ApiKey.key_hash == key_hash)
    )
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update(of=ApiKey)
    row = session.execute(stmt).one_or_none()
    return None if row is None else (row[0], row[1])


def key_by_pk(
    session: Session, pk: int, environment_id: int | None, *, for_update: bool = False
) -> tuple[ApiKey, Environment] | None:
    stmt = select(ApiKey, Environment).join(Environment, Environment.pk == ApiKey.environment_id).where(ApiKey.pk == pk)
    if environment_id is not None:
        stmt = stmt.where(ApiKey.environment_id == environment_id)
    if for_update:
        stmt = stmt.with_for_update(of=ApiKey)
    row = session.execute(stmt).one_or_none()
    return None if row is None else (row[0], row[1])


def keys_page(
    session: Session, page: PageRequest, *, environment_id: int | None, include_revoked: bool
) -> Page[ApiKey]:
    stmt = select(ApiKey)
    if environment_id is not None:
        stmt = stmt.where(ApiKey.environment_id == environment_id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return paginate(session, stmt, ApiKey.pk, page)


def touch_key(session: Session, pk: int, now: datetime, stale_before: datetime) -> None:
    """Record a use, unless another request of any process already did within the granularity."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.pk == pk, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= stale_before))
        .values(last_used_at=now, updated_at=ApiKey.updated_at)
    )
