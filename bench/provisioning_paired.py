"""CPU per provisioning of this tree against another source tree's, in alternating rounds.

    .venv/bin/python bench/provisioning_paired.py --against DIR [--rounds R] [--requests N]

DIR: another checkout's `src` directory (e.g. `git archive <commit> src | tar -x -C /tmp/base`, then
`--against /tmp/base/src`). Two worker processes, one per tree, each serve bench/provisioning_cpu.py's
app and plan in process; the driver asks them for a round of N provisionings in turn (the order swapped
every round), so both see the same moments of the machine's load, and prints each tree's minimum and
median CPU per provisioning and the median of the per-round ratios (this tree / the other): on a shared
machine a ratio of rounds run side by side moves far less than either figure. Timing is reported,
never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(requests: int) -> int:
    """One tree's side: serve, then answer each `go` line with the CPU ms per provisioning of a round."""
    sys.path.insert(0, str(HERE))
    from fastapi.testclient import TestClient

    from in_process import served_app
    from ingest_load import CONSTANT_PATH, seed_catalog
    from provisioning_cpu import provisioning_bytes, through_http

    with served_app("sqlite", CONSTANT_PATH) as served:
        app, key = served.app, served.key
        with TestClient(app, headers={"X-API-KEY": key}, backend_options={"use_uvloop": True}) as client:
            seed_catalog(client)
            client.portal.call(through_http, app, provisioning_bytes(key, 50))  # warm-up
            print("ready", flush=True)
            for line in sys.stdin:
                if line.strip() != "go":
                    break
                spent = client.portal.call(through_http, app, provisioning_bytes(key, requests))
                print(f"{spent * 1000:.4f}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, help="the other tree's src directory")
    parser.add_argument("--rounds", type=int, default=16, help="rounds per tree (16)")
    parser.add_argument("--requests", type=int, default=200, help="provisionings per round (200)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.requests)
    if args.against is None or not (args.against / "entitle").is_dir():
        parser.error("--against: a directory holding the other tree's `entitle` package")
    trees = {"this": str(HERE.parent / "src"), "other": str(args.against.resolve())}
    workers = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--worker", "--requests", str(args.requests)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ, PYTHONPATH=src),
        )
        for name, src in trees.items()
    }
    spent: dict[str, list[float]] = {name: [] for name in workers}
    loads: list[float] = []
    try:
        for process in workers.values():
            assert process.stdin is not None and process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a worker did not start")
        for turn in range(args.rounds):
            for name in ("this", "other") if turn % 2 == 0 else ("other", "this"):
                process = workers[name]
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write("go\n")
                process.stdin.flush()
                spent[name].append(float(process.stdout.readline()))
            loads.append(os.getloadavg()[0])
    finally:
        for process in workers.values():
            if process.stdin is not None:
                process.stdin.close()
            process.wait()
    ratios = [mine / theirs for mine, theirs in zip(spent["this"], spent["other"], strict=True)]
    print(
        f"Entitle provisioning CPU, this tree against {args.against}: sqlite; {args.rounds} rounds of "
        f"{args.requests} provisionings each; load average {min(loads):.2f}-{max(loads):.2f}"
    )
    print(f"\n{'tree':<8} {'min ms':>8} {'median ms':>10}")
    for name, samples in spent.items():
        print(f"{name:<8} {min(samples):>8.2f} {statistics.median(samples):>10.2f}")
    print(
        f"\nthis / other, per round: median {statistics.median(ratios):.3f} "
        f"(lowest {min(ratios):.3f}, highest {max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
