"""Run the real app: under uvicorn on a free port in a background thread (`running_server`), or as a
separate `entitle serve` process (`start_serve`, `serve_process`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from entitle.app import create_app
from entitle.config import Settings
from entitle.db import Database
from entitle.secrets import ENV_VAR, FILE_ENV_VAR, key_file_path
from tests.support.postgres import free_port


@contextmanager
def running_server(database_url: str, data_dir: Path) -> Iterator[tuple[str, Database]]:
    settings = Settings(database_url=database_url, data_dir=data_dir, console_base_url="http://testserver")
    db = Database(database_url)
    app = create_app(settings, db)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield base, db
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        db.dispose()


def start_serve(
    database_url: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """An `entitle serve` process on the database (embedded worker off), once it answers `/healthz`."""
    port = free_port()
    env = {
        **os.environ,
        "ENTITLE_DATABASE_URL": database_url,
        "ENTITLE_DATA_DIR": str(data_dir),
        "ENTITLE_EMBEDDED_WORKER": "false",
        **(extra_env or {}),
    }
    if not database_url.startswith("sqlite") and not (env.get(ENV_VAR) or env.get(FILE_ENV_VAR)):
        # On PostgreSQL serve wants the key apart from the data dir: hand it the key this test's
        # in-process code uses for the same data dir, so both read each other's secrets.
        env[ENV_VAR] = secret_key_of(data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "entitle", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise RuntimeError("entitle serve did not start")
        time.sleep(0.05)


def secret_key_of(data_dir: Path) -> str:
    """The key `secret_box(data_dir)` encrypts with in this process (made when missing)."""
    from entitle.secrets import secret_box

    secret_box(data_dir)
    return key_file_path(data_dir).read_text().strip()


@contextmanager
def serve_process(database_url: str, data_dir: Path) -> Iterator[str]:
    """`start_serve` for the length of a block; the process is stopped (SIGTERM, then SIGKILL) after it."""
    proc, base = start_serve(database_url, data_dir)
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
