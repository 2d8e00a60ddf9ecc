"""Waiting until a test server's hub has read the change log up to its newest row: from then on the
process keeps, and trusts, what it learns an environment lacks (`entitle.environments.facts`), so
statement counts no longer depend on when the hub's reads happened to land."""

from __future__ import annotations

import time

from entitle.db import Database
from entitle.environments import facts
from entitle.push import service as push_service

PATIENCE = 30.0
"""Far above a hub's poll; waited for, not timed."""


def wait_until_heard(db: Database) -> None:
    """Call once the log has a row (any change of entitlements, features, usage writes one)."""
    database = facts.database_key(db.url)
    newest = push_service.newest_id(db)
    assert newest, "the change log is empty: write a change first"
    deadline = time.monotonic() + PATIENCE
    while facts.heard(database) < newest:
        assert time.monotonic() < deadline, "the server's hub never read the change log's newest row"
        time.sleep(0.01)
