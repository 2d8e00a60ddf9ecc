"""Where a served request's time goes, seen from inside the server: for bench/entitlement_checks.py
--diagnose, which wraps its child's app with `Probe.wrap` and reads `PROBE_PATH` after each wrk run.

wrk's latency is the client's: it includes the wait for a CPU that the machine's other processes hold.
The probe tells that apart from what the server itself does, per run:

- the time each request spent inside the app (from the ASGI call to its last byte), by route kind;
- the event loop's lateness: a task asking to wake every millisecond, and how late it woke (a request
  that blocks the loop, a collection, a thread holding the GIL or a CPU taken away all show here);
- every garbage collection's pause, by generation;
- whether the loop thread was taken off its CPU by the kernel (involuntary context switches) and how
  much CPU each other thread of the process used (the push hub's poll or LISTEN thread, the job worker,
  the thread pool);
- how many checks and lists missed the entitlement snapshot and read the database.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import threading
import time
from collections import Counter, defaultdict
from typing import Any

PROBE_PATH = "/_bench/probe"


def _percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _thread_cpu() -> dict[str, float]:
    seconds: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            seconds[thread.name] = seconds.get(thread.name, 0.0) + time.clock_gettime(clock)
        except (OSError, ProcessLookupError):
            continue
    return seconds


def _pool_name(name: str) -> str:
    """Thread-pool workers are many and numbered: count them together."""
    for prefix in ("asyncio_", "AnyIO worker", "ThreadPoolExecutor"):
        if name.startswith(prefix):
            return "thread pool"
    return name


class Probe:
    def __init__(self) -> None:
        self._gc_started = (0.0, 0.0)
        self._ticker: asyncio.Task[None] | None = None
        gc.callbacks.append(self._on_gc)
        self._reset()
        self._patch_snapshot_loads()

    def _reset(self) -> None:
        self.durations: defaultdict[str, list[float]] = defaultdict(list)
        self.lateness: list[float] = []
        self.gc_pauses: defaultdict[int, list[tuple[float, float]]] = defaultdict(list)
        self.loads = 0
        self.cpu_at_reset = _thread_cpu()
        self.wall_at_reset = time.perf_counter()
        self.rusage_at_reset: resource.struct_rusage | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Wall time and the collecting thread's CPU: a pause far longer than its CPU was the kernel's.
        if phase == "start":
            self._gc_started = (time.perf_counter(), time.thread_time())
        else:
            wall, cpu = time.perf_counter() - self._gc_started[0], time.thread_time() - self._gc_started[1]
            self.gc_pauses[info["generation"]].append((wall * 1000, cpu * 1000))

    def _patch_snapshot_loads(self) -> None:
        from entitle.entitlements import service

        load = service._load

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.loads += 1
            return load(*args, **kwargs)

        service._load = counted  # type: ignore[assignment]

    async def _tick(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lateness.append((time.perf_counter() - asked - 0.001) * 1000)

    def wrap(self, app: Any) -> Any:
        import json

        async def probed(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            if self._ticker is None:
                self._ticker = asyncio.ensure_future(self._tick())
                self.rusage_at_reset = resource.getrusage(resource.RUSAGE_THREAD)
            path: str = scope["path"]
            if path == PROBE_PATH:
                body = json.dumps(self.report()).encode()
                self._reset()
                self.rusage_at_reset = resource.getrusage(resource.RUSAGE_THREAD)
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            began = time.perf_counter()
            await app(scope, receive, send)
            kind = "check" if path.endswith("/check") else "list" if path.endswith("/entitlements") else "constant"
            self.durations[kind].append((time.perf_counter() - began) * 1000)

        return probed

    def report(self) -> dict[str, Any]:
        """Read on the loop thread (RUSAGE_THREAD is the caller's thread)."""
        wall = time.perf_counter() - self.wall_at_reset
        now_cpu = _thread_cpu()
        cpu: Counter[str] = Counter()
        for name, seconds in now_cpu.items():
            cpu[_pool_name(name)] += seconds - self.cpu_at_reset.get(name, 0.0)
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        before = self.rusage_at_reset or usage
        return {
            "wall_s": wall,
            "requests": {
                kind: {
                    "n": len(d),
                    "p50": _percentile(d, 0.5),
                    "p99": _percentile(d, 0.99),
                    "max": max(d, default=0.0),
                }
                for kind, d in self.durations.items()
            },
            "lateness": {
                "p50": _percentile(self.lateness, 0.5),
                "p99": _percentile(self.lateness, 0.99),
                "max": max(self.lateness, default=0.0),
                "over_10ms": sum(1 for x in self.lateness if x > 10),
            },
            "gc": {
                str(g): {"n": len(p), "max": max(w for w, _ in p), "max_cpu": max(c for _, c in p)}
                for g, p in sorted(self.gc_pauses.items())
            },
            "snapshot_loads": self.loads,
            "thread_cpu_s": {name: round(s, 3) for name, s in cpu.most_common() if s > 0.0005},
            "loop_involuntary_switches": usage.ru_nivcsw - before.ru_nivcsw,
            "loop_voluntary_switches": usage.ru_nvcsw - before.ru_nvcsw,
        }


def print_report(name: str, connections: int, found: dict[str, Any]) -> None:
    kind = next(iter(found["requests"]), None)
    inside = found["requests"].get(kind, {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0})
    late = found["lateness"]
    collections = (
        ", ".join(
            f"gen{g}: {v['n']}x max {v['max']:.1f} ms ({v['max_cpu']:.1f} ms CPU)" for g, v in found["gc"].items()
        )
        or "none"
    )
    threads = ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in found["thread_cpu_s"].items())
    # CPU per request is what the machine's load does not change: wall times under load are the kernel's.
    per_request = found["thread_cpu_s"].get("MainThread", 0.0) / max(inside["n"], 1) * 1e6
    print(
        f"{name:<26} {connections:>5}  in app p50 {inside['p50']:.2f} p99 {inside['p99']:.2f}"
        f" max {inside['max']:.1f} ms;"
        f" loop late p99 {late['p99']:.2f} max {late['max']:.1f} ms ({late['over_10ms']} > 10 ms);"
        f" snapshot loads {found['snapshot_loads']}; loop preempted {found['loop_involuntary_switches']}x;"
        f" event loop CPU {per_request:.0f} us/request\n"
        f"{'':<33}gc {collections}; CPU over {found['wall_s']:.1f}s: {threads}"
    )
