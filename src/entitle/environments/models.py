from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, BigIntPK, Timestamped
from entitle.db.types import UTCDateTime


class KeyKind(enum.StrEnum):
    SERVER = "server"
    CLIENT = "client"


class Environment(Timestamped, Base):
    __tablename__ = "environments"

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_production: Mapped[bool] = mapped_column(default=False)


class ApiKey(Timestamped, Base):
    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_hash"),)

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    environment_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("environments.pk", ondelete="CASCADE"))
    kind: Mapped[KeyKind] = mapped_column(Enum(KeyKind, native_enum=False, length=16))
    # sha256 of the key: keys are 32 random bytes, so a fast hash is enough and lookups stay O(1).
    key_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(24))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
