"""CPU seconds per test, for finding what makes the suite slow: `pytest -p tests.support.cpu_report`.

Each test's setup, call and teardown are charged with the process's user+system CPU they used, its
threads (in-process servers) and reaped children (`entitle serve`, initdb) included; PostgreSQL's
daemons are not (they are nobody's children): `ENTITLE_CPU_REPORT` names a file to which every process
(xdist worker or not) appends one line per test, `<cpu seconds>\t<nodeid>`, and its session total.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


_lines: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    start = _cpu()
    yield
    _lines.append(f"{_cpu() - start:.3f}\t{item.nodeid}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("ENTITLE_CPU_REPORT")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    own = resource.getrusage(resource.RUSAGE_SELF)
    _lines.append(f"{_cpu():.3f}\t<session total {worker}>")
    _lines.append(f"{own.ru_utime + own.ru_stime:.3f}\t<session own {worker}>")
    if target:
        with Path(target).open("a") as out:
            out.write("\n".join(_lines) + "\n")


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its living ones (a PostgreSQL postmaster and its
    backends)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total += sum(int(f) for f in fields[11:15]) / ticks
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cf = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in cf[11:13]) / ticks
    return total


def _measure_clusters() -> None:
    from tests.support import postgres

    stop = postgres.Cluster.stop

    def measured_stop(self: postgres.Cluster) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            _lines.append(f"{_tree_cpu(pid):.3f}\t<postgresql cluster>")
        except (OSError, ValueError, IndexError):
            pass
        stop(self)

    postgres.Cluster.stop = measured_stop  # type: ignore[method-assign]


_measure_clusters()
