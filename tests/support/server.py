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
from fastapi import FastAPI

from entitle.app import create_app
from entitle.config import Settings
from entitle.db import Database
from entitle.push.hub import Hub
from entitle.secrets import ENV_VAR, FILE_ENV_VAR, key_file_path
from tests.support.http import SSL_CONTEXT
from tests.support.ports import listening_socket, with_free_port

_idle_apps: list[FastAPI] = []
_idle_lock = threading.Lock()


def _app(settings: Settings, db: Database) -> FastAPI:
    """The application for one test server: `create_app(settings, db)`, or an idle one of an earlier
    server of this process given this server's settings, database and a new push hub.

    FastAPI builds its per-route machinery (dependency graphs, pydantic adapters for ~100 routes) on
    an app's first request: ~0.3 s of CPU that every test paid again for an identical app. Everything
    a request reads of its server is in `app.state` (the routes are the same modules' objects, and the
    lifespan takes the database and hub from `app.state` when it starts), so an app reused this way
    serves exactly as a new one would (the state is emptied first). An app is reused only after its
    server stopped cleanly, and never by two servers at once.
    """
    with _idle_lock:
        app = _idle_apps.pop() if _idle_apps else None
    if app is None or app.state.settings.embedded_worker != settings.embedded_worker:
        return create_app(settings, db)
    # Whatever an earlier server cached on its state (the secret box of its data dir, ...) goes with it.
    app.state._state.clear()
    app.state.settings = settings
    app.state.db = db
    app.state.push_hub = Hub(db)
    return app


@contextmanager
def running_server(database_url: str, data_dir: Path) -> Iterator[tuple[str, Database]]:
    settings = Settings(database_url=database_url, data_dir=data_dir, console_base_url="http://testserver")
    db = Database(database_url)
    app = _app(settings, db)
    # Bound here and handed to uvicorn: the port stays ours (no other xdist worker can take it).
    sock = listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base, server, thread)
        yield base, db
    finally:
        # uvicorn waits for open responses before it stops, and a push stream never ends by itself:
        # end them first, as the signal handler of `entitle serve` does (Hub.chain_exit_signals).
        app.state.push_hub.close_streams()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        db.dispose()
        if not thread.is_alive():
            with _idle_lock:
                _idle_apps.append(app)


def _wait_until_healthy(base: str, server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 20
    with httpx.Client(verify=SSL_CONTEXT, timeout=1) as probe:
        while True:
            try:
                if server.started and probe.get(f"{base}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)


def start_serve(
    database_url: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """An `entitle serve` process on the database (embedded worker off), once it answers `/healthz`."""
    return with_free_port(lambda port: _start_serve(database_url, data_dir, port, extra_env))


def _start_serve(
    database_url: str, data_dir: Path, port: int, extra_env: dict[str, str] | None
) -> tuple[subprocess.Popen[bytes], str]:
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
            # Still running: a process that lost the port race exits, whoever answers on it.
            if httpx.get(f"{base}/healthz", timeout=1, verify=SSL_CONTEXT).status_code == 200 and proc.poll() is None:
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
