"""The embedded database file shared by several `Database`s of one process (the server and an in-process
command, a test and its live server) and by other processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from entitle.db import Database


def test_a_second_database_on_the_same_file_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    path = tmp_path / "entitle.db"
    first = Database(f"sqlite:///{path}")
    with first.transaction() as s:
        s.execute(text("CREATE TABLE t (x INTEGER)"))
    read = first.read_engine.connect()  # an open WAL connection holds a shared lock on the file
    read.execute(text("SELECT count(*) FROM t")).scalar_one()

    Database(f"sqlite:///{path}")  # must not open and close the file: that would drop `read`'s lock

    # Another process writes and closes. Believing itself the file's last user (if the lock was dropped),
    # it would checkpoint and delete the WAL under `read`: its next query fails with "disk I/O error".
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO t VALUES (1)');"
        "c.commit(); c.close()"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    assert Path(f"{path}-wal").exists()  # the other process saw a user left and kept the WAL
    read.rollback()
    assert read.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
    read.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
