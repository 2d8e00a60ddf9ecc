"""What a stream event carries on the wire (see docs/push.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Item:
    """A change-log row detached from its session, as the hub hands it to streams."""

    id: int
    environment_id: int
    kind: str
    customer_ref: str
    data: dict[str, Any]
    created_at: datetime

    def payload(self) -> dict[str, Any]:
        stamp = self.created_at.isoformat().replace("+00:00", "Z")
        return {**self.data, "timestamp": stamp}
