"""Cache backends: where serialized entitlement states live between reads (and between processes).

A backend stores opaque strings under string keys. The client keeps its own decoded copy in memory
for the hot path and writes every change through to the backend, so a persistent backend gives
other processes on the host (and a restarted process) the last known state without a request.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class CacheBackend(Protocol):
    """Get/set/delete/clear of serialized entries. Implementations must be thread-safe."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def clear(self, prefix: str) -> None:
        """Drop every entry whose key starts with `prefix` (one client's namespace)."""
        ...


class MemoryCache:
    """The default: a dict in this process. With `max_entries`, the least recently used entries (read or
    written) are dropped beyond that many: a dropped entry is a miss, which the client answers by asking
    the server. The client's default is bounded (see `Entitle(cache_size=...)`); one built without
    `max_entries` keeps everything."""

    def __init__(self, max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._data: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        if self.max_entries is None:
            return self._data.get(key)
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self._data[key] = value
            if self.max_entries is not None:
                self._data.move_to_end(key)
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._data if k.startswith(prefix)]:
                del self._data[key]


class SQLiteFileCache:
    """A SQLite file shared by every process on the host that opens the same path (stdlib only).

    WAL mode lets readers proceed while one process writes; each thread gets its own connection.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._timeout = busy_timeout
        self._local = threading.local()
        conn = self._conn()
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS entitle_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            for attempt in range(50):
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:  # another process is creating the file right now
                    if attempt == 49:
                        raise
                    time.sleep(0.02)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM entitle_cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        self._conn().execute(
            "INSERT INTO entitle_cache (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete(self, key: str) -> None:
        self._conn().execute("DELETE FROM entitle_cache WHERE key = ?", (key,))

    def clear(self, prefix: str) -> None:
        # substr instead of LIKE: keys may contain % and _.
        self._conn().execute("DELETE FROM entitle_cache WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class RedisCache:
    """Redis, when the application has one. `redis` is imported lazily: it is not a dependency of
    Entitle; install it yourself (`pip install redis`). Pass a URL or an existing client."""

    def __init__(self, url: str = "redis://localhost:6379/0", *, client: Any = None, ttl: int | None = None) -> None:
        if client is None:
            try:
                import redis  # type: ignore[import-not-found, unused-ignore]
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("RedisCache needs the `redis` package: pip install redis") from exc
            client = redis.Redis.from_url(url)
        self._redis = client
        self._ttl = ttl

    def get(self, key: str) -> str | None:
        value = self._redis.get(key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def set(self, key: str, value: str) -> None:
        self._redis.set(key, value, ex=self._ttl)

    def delete(self, key: str) -> None:
        self._redis.delete(key)

    def clear(self, prefix: str) -> None:
        batch: list[Any] = []
        for key in self._redis.scan_iter(match=_glob_escape(prefix) + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                self._redis.delete(*batch)
                batch.clear()
        if batch:
            self._redis.delete(*batch)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
