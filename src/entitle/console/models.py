from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from entitle.clock import utcnow
from entitle.db.base import Base, BigIntPK, Timestamped
from entitle.db.types import UTCDateTime


class ConsoleUser(Timestamped, Base):
    """A person who signs in to the console. Users are not scoped to an environment: one login sees
    every environment (and switches between them)."""

    __tablename__ = "console_users"

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # argon2id, in its self-describing PHC string (parameters and salt included).
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ConsoleSession(Base):
    """A signed-in browser. The cookie carries the token (encrypted and authenticated); only its sha256
    is stored, so a copy of the database opens no session. Logging out deletes the row."""

    __tablename__ = "console_sessions"

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_pk: Mapped[int] = mapped_column(BigIntPK, ForeignKey("console_users.pk", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    environment_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("environments.pk", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsoleLoginFailures(Base):
    """Failed sign-ins per email (whether or not a user has it, so throttling reveals no account)."""

    __tablename__ = "console_login_failures"

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    failures: Mapped[int] = mapped_column(BigInteger, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
