"""`entitle serve` hides the objects alive at start-up from the cyclic garbage collector (`gc.freeze`): a
full collection of the ~230,000 objects of a started app paused a request for about 130 ms of CPU, the
tail of the entitlement check's p99. Apps made inside a longer-lived process (tests) leave it alone."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from entitle import app as app_module
from entitle.app import create_app
from entitle.config import Settings, load_settings
from entitle.db import Database


@pytest.fixture
def unfrozen() -> Iterator[None]:
    switch_interval = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()  # this test process's objects go back to the collector
    gc.set_threshold(*thresholds)
    # A served app also makes its threads hand the GIL over every 0.5 ms: left so, every later test of
    # this worker (a client thread and its server's threads) would pay for ten times as many switches.
    sys.setswitchinterval(switch_interval)


def _started(db: Database, tmp_path: Path, freeze: bool) -> int:
    settings = Settings(
        database_url=db.url, data_dir=tmp_path, console_base_url="http://test", freeze_startup_objects=freeze
    )
    app = create_app(settings, db=db)

    async def started() -> int:
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    return asyncio.run(started())


def test_a_served_app_freezes_what_start_up_made(db: Database, tmp_path: Path, unfrozen: None) -> None:
    assert load_settings().freeze_startup_objects  # what `entitle serve` runs with
    assert _started(db, tmp_path, freeze=True) > 100_000
    # And collects its young objects less often: a batch of 1,000 events nets ~3,400 new ones while it runs.
    assert gc.get_threshold()[0] == app_module.GC_YOUNG_THRESHOLD > 3_400


def test_an_app_made_in_a_test_process_does_not(db: Database, tmp_path: Path, unfrozen: None) -> None:
    thresholds = gc.get_threshold()
    assert _started(db, tmp_path, freeze=False) == 0
    assert gc.get_threshold() == thresholds


def test_the_embedded_worker_starts_after_the_collection_that_freezes(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The collection keeps the GIL for 100 ms or more in one call: a job claim begun meanwhile held the
    # SQLite write lock for all of it (the longest hold of bench/lock_holds.py's runs).
    threads_when_tuned: list[list[str]] = []
    monkeypatch.setattr(app_module, "_tune_process", lambda: threads_when_tuned.append(_thread_names()))
    settings = Settings(
        database_url=db.url,
        data_dir=tmp_path,
        console_base_url="http://test",
        freeze_startup_objects=True,
        embedded_worker=True,
    )
    app = create_app(settings, db=db)

    async def started() -> list[str]:
        async with app.router.lifespan_context(app):
            return _thread_names()

    running = asyncio.run(started())
    assert "entitle-worker" in running
    assert len(threads_when_tuned) == 1
    assert "entitle-worker" not in threads_when_tuned[0]


def _thread_names() -> list[str]:
    return [thread.name for thread in threading.enumerate()]
