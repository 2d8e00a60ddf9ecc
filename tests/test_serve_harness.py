"""The harness that starts `entitle serve` for multi-process tests hands back only its own process's
server: on a machine where other test runs start servers on the same port blocks, a `/healthz` answer
on the chosen port may come from one of theirs while ours is still importing."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.support.ports import free_port
from tests.support.server import _wait_until_serving, listens

_HEALTHY = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Healthy(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Healthy).serve_forever()
"""


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def foreign_port() -> Iterator[int]:
    """A port on which another program's server answers `/healthz` with 200."""
    port = free_port()
    foreign = HTTPServer(("127.0.0.1", port), _Healthy)
    thread = threading.Thread(target=foreign.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        foreign.shutdown()
        foreign.server_close()


def test_a_server_of_another_process_on_the_port_is_not_taken_for_ours(foreign_port: int) -> None:
    # Ours, still "importing", never binds the port (it would fail: it is taken) and exits.
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    try:
        assert not listens(ours.pid, foreign_port)
        with pytest.raises(RuntimeError, match="exited"):
            _wait_until_serving(ours, foreign_port)
    finally:
        ours.kill()
        ours.wait()


def test_our_process_listening_on_the_port_is_served() -> None:
    port = free_port()
    ours = subprocess.Popen([sys.executable, "-c", _HEALTHY, str(port)])
    try:
        assert _wait_until_serving(ours, port) == f"http://127.0.0.1:{port}"
        assert listens(ours.pid, port)
        assert not listens(ours.pid, free_port())
    finally:
        ours.kill()
        ours.wait()
