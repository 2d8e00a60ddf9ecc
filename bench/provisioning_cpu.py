"""CPU per provisioning (customer + subscription) in one process, beside the constant route.

    .venv/bin/python bench/provisioning_cpu.py [--database sqlite|postgresql] [--requests N] [--rounds R]
        [--profile FILE]

bench/provisioning.py measures over real HTTP, where the machine's other processes move every figure.
This one feeds uvicorn's httptools protocol each request's bytes over an in-memory transport (as
bench/check_cpu.py does for checks), one request at a time, and counts the process's CPU time
(`time.process_time`: the event loop and the worker threads the sync route runs on) per request:
`POST /api/v1/customers` with `subscriptionParams` on bench/provisioning.py's plan, and the constant
async route. Rounds alternate between the two; each prints its minimum and median.

`--profile FILE`: one more round with the worker-thread hops run inline and cProfile on, its stats
written to FILE (read with `python -m pstats FILE`). Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from in_process import feed, served_app
from ingest_load import CONSTANT_PATH, seed_catalog

_ids = itertools.count()


def provisioning_bytes(key: str, count: int) -> list[bytes]:
    found = []
    for _ in range(count):
        body = json.dumps({"id": f"cpu-{next(_ids)}", "subscriptionParams": {"planId": "plan"}}).encode()
        head = (
            f"POST /api/v1/customers HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-API-KEY: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        found.append(head.encode() + body)
    return found


def constant_bytes(key: str, count: int) -> list[bytes]:
    return [f"GET {CONSTANT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-API-KEY: {key}\r\n\r\n".encode()] * count


async def through_http(app: Any, raw: list[bytes]) -> float:
    """Process CPU seconds per request (the event loop and the sync route's worker thread), the requests
    sent one after the other on one connection."""
    return await feed(app, raw, clock=time.process_time, settle=3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=300, help="requests per round and scenario (300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the scenarios (5)")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of one more round here")
    args = parser.parse_args()

    import anyio.to_thread
    from fastapi.testclient import TestClient

    with served_app(args.database, CONSTANT_PATH) as served:
        app, key = served.app, served.key
        with TestClient(app, headers={"X-API-KEY": key}, backend_options={"use_uvloop": True}) as client:
            seed_catalog(client)
            client.portal.call(through_http, app, provisioning_bytes(key, 30))  # warm-up
            spent: dict[str, list[float]] = {"constant": [], "provisioning": []}
            for _ in range(args.rounds):
                spent["constant"].append(client.portal.call(through_http, app, constant_bytes(key, args.requests)))
                raw = provisioning_bytes(key, args.requests)
                spent["provisioning"].append(client.portal.call(through_http, app, raw))
            if args.profile is not None:
                run_sync = anyio.to_thread.run_sync

                async def inline(function: Any, *call_args: Any, **_: Any) -> Any:
                    return function(*call_args)

                anyio.to_thread.run_sync = inline  # type: ignore[assignment]
                profiler = cProfile.Profile()
                raw = provisioning_bytes(key, args.requests)

                async def profiled() -> float:
                    profiler.enable()
                    try:
                        return await through_http(app, raw)
                    finally:
                        profiler.disable()

                try:
                    client.portal.call(profiled)
                finally:
                    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]
                profiler.dump_stats(args.profile)
                import pstats

                # Function calls per request: a proxy for CPU that the machine's load does not move.
                calls = pstats.Stats(profiler).total_calls / len(raw)  # type: ignore[attr-defined]

    import os

    print(
        f"Entitle provisioning CPU in process: {args.database}; {args.rounds} rounds of {args.requests} requests "
        f"each; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"\n{'scenario':<14} {'min ms':>8} {'median ms':>10}")
    for name, samples in spent.items():
        print(f"{name:<14} {min(samples) * 1000:>8.2f} {statistics.median(samples) * 1000:>10.2f}")
    if args.profile is not None:
        print(f"\nprofiled round: {calls:.0f} Python function calls per provisioning; stats in {args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
