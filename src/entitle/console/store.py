"""Queries of console users, sessions and sign-in failures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from entitle.console.models import ConsoleLoginFailures, ConsoleSession, ConsoleUser
from entitle.customers.models import Customer
from entitle.db.pagination import Page, PageRequest, paginate
from entitle.environments.models import Environment


def user_by_email(s: Session, email: str) -> ConsoleUser | None:
    return s.scalar(select(ConsoleUser).where(ConsoleUser.email == email))


def users(s: Session) -> list[ConsoleUser]:
    return list(s.scalars(select(ConsoleUser).order_by(ConsoleUser.email)))


def enabled_admins(s: Session, *, for_update: bool = False) -> list[ConsoleUser]:
    stmt = select(ConsoleUser).where(ConsoleUser.role == "admin", ConsoleUser.disabled_at.is_(None))
    return list(s.scalars(stmt.order_by(ConsoleUser.pk).with_for_update() if for_update else stmt))


def user_count(s: Session) -> int:
    return int(s.scalar(select(func.count()).select_from(ConsoleUser)) or 0)


def session_by_hash(s: Session, token_hash: str) -> tuple[ConsoleSession, ConsoleUser] | None:
    row = s.execute(
        select(ConsoleSession, ConsoleUser)
        .join(ConsoleUser, ConsoleUser.pk == ConsoleSession.user_pk)
        .where(ConsoleSession.token_hash == token_hash)
    ).first()
    return None if row is None else (row[0], row[1])


def delete_session(s: Session, token_hash: str) -> None:
    s.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash))


def delete_sessions_of(s: Session, user_pk: int) -> None:
    s.execute(delete(ConsoleSession).where(ConsoleSession.user_pk == user_pk))


def delete_expired_sessions(s: Session, now: datetime) -> None:
    s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))


def failures_of(s: Session, email: str, *, for_update: bool = False) -> ConsoleLoginFailures | None:
    stmt = select(ConsoleLoginFailures).where(ConsoleLoginFailures.email == email)
    return s.scalar(stmt.with_for_update() if for_update else stmt)


def clear_failures(s: Session, email: str) -> None:
    s.execute(delete(ConsoleLoginFailures).where(ConsoleLoginFailures.email == email))


def all_environments(s: Session) -> list[Environment]:
    return list(s.scalars(select(Environment).order_by(Environment.name)))


def search_customers(s: Session, env_id: int, query: str, page: PageRequest) -> Page[Customer]:
    """Customers whose id, name or email contains `query` (any case), archived ones last by omission."""
    stmt = select(Customer).where(Customer.environment_id == env_id, Customer.archived_at.is_(None))
    if query:
        like = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(
                func.lower(Customer.ref_id).like(like, escape="\\"),
                func.lower(func.coalesce(Customer.name, "")).like(like, escape="\\"),
                func.lower(func.coalesce(Customer.email, "")).like(like, escape="\\"),
            )
        )
    return paginate(s, stmt, Customer.pk, page)
