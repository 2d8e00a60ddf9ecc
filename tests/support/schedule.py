"""Where the long tests run: at the front of the xdist workers' first shares, spread over the workers.

`--dist worksteal` hands each worker a contiguous share of the collected order (the first worker the
first quarter, ...), and a worker that runs dry steals the back half of the longest queue. A long test
at the back of a share therefore runs last, alone: the run's tail is that test while the other workers
(and a core) wait. Here the modules known to hold the long tests (a single 45 s schemathesis case, the
browser modules, the ones that start `entitle serve` processes) are moved, whole, to the front of the
shares, the heaviest first, each to the share with the least such weight so far: they start at once, in
parallel, and what is left at the end of every queue is short tests that stealing spreads evenly.

Modules stay whole and in their own order (their module-scoped servers and browsers start once), and
no test is added, dropped or skipped: only the order changes. Without xdist the order is left alone;
with another `--dist` mode long tests first do no harm either.
A module missing from the table is simply not moved: the table only needs the long ones, and a module
it names that no longer exists is ignored.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict

import pytest

# Relative cost of a module's tests (seconds of test time, summed over a whole run on a busy 2-core
# machine): only the ratios matter. Measured with `--durations=0`; refresh when a module changes a lot.
LONG_MODULES: dict[str, float] = {
    "tests/test_hostile_writes.py": 620,
    "tests/test_fuzz.py": 350,
    "tests/test_push.py": 210,
    "tests/billing/test_widgets_browser.py": 170,
    "tests/billing/test_stripe_crash.py": 165,
    "tests/test_console_browser.py": 160,
    "tests/test_entitlement_snapshot_processes.py": 140,
    "tests/test_credits_concurrency.py": 115,
    "tests/test_concurrency.py": 105,
    "tests/test_cli_jobs.py": 90,
    "tests/test_keys.py": 85,
    "tests/billing/test_stripe_walkthrough.py": 70,
    "tests/test_credit_priced_checks.py": 65,
    "tests/test_credits_properties.py": 65,
    "tests/test_ingest_bulk.py": 60,
    "tests/test_cli.py": 60,
    "tests/test_data_files.py": 55,
    "tests/test_console_credits_browser.py": 40,
}


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _share_sizes(count: int, workers: int) -> list[int]:
    """The sizes of worksteal's first shares: each idle worker in turn gets `pending // workers_left`."""
    sizes = []
    left = count
    for i in range(workers):
        size = left // (workers - i)
        sizes.append(size)
        left -= size
    return sizes


def long_modules_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """`items` reordered for `workers` worksteal workers (see the module docstring)."""
    by_module: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        by_module[_module_of(item)].append(item)
    long = sorted((m for m in by_module if m in LONG_MODULES), key=lambda m: -LONG_MODULES[m])
    if not long or workers < 2:
        return items
    weight = [0.0] * workers
    fronts: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for module in long:
        share = weight.index(min(weight))
        fronts[share].extend(by_module[module])
        weight[share] += LONG_MODULES[module]
    moved = set(long)
    rest = iter([item for item in items if _module_of(item) not in moved])
    ordered: list[pytest.Item] = []
    for share, size in enumerate(_share_sizes(len(items), workers)):
        ordered.extend(fronts[share])
        ordered.extend(itertools.islice(rest, max(0, size - len(fronts[share]))))
    ordered.extend(rest)
    assert len(ordered) == len(items)
    return ordered


@pytest.hookimpl(trylast=True)  # after pytest grouped the items by their parametrized higher-scoped fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    raw = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not raw.isdigit():  # not an xdist worker (xdist's own --dist option is "no" inside a worker)
        return
    items[:] = long_modules_first(items, int(raw))
