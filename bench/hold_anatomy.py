"""Where a SQLite write-lock hold's wall time goes, for bench/lock_holds.py's server child only.

Installed by patching the classes of `entitle.db` in the server process (nothing in Entitle itself is
timed): each hold, from BEGIN IMMEDIATE returned to its COMMIT or ROLLBACK returned, is split into
the pieces of its timeline:

- `member`: a writer's own transaction (its SAVEPOINT to its RELEASE: its statements and the Python
  work between them), split by the member's thread into its CPU (`time.thread_time`), the time it was
  runnable but waited for a CPU the machine's other processes held (`/proc/thread-self/schedstat`),
  and the rest: blocked, waiting for the GIL (another thread of the process computing) or the disk;
- `wake`: from the turn handed over (the next writer's gate opened) until that writer's SAVEPOINT
  began: its thread waking up, getting the GIL, making its session;
- `end turn`: from a member's RELEASE until it hands the turn over or starts the COMMIT (deciding,
  and the FairLock's mutex);
- `commit`: the COMMIT (its fsync with synchronous=FULL); `begin`: from BEGIN returned to the first
  member's SAVEPOINT;
- and, beside the timeline, the process's CPU over the hold (all threads), and how much of the hold
  a WAL checkpoint ran meanwhile (PASSIVE, beside the writers, or RESTART, in the write turn).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

KEEP_LONGEST = 8


def _now() -> tuple[float, float, float]:
    """Wall, this thread's CPU, and its waits for a CPU so far (seconds)."""
    return time.perf_counter(), time.thread_time(), _runqueue_ns() / 1e9


def _runqueue_ns() -> int:
    """Nanoseconds this thread has spent runnable but not running (waiting for a CPU)."""
    try:
        with open("/proc/thread-self/schedstat") as stat:
            return int(stat.read().split()[1])
    except OSError:
        return 0


@dataclass
class _Member:
    thread: str
    bulk: bool
    entered: float
    cpu: float = 0.0
    runqueue: float = 0.0
    released: float = 0.0
    first_statement: str = ""
    sql: float = 0.0  # wall time inside the driver's execute calls
    statements: int = 0
    slowest: tuple[float, str] = (0.0, "")
    statement_began: float = 0.0


@dataclass
class _Hold:
    began: float
    process_cpu: float
    thread: str
    members: list[_Member] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)  # (instant, what happened)
    ended: float = 0.0
    ending_runqueue: float = 0.0  # of the thread ending the hold, from its member's RELEASE on


