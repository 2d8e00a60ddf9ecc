"""A throwaway PostgreSQL cluster for the test session: initdb + pg_ctl on a free port, removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port as free_port  # re-exported: tests import it from here
from tests.support.ports import with_free_port

HOW_TO_ENABLE = (
    "PostgreSQL tests skipped: initdb/pg_ctl not found. Install PostgreSQL "
    "(Debian: `apt-get install postgresql`) or put its bin folder on PATH; CI does this in .ci/run."
)


def find_pg_bin() -> Path | None:
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found is None:
            break
    else:
        return Path(shutil.which("pg_ctl") or "").resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@dataclass
class Cluster:
    bin_dir: Path
    data_dir: Path
    port: int
    run_as: list[str]
    create_options: str = ""
    """Appended to `CREATE DATABASE ... TEMPLATE ...` (set once the server's version is known)."""

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.run_as, *args], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start_cluster() -> Cluster | None:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="entitle-pg-"))
    data = root / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; use its own system user, as Debian's package creates it.
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        root.chmod(0o755)
    cluster = Cluster(bin_dir=bin_dir, data_dir=data, port=0, run_as=run_as)
    cluster._run(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    )

    def start(port: int) -> Cluster:
        cluster.port = port
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        cluster._run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
        return cluster

    return with_free_port(start)
