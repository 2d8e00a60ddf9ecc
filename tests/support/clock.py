from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from entitle import clock


class TestClock:
    """A clock the test moves by hand; every time rule in Entitle reads it through entitle.clock."""

    __test__ = False

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def install(self) -> None:
        clock.set_clock(self.now)

    @staticmethod
    def uninstall() -> None:
        clock.set_clock(None)