class HoldAnatomy:
    def __init__(self) -> None:
        from entitle.db import checkpoints, database, group_commit

        self.lock = threading.Lock()
        self.started = time.perf_counter()
        self.holds: list[dict[str, Any]] = []  # the longest, explained
        self.on_cpu: list[dict[str, Any]] = []  # the longest once the waits for a CPU are taken out
        self.count = 0
        self.totals: dict[str, float] = {}
        self.checkpoints: list[tuple[float, float, str]] = []
        self.commits: dict[str, list[float]] = {}
        # Per write transaction while loaded: (wall, CPU, waits for a CPU) of its queueing, its work and
        # its commit (RELEASE to its group's COMMIT returned and its announcements made).
        self.writers: dict[str, list[list[tuple[float, ...]]]] = {}
        self.loaded = False
        self.closed_kinds: list[str] = []  # of every hold ended, in order
        self.entered_after: dict[int, int] = {}  # by thread: holds ended when its member began
        self.waited_behind: dict[str, dict[str, int]] = {}  # COMMIT ms by kind of hold and checkpoint overlap
        self._open: dict[int, _Hold] = {}  # by id of the group
        self._current: threading.local = threading.local()
        anatomy = self

        original_transaction = group_commit.GroupCommit.transaction

        @contextmanager
        def transaction(commit: Any, nested: Any, *, bulk: bool = False) -> Iterator[Any]:
            if getattr(commit._inside, "active", False):
                with original_transaction(commit, nested, bulk=bulk) as session:
                    yield session
                return
            marks = [_now()]
            anatomy._current.marks = marks
            asked_after = len(anatomy.closed_kinds)
            try:
                with original_transaction(commit, nested, bulk=bulk) as session:
                    yield session
            finally:
                anatomy._current.marks = None
            marks.append(_now())
            if len(marks) == 4 and anatomy.loaded:
                passed = anatomy.closed_kinds[
                    asked_after : anatomy.entered_after.get(threading.get_ident(), asked_after)
                ]
                with anatomy.lock:
                    waited = anatomy.waited_behind.setdefault("ingest batch" if bulk else "short writer", {})
                    key = f"{passed.count('bulk')} batches, {passed.count('short')} groups"
                    waited[key] = waited.get(key, 0) + 1
                    rows = anatomy.writers.setdefault("ingest batch" if bulk else "short writer", [])
                    rows.append(
                        [tuple(b - a for a, b in zip(start, end, strict=True)) for start, end in pairwise(marks)]
                    )

        original_open = group_commit.GroupCommit._open

        def _open(commit: Any) -> Any:
            new = commit._group is None
            group = original_open(commit)
            if new:
                hold = _Hold(time.perf_counter(), time.process_time(), threading.current_thread().name)
                with anatomy.lock:
                    anatomy._open[id(group)] = hold
            return group

        original_member = group_commit.GroupCommit._member

        @contextmanager
        def _member(commit: Any, group: Any, deferred: Any, **options: Any) -> Iterator[Any]:
            hold = anatomy._open.get(id(group))
            member = _Member(threading.current_thread().name, False, time.perf_counter())
            cpu, runqueue = time.thread_time(), _runqueue_ns()
            anatomy._current.member = member
            marks = getattr(anatomy._current, "marks", None)
            if marks is not None:
                marks.append(_now())
                anatomy.entered_after[threading.get_ident()] = len(anatomy.closed_kinds)
            try:
                with original_member(commit, group, deferred, **options) as session:
                    yield session
            finally:
                anatomy._current.member = None
                member.released = time.perf_counter()
                member.cpu = time.thread_time() - cpu
                member.runqueue = (_runqueue_ns() - runqueue) / 1e9
                if marks is not None:
                    marks.append(_now())
                if hold is not None:
                    hold.members.append(member)

        original_end_turn = group_commit.GroupCommit._end_turn

        def _end_turn(commit: Any, group: Any, bulk: bool = False) -> bool:
            hold = anatomy._open.get(id(group))
            if hold is not None:
                if hold.members and bulk:
                    hold.members[-1].bulk = True
                hold.marks.append((time.perf_counter(), "end turn"))
            runqueue = _runqueue_ns()
            handed = original_end_turn(commit, group, bulk)
            if not handed and hold is not None:
                hold.ending_runqueue = (_runqueue_ns() - runqueue) / 1e9
                anatomy._close(group, hold)
            return bool(handed)

        original_commit = group_commit.GroupCommit._commit

        def _commit(commit: Any, group: Any) -> None:
            hold = anatomy._open.get(id(group))
            if hold is not None:
                hold.marks.append((time.perf_counter(), "commit"))
            try:
                original_commit(commit, group)
            finally:
                if hold is not None:
                    hold.marks.append((time.perf_counter(), "committed"))

        original_serve = database.FairLock._serve

        def _serve(lock: Any, waiter: Any) -> None:
            original_serve(lock, waiter)
            for hold in list(anatomy._open.values()):
                if hold.ended == 0.0:
                    hold.marks.append((time.perf_counter(), "handed over"))

        original_checkpoint = checkpoints.Checkpointer._checkpoint

        def _checkpoint(checkpointer: Any, mode: str, busy_ms: int | None = None) -> Any:
            began = time.perf_counter()
            try:
                return original_checkpoint(checkpointer, mode, busy_ms)
            finally:
                with anatomy.lock:
                    anatomy.checkpoints.append((began, time.perf_counter(), mode))
                    del anatomy.checkpoints[:-200]

        group_commit.GroupCommit.transaction = transaction  # type: ignore[assignment,method-assign]
        group_commit.GroupCommit._open = _open  # type: ignore[method-assign]
        group_commit.GroupCommit._member = _member  # type: ignore[assignment,method-assign]
        group_commit.GroupCommit._end_turn = _end_turn  # type: ignore[method-assign]
        group_commit.GroupCommit._commit = _commit  # type: ignore[method-assign]
        database.FairLock._serve = _serve  # type: ignore[method-assign]
        checkpoints.Checkpointer._checkpoint = _checkpoint  # type: ignore[method-assign]

    def statement(self, statement: str) -> None:
        member = getattr(self._current, "member", None)
        if member is None:
            return
        member.statement_began = time.perf_counter()
        if not member.first_statement and not statement.startswith("SAVEPOINT"):
            member.first_statement = " ".join(statement.split())[:70]

    def executed(self, statement: str) -> None:
        member = getattr(self._current, "member", None)
        if member is None or not member.statement_began:
            return
        took = time.perf_counter() - member.statement_began
        member.statement_began = 0.0
        member.sql += took
        member.statements += 1
        if took > member.slowest[0]:
            member.slowest = (took, " ".join(statement.split())[:70])

    def listen(self, engine: Any) -> None:
        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", lambda _c, _k, statement, *_: self.statement(statement))
        event.listen(engine, "after_cursor_execute", lambda _c, _k, statement, *_: self.executed(statement))

    def _close(self, group: Any, hold: _Hold) -> None:
        hold.ended = time.perf_counter()
        explained = self._explain(hold, time.process_time() - hold.process_cpu)
        with self.lock:
            self._open.pop(id(group), None)
            self.count += 1
            self.closed_kinds.append("bulk" if explained["bulk"] else "short")
            for name, ms in explained["pieces"].items():
                self.totals[name] = self.totals.get(name, 0.0) + ms
            beside = "checkpoint meanwhile" if explained["checkpointMs"] else "no checkpoint"
            kind = "ingest batch" if explained["bulk"] else "short writers"
            self.commits.setdefault(f"{kind}, {beside}", []).append(explained["pieces"].get("commit", 0.0))
            self.holds.append(explained)
            self.holds.sort(key=lambda h: -h["wallMs"])
            del self.holds[KEEP_LONGEST:]
            self.on_cpu.append(explained)
            self.on_cpu.sort(key=lambda h: -h["lessRunqueueMs"])
            del self.on_cpu[KEEP_LONGEST:]

    def _explain(self, hold: _Hold, process_cpu: float) -> dict[str, Any]:
        pieces: dict[str, float] = {}

        def add(name: str, seconds: float) -> None:
            pieces[name] = pieces.get(name, 0.0) + seconds * 1000

        # The timeline: BEGIN, then each member between its marks, then the COMMIT.
        points = sorted(
            [(m.entered, "enter", m) for m in hold.members]
            + [(m.released, "release", m) for m in hold.members]
            + [(t, what, None) for t, what in hold.marks]
        )
        previous, state = hold.began, "begin"
        for instant, what, member in points:
            span = instant - previous
            if what == "release" and member is not None:
                add("member: CPU", member.cpu)
                add("member: waiting for a CPU", member.runqueue)
                add("member: blocked (GIL, disk)", max(0.0, span - member.cpu - member.runqueue))
            else:
                add(state, span)
            state = {
                "enter": "?",
                "release": "end turn",
                "end turn": "end turn",
                "handed over": "wake",
                "commit": "commit",
                "committed": "after commit",
            }[what]
            previous = instant
        add(state, hold.ended - previous)
        wall = hold.ended - hold.began
        runqueue = sum(m.runqueue for m in hold.members) + hold.ending_runqueue
        overlaps: dict[str, float] = {}
        with self.lock:
            for began, ended, mode in self.checkpoints:
                overlap = min(ended, hold.ended) - max(began, hold.began)
                if overlap > 0:
                    overlaps[mode] = overlaps.get(mode, 0.0) + overlap * 1000
        return {
            "atS": round(hold.began - self.started, 3),
            "wallMs": wall * 1000,
            "lessRunqueueMs": (wall - runqueue) * 1000,
            "members": len(hold.members),
            "bulk": any(m.bulk for m in hold.members),
            "processCpuMs": process_cpu * 1000,
            "pieces": {name: round(ms, 2) for name, ms in pieces.items()},
            "checkpointMs": overlaps,
            "memberTimeline": [
                {
                    "thread": m.thread,
                    "atMs": round((m.entered - hold.began) * 1000, 2),
                    "wallMs": round((m.released - m.entered) * 1000, 2),
                    "cpuMs": round(m.cpu * 1000, 2),
                    "runqueueMs": round(m.runqueue * 1000, 2),
                    "first": m.first_statement,
                    "sqlMs": round(m.sql * 1000, 2),
                    "statements": m.statements,
                    "slowestMs": round(m.slowest[0] * 1000, 2),
                    "slowest": m.slowest[1],
                }
                for m in hold.members
            ],
        }

    def load_begins(self) -> dict[str, Any]:
        self.loaded = True
        return self.report()

    def report(self) -> dict[str, Any]:
        with self.lock:
            writers: dict[str, Any] = {}
            for kind, rows in self.writers.items():
                for index, step in enumerate(("queued", "work", "commit")):
                    for measure, name in enumerate(("wall", "cpu", "runqueue")):
                        ms = [row[index][measure] * 1000 for row in rows]
                        writers[f"{kind}: {step}: {name}"] = {
                            "p50": _share(ms, 0.5),
                            "p90": _share(ms, 0.9),
                            "p99": _share(ms, 0.99),
                        }
                    ms = [(row[index][0] - row[index][1] - row[index][2]) * 1000 for row in rows]
                    writers[f"{kind}: {step}: blocked"] = {
                        "p50": _share(ms, 0.5),
                        "p90": _share(ms, 0.9),
                        "p99": _share(ms, 0.99),
                    }
            out = {
                "clockS": time.perf_counter() - self.started,
                "count": self.count,
                "totalsMs": dict(self.totals),
                "longest": list(self.holds),
                "longestOnCpu": list(self.on_cpu),
                "writers": writers,
                "waitedBehind": self.waited_behind,
                "commitMs": {
                    name: {"count": len(ms), "p50": _share(ms, 0.5), "p90": _share(ms, 0.9), "p99": _share(ms, 0.99)}
                    for name, ms in self.commits.items()
                },
            }
        return out


def _share(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def install(add_route: Callable[[Any, HoldAnatomy], None]) -> None:
    """Patch `entitle.app.create_app` so the app it makes is explained, and given a route (`add_route`)."""
    import entitle.app

    anatomy = HoldAnatomy()
    original = entitle.app.create_app

    def create_app(*args: Any, **kwargs: Any) -> Any:
        app = original(*args, **kwargs)
        if app.state.db.group_commit is not None:
            anatomy.listen(app.state.db.write_engine)
            add_route(app, anatomy)
        return app

    entitle.app.create_app = create_app  # type: ignore[assignment]
