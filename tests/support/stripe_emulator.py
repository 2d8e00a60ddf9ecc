"""The local Stripe the billing tests talk to: `entitle_devtools.stripe_emulator` (localstripe behind the
stand-in; see its `standin.py` for who serves what), started on ports that parallel xdist workers never share."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from entitle_devtools.stripe_emulator import (
    TEST_SECRET_KEY,
    Logged,
    StandIn,
    StripeEmulator,
    decode_form,
)
from entitle_devtools.stripe_emulator import running_emulator as _running_emulator
from tests.support.ports import listening_socket, with_free_port


@contextlib.contextmanager
def running_emulator(log_dir: Path) -> Iterator[StripeEmulator]:
    # The stand-in's socket is kept from choosing to listening: no other xdist worker can take the port.
    with _running_emulator(log_dir, on_free_port=with_free_port, sock=listening_socket()) as emulator:
        yield emulator


def fixture_objects() -> dict[str, Any] | None:
    """Stripe's published example objects, when `shared/stripe/fixtures3.json` sits beside the repository."""
    candidate = Path(__file__).resolve().parents[3] / "shared" / "stripe" / "fixtures3.json"
    if not candidate.exists():
        return None
    resources: dict[str, Any] = json.loads(candidate.read_text())["resources"]
    return resources


__all__ = [
    "TEST_SECRET_KEY",
    "Logged",
    "StandIn",
    "StripeEmulator",
    "decode_form",
    "fixture_objects",
    "running_emulator",
]
