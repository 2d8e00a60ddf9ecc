"""WAL checkpoints of a SQLite database, run beside its writers rather than inside their COMMITs.

SQLite's automatic checkpoint runs in the COMMIT that takes the WAL past 1,000 pages: that COMMIT
copies the pages into the database file and syncs it before it returns, while this process's writers
(`FairLock`) and every member of its group wait. With `wal_autocheckpoint=0` on the writer connections
the same PASSIVE checkpoint runs here, in a thread of its own, woken by the commits: it takes no
write lock, so writers keep committing to the WAL meanwhile. Durability is untouched: a COMMIT is
durable once its WAL frames are synced, as before (`synchronous` is unchanged).

SQLite starts the WAL over from its beginning only when a writer begins after a checkpoint copied every
frame and no reader still reads from the WAL; checkpoints running beside a steady stream of writes
rarely meet that, and the WAL would grow without end. So once it holds `WAL_LIMIT_FRAMES` frames, a
RESTART checkpoint runs inside this process's write turn: it copies what the last PASSIVE one left (the
frames of a few moments) and waits at most `RESTART_WAIT_MS` for the readers to leave the WAL, after
which the next writer starts it over. If readers stay longer, the next checkpoint tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:
    from entitle.db.database import FairLock

log = logging.getLogger("entitle.db")

# Checkpoints start at most this often: each syncs the database file, and a page written again meanwhile
# is copied once. Ingesting at full speed (bench/lock_holds.py) writes about 1,700 frames a second:
# about SQLite's own pace, a checkpoint per 1,000 frames.
CHECKPOINT_SECONDS = 0.5
# 4,000 pages of 4 KiB (16 MB): past this the WAL is started over (see above).
WAL_LIMIT_FRAMES = 4_000
RESTART_WAIT_MS = 10
# An idle thread ends (the next commit starts another): a Database nobody disposed, and its engine's
# connections, are not kept alive by it.
IDLE_SECONDS = 5.0


@dataclass
class CheckpointStats:
    """What the checkpoints did, for the benchmark and the tests."""

    runs: int = 0
    restarts: int = 0  # RESTART checkpoints run inside the write turn
    restarted: int = 0  # of which the readers left the WAL in time: the next writer starts it over
    largest_wal_frames: int = 0  # the most frames the WAL held when a checkpoint began
    longest_seconds: float = 0.0
    longest_inside_turn_seconds: float = 0.0  # the longest the writers waited for a RESTART
    failures: int = 0


class Checkpointer:
    """Checkpoints one SQLite database file's WAL in a daemon thread that a commit starts and that ends
    once idle."""

    def __init__(self, engine: Engine, turns: FairLock) -> None:
        self._engine = engine
        self._turns = turns
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stats = CheckpointStats()

    def committed(self) -> None:
        """A write transaction committed: the WAL grew."""
        with self._start:  # decided with the thread's own decision to end (`_run`): no wake is lost
            self._wake.set()
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="entitle-wal-checkpoint", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the thread (`Database.dispose`); a later commit starts another, as an engine disposed
        of still serves: the WAL must not grow unchecked behind a Database used again."""
        with self._start:
            self._stop.set()
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
        with self._start:
            self._thread = None
            self._stop.clear()
            self._wake.clear()

    def checkpoint(self) -> tuple[int, int]:
        """A PASSIVE checkpoint, and a RESTART one inside the write turn when the WAL is past its
        limit: the frames the WAL held and those copied to the database file."""
        began = time.monotonic()
        stats = self.stats
        _, frames, copied = self._checkpoint("PASSIVE")
        stats.largest_wal_frames = max(stats.largest_wal_frames, frames)
        if frames >= WAL_LIMIT_FRAMES:
            self._checkpoint("PASSIVE")  # what was written meanwhile, still beside the writers
            # A bulk writer's turn: never handed a group in progress (its members would wait for a
            # COMMIT no one sends), and the short writers waiting may go first.
            self._turns.acquire(bulk=True)
            inside = time.monotonic()
            try:
                busy, frames, copied = self._checkpoint("RESTART", busy_ms=RESTART_WAIT_MS)
            finally:
                self._turns.__exit__()
            stats.restarts += 1
            stats.restarted += not busy
            stats.longest_inside_turn_seconds = max(stats.longest_inside_turn_seconds, time.monotonic() - inside)
        stats.runs += 1
        stats.longest_seconds = max(stats.longest_seconds, time.monotonic() - began)
        return frames, copied

    def _checkpoint(self, mode: str, busy_ms: int | None = None) -> tuple[bool, int, int]:
        """Whether SQLite gave up waiting (readers, another process's checkpoint), the frames the WAL
        held and those copied into the database file."""
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            own_busy_ms = cursor.execute("PRAGMA busy_timeout").fetchone()[0]
            if busy_ms is not None:
                cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
            try:
                busy, frames, copied = cursor.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            finally:
                cursor.execute(f"PRAGMA busy_timeout={int(own_busy_ms):d}")
            cursor.close()
        finally:
            raw.close()
        return bool(busy), int(frames), int(copied)

    def _run(self) -> None:
        while True:
            self._wake.wait(IDLE_SECONDS)
            with self._start:
                if self._stop.is_set() or not self._wake.is_set():
                    self._thread = None
                    return
                self._wake.clear()
            try:
                self.checkpoint()
            except Exception:  # the next commit tries again; SQLite checkpoints when the last connection closes
                self.stats.failures += 1
                log.exception("WAL checkpoint failed")
            if self._stop.wait(CHECKPOINT_SECONDS):
                return
