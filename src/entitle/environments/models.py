from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, BigIntPK, Timestamped
from entitle.db.types import JSONDoc, UTCDateTime


class KeyKind(enum.StrEnum):
    SERVER = "server"
    CLIENT = "client"


class Environment(Timestamped, Base):
    __tablename__ = "environments"

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_production: Mapped[bool] = mapped_column(default=False)
    # A client key (public: it ships in browsers) reads a customer's data only with a customer token
    # signed by the environment's signing secret; off only for local development.
    customer_tokens_required: Mapped[bool] = mapped_column(default=True)
    # Browser origins allowed to call with the environment's keys (CORS); none by default.
    allowed_origins: Mapped[list[Any]] = mapped_column(JSONDoc(), default=list)
    # The customer-token signing secret, encrypted with the secret box (entitle.secrets); the previous
    # one stays valid until `previous_signing_secret_expires_at` so a rotation breaks no live page.
    signing_secret_encrypted: Mapped[str | None] = mapped_column(Text(), default=None)
    signing_secret_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    previous_signing_secret_encrypted: Mapped[str | None] = mapped_column(Text(), default=None)
    previous_signing_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ApiKey(Timestamped, Base):
    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_hash"),)

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    environment_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("environments.pk", ondelete="CASCADE"))
    kind: Mapped[KeyKind] = mapped_column(Enum(KeyKind, native_enum=False, length=16))
    # sha256 of the key: keys are 32 random bytes, so a fast hash is enough and lookups stay O(1).
    key_hash: Mapped[str] = mapped_column(String(64))
    # Enough of the key to tell keys apart in a list ("server-production-Ab3dE9xQ"), never enough to use.
    prefix: Mapped[str] = mapped_column(String(96))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Refreshed at most once a minute per key (see service.LAST_USED_GRANULARITY), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
