"""Counting the SQL statements a block of code sends, for tests that bound them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from entitle.db import Database


@contextmanager
def statements(
    db: Database, *, this_thread_only: bool = True, counted: Callable[[str], bool] = lambda _statement: True
) -> Iterator[list[str]]:
    """The SQL statements sent on the database's engines while the block runs (an executemany counts
    once): by this thread only, unless told otherwise (a served app answers on other threads), and
    only those `counted` keeps."""
    seen: list[str] = []
    me = threading.get_ident()

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if (not this_thread_only or threading.get_ident() == me) and counted(statement):
            seen.append(statement)

    engines = {db.write_engine, db.read_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
