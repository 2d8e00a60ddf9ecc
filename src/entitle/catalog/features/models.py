from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import JSONDoc, UTCDateTime


class Feature(EnvironmentScoped, Base):
    __tablename__ = "features"
    __table_args__ = (UniqueConstraint("environment_id", "ref_id"),)

    ref_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    feature_type: Mapped[str] = mapped_column(String(16))
    meter_type: Mapped[str] = mapped_column(String(16), default="None")
    feature_status: Mapped[str] = mapped_column(String(16), default="NEW")
    feature_units: Mapped[str | None] = mapped_column(Text, default=None)
    feature_units_plural: Mapped[str | None] = mapped_column(Text, default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
    enum_configuration: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDoc(), default=None)
    unit_transformation: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    meter: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
