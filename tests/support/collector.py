"""The cyclic garbage collector in a test process: what outlived a module is frozen once it ends, and young
objects are collected after 10,000 allocations rather than 700, as `entitle serve` does (`entitle.app`).

A test process keeps millions of objects alive as it goes (imports, every app's routes and schemas,
SQLAlchemy's and hypothesis's caches: 1.4-2.6 million tracked objects per xdist worker by the end), and
CPython's full collections walk all of them each time: measured over a whole `make test`, the workers
spent 104 s of their 781 s of CPU in ~130 full collections of 0.8 s each.

After the last test of a module (its module-scoped fixtures torn down) one full collection frees what the
module left as garbage, then `gc.freeze()` moves every survivor out of the collector's generations: later
collections walk only what later modules make. The whole suite's full collections went from 104 s to 43 s
of CPU (10 s of it these module-end collections), the workers' CPU from 781 s to 704 s; the young
threshold then cut the young collections from ~53,000 to ~3,400 and the workers' CPU to 673 s.

What this gives up: a frozen object that later becomes cyclic garbage is never collected (objects freed by
their reference count still are). Only what was reachable at a module's end is frozen, which is mostly
what lives for the whole process anyway; a worker's peak memory stayed at 450-670 MB. Tests that assert on
the collector itself collect explicitly on objects they make (`test_entitlement_snapshot_sharing.py`,
`test_usage_kept.py`, `test_group_commit.py`) as many times as what they check needs, whatever ran before,
and `test_serve_gc.py` unfreezes around what it checks and restores the thresholds.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

YOUNG_THRESHOLD = 10_000


def pytest_configure(config: pytest.Config) -> None:
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield  # the teardown itself, module-scoped fixtures included when the module ends here
    if nextitem is None or nextitem.module is not item.module:  # type: ignore[attr-defined]
        gc.collect()
        gc.freeze()
