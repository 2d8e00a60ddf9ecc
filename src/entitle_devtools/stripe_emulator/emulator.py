"""The running pair, localstripe and the stand-in, as one `StripeEmulator`."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import stripe
import uvicorn

from entitle_devtools.stripe_emulator.localstripe import start_localstripe, stop, wait_until_up
from entitle_devtools.stripe_emulator.standin import StandIn
from entitle_devtools.stripe_emulator.wire import (
    TEST_SECRET_KEY,
    decode_form,
)

# ---------------------------------------------------------------------------------------------------


@dataclass
class StripeEmulator:
    """The running pair: `api_base` is what the SDK (and an integration's apiBase) points at."""

    api_base: str
    localstripe_base: str
    standin: StandIn
    secret_key: str = TEST_SECRET_KEY

    def client(self, secret_key: str | None = None) -> stripe.StripeClient:
        return stripe.StripeClient(
            secret_key or self.secret_key, base_addresses={"api": self.api_base}, max_network_retries=0
        )

    def reset(self) -> None:
        """Forget every object (localstripe's and the stand-in's), saved idempotency key and failure."""
        httpx.delete(f"{self.localstripe_base}/_config/data", timeout=10, verify=False).raise_for_status()
        self.standin.reset()

    def fail_next(self, times: int, **kwargs: Any) -> None:
        self.standin.fail_next(times, **kwargs)

    def products(self) -> list[Any]:
        return list(self.client().v1.products.list(params={"limit": 100}).data)

    def prices(self, product: str | None = None) -> list[Any]:
        params: dict[str, Any] = {"limit": 100}
        if product is not None:
            params["product"] = product
        return list(self.client().v1.prices.list(params=params).data)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def loopback_socket(port: int = 0) -> socket.socket:
    """A listening loopback socket for the stand-in (port 0: any free one)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


T = TypeVar("T")


def _on_any_free_port(start: Callable[[int], T]) -> T:
    return start(free_port())


@contextlib.contextmanager
def running_emulator(
    log_dir: Path,
    *,
    on_free_port: Callable[[Callable[[int], Any]], Any] = _on_any_free_port,
    sock: socket.socket | None = None,
) -> Iterator[StripeEmulator]:
    """Start localstripe (subprocess) and the stand-in (thread) on loopback; stop both after.

    `on_free_port(start)` calls `start(port)` with a port for localstripe (the tests pass one that is safe
    between parallel workers); `sock` is the stand-in's listening socket (default: any free port)."""
    log = log_dir / "localstripe.log"
    proc, localstripe_base = on_free_port(lambda port: start_localstripe(port, log))
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    sock = sock or loopback_socket()
    try:
        standin = StandIn(upstream=localstripe_base)
        port = sock.getsockname()[1]
        standin.public_base = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(standin.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="stripe-stand-in")
        thread.start()
        wait_until_up(f"{standin.public_base}/", None, None, time.monotonic() + 20)
        yield StripeEmulator(api_base=standin.public_base, localstripe_base=localstripe_base, standin=standin)
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        sock.close()
        stop(proc)


__all__ = ["TEST_SECRET_KEY", "StandIn", "StripeEmulator", "decode_form", "running_emulator"]
