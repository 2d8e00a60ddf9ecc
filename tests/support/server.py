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

# httpx (hence the stigg SDK) forgets an idle connection after 5 s, uvicorn's default keep-alive too: a
# request sent on a connection idle for just under 5 s could meet the server closing it ("Server
# disconnected without sending a response"), which the tests' SDK, without retries, raises. The test
# servers keep an idle connection well past the clients' 5 s, so the client is always the one to let go.
KEEP_ALIVE = 20.0
# Generous: only a server that never comes up waits this long, and a loaded machine (several xdist
# workers on two cores) takes tens of seconds to import and start one.
START_TIMEOUT = 120.0
PROBE_TIMEOUT = 5.0

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
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE,
    )
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
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(verify=SSL_CONTEXT, timeout=PROBE_TIMEOUT) as probe:
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
    try:
        return proc, _wait_until_serving(proc, port)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _wait_until_serving(proc: subprocess.Popen[bytes], port: int, timeout: float = START_TIMEOUT) -> str:
    """The base URL once `proc` listens on `port` and answers `/healthz`.

    Ports are checked free when chosen, but tests of another run on the machine (another worktree, whose
    workers use the same port blocks) may take the port before `proc`, still importing, binds it: a
    `/healthz` answer alone may come from their server. `proc` then fails to bind and exits, which
    `with_free_port` answers with another port."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"entitle serve exited ({proc.returncode}) before it answered on port {port}")
        try:
            # Asked second: reading /proc costs more than a refused connection.
            answer = httpx.get(f"{base}/healthz", timeout=PROBE_TIMEOUT, verify=SSL_CONTEXT)
            if answer.status_code == 200 and listens(proc.pid, port):
                return base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("entitle serve did not start")
        time.sleep(0.05)


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port` (read from Linux's /proc; assumed
    where there is none)."""
    if not Path("/proc/self/fd").is_dir():
        return True
    sockets: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone already
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            sockets.add(target[len("socket:[") : -1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            # sl, local address (hex ip:port), remote address, state (0A: LISTEN), ..., inode (10th)
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in sockets:
                return True
    return False


def secret_key_of(data_dir: Path) -> str:
    """The key `secret_box(data_dir)` encrypts with in this process: ENTITLE_SECRET_KEY's when set (the
    billing tests'), else the key file's (made when missing)."""
    from entitle.secrets import secret_box

    if os.environ.get(ENV_VAR, "").strip():
        return os.environ[ENV_VAR].strip()
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
