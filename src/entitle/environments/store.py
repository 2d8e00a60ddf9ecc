from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.environments.models import ApiKey, Environment


def environment_by_name(session: Session, name: str) -> Environment | None:
    return session.scalars(select(Environment).where(Environment.name == name)).one_or_none()


def key_by_hash(session: Session, key_hash: str) -> tuple[ApiKey, Environment] | None:
    row = session.execute(
        select(ApiKey, Environment)
        .join(Environment, Environment.pk == ApiKey.environment_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).one_or_none()
    return None if row is None else (row[0], row[1])
