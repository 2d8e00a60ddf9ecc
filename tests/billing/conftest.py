"""Billing fixtures: a local Stripe (localstripe + the stand-in, see tests/support/stripe_emulator.py),
started once per test session and emptied before each test, and a fixed secret-encryption key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from entitle.billing.secrets import ENV_VAR
from tests.support.stripe_emulator import StripeEmulator, running_emulator

SESSION_KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def stripe_emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeEmulator]:
    try:
        import localstripe  # noqa: F401
    except ImportError:  # CI installs the dev extra; a missing emulator is a failure, not a skip
        pytest.fail("localstripe is not installed: run `make install` (it is in the dev extra)")
    with running_emulator(tmp_path_factory.mktemp("stripe-emulator")) as emulator:
        yield emulator


@pytest.fixture
def stripe_emulator(stripe_emulator_session: StripeEmulator) -> StripeEmulator:
    stripe_emulator_session.reset()
    return stripe_emulator_session


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Provider secrets are encrypted with this key (no key file is written under the checkout)."""
    monkeypatch.setenv(ENV_VAR, SESSION_KEY)
    return SESSION_KEY


def connect_stripe(api: httpx.Client, emulator: StripeEmulator, **extra: Any) -> dict[str, Any]:
    body = {"vendorIdentifier": "STRIPE", "apiSecretKey": emulator.secret_key, "apiBase": emulator.api_base, **extra}
    resp = api.post("/api/v1/integrations", json=body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data
