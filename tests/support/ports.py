"""Loopback ports for the servers tests start, safe when several pytest-xdist workers start servers at
the same time.

Ports come from a block of the range below the kernel's ephemeral ports (from which `bind(port 0)`
and every outgoing connection take theirs), one block per xdist worker: a port handed to one worker
is never handed to another, nor taken by a connection, in the moment between `free_port()` and the
server's own bind. Within a block, ports are handed out in turn (each checked free first), so a
process does not get the same port twice in a row either.

Two more guards for what the blocks cannot rule out (another program, a second test run):

- `listening_socket()`: for servers in this process (uvicorn takes the socket itself): the port is
  never let go between choosing and listening.
- `with_free_port(start)`: for servers run as another program (PostgreSQL, localstripe, redis,
  `entitle serve`): when `start(port)` fails and the port turns out taken by someone else, it is
  tried again on the next port (any other failure propagates at once).
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ATTEMPTS = 5
LOWEST = 10_000  # well above the well-known and registered ports services like to use


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def worker_index() -> int:
    """0, 1, ... for xdist workers gw0, gw1, ...; 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


def worker_count() -> int:
    raw = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")
    return max(1, int(raw)) if raw.isdigit() else 1


def _block() -> range | None:
    """This worker's ports, or None when there is no room below the ephemeral range."""
    top = _ephemeral_start()
    size = (top - LOWEST) // worker_count()
    if size < 100:
        return None
    start = LOWEST + worker_index() * size
    return range(start, start + size)


def _cycle(block: range) -> Iterator[int]:
    # A random start: two test runs on one machine are unlikely to walk the same ports together.
    offset = random.SystemRandom().randrange(len(block))  # leaves the seeded global `random` alone
    return (block[(offset + i) % len(block)] for i in itertools.count())


_lock = threading.Lock()
_ports: Iterator[int] | None = None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing holds now, from this worker's block (or from the kernel without one)."""
    global _ports
    block = _block()
    if block is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    with _lock:
        if _ports is None:
            _ports = _cycle(block)
        for _ in range(len(block)):
            port = next(_ports)
            if _bindable(port):
                return port
    raise RuntimeError(f"no free port in {block}")


def listening_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port (its `getsockname()[1]`), for a server to listen on."""
    for attempt in range(ATTEMPTS):
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose `proto` says TCP,
        # and without it every response waits ~40 ms for a delayed ACK (Nagle's algorithm).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", free_port()))
        except OSError:  # taken since free_port() looked
            sock.close()
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return sock
    raise AssertionError("unreachable")


def with_free_port(start: Callable[[int], T], attempts: int = ATTEMPTS) -> T:
    """`start(port)` on a free port; when it fails because another process took the port between
    `free_port()` and the server's bind, again on another port (up to `attempts` times)."""
    for attempt in range(attempts):
        port = free_port()
        try:
            return start(port)
        except Exception:
            if attempt == attempts - 1 or _bindable(port):
                raise
    raise AssertionError("unreachable")
