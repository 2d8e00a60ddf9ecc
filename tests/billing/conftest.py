"""Billing fixtures: a local Stripe (localstripe + the stand-in, see tests/support/stripe_emulator.py),
started once per test session and emptied before each test, and a fixed secret-encryption key.

Real Stripe test mode: every test using `stripe_emulator` runs twice, against the emulator and against
real Stripe (`[stripe-test-mode]`). The real run needs `ENTITLE_STRIPE_TEST_SECRET_KEY` (an `sk_test_`
key) and is skipped, saying so, without it. The real backend has the emulator's `api_base`,
`secret_key` and `client()`; what only an emulator can do (`standin`, `fail_next`, `localstripe_base`,
webhooks sent by localstripe) skips the real run where the test reaches for it, and a test marked
`@pytest.mark.emulator_only` is skipped against real Stripe up front. Real accounts are never emptied:
`reset()` does nothing there, so tests meant for both backends find their objects by id or metadata,
never by "the only one in the account".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
import stripe
from cryptography.fernet import Fernet

from entitle import clock
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


REAL_KEY_VAR = "ENTITLE_STRIPE_TEST_SECRET_KEY"
REAL_API_BASE = "https://api.stripe.com"


@dataclass
class RealStripe:
    """Real Stripe test mode behind the emulator's interface (`api_base`, `secret_key`, `client()`)."""

    secret_key: str
    api_base: str = REAL_API_BASE

    def client(self, secret_key: str | None = None) -> stripe.StripeClient:
        return stripe.StripeClient(secret_key or self.secret_key, max_network_retries=2)

    def reset(self) -> None:
        """A real account is not emptied between tests (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        # Only reached for what the emulator has and real Stripe has not (standin, fail_next, ...).
        if name.startswith("__"):
            raise AttributeError(name)
        pytest.skip(f"emulator only: the test uses StripeEmulator.{name}, which real Stripe test mode lacks")


@pytest.fixture(params=["emulator", "stripe-test-mode"])
def stripe_emulator(request: pytest.FixtureRequest) -> StripeEmulator:
    """The Stripe a billing test talks to: the local emulator, or real Stripe test mode (see above)."""
    if request.param == "stripe-test-mode":
        key = os.environ.get(REAL_KEY_VAR, "")
        if not key:
            pytest.skip(f"{REAL_KEY_VAR} is not set: the run against real Stripe test mode is skipped")
        if not key.startswith("sk_test_"):
            pytest.fail(f"{REAL_KEY_VAR} must be a Stripe test-mode secret key (sk_test_...)")
        if request.node.get_closest_marker("emulator_only") is not None:
            pytest.skip("emulator only (marked): this test cannot run against real Stripe test mode")
        return cast(StripeEmulator, RealStripe(key))
    emulator: StripeEmulator = request.getfixturevalue("stripe_emulator_session")
    emulator.reset()
    # Stripe's "now" is Entitle's (a test's TestClock when it installs one, else the real time), as a Stripe
    # test clock would make it: the periods Stripe bills are the ones Entitle computes and previews.
    emulator.standin.clock = lambda: clock.utcnow().timestamp()
    return emulator


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


def card_payment_method(emulator: StripeEmulator) -> str:
    """A new card payment method (Visa, always succeeds) at whichever Stripe the test talks to: real Stripe
    takes no raw card numbers from a server, so there it comes from the test token `tok_visa`."""
    card: Any = (
        {"token": "tok_visa"}
        if isinstance(emulator, RealStripe)
        else {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}
    )
    params: Any = {"type": "card", "card": card}
    return str(emulator.client().v1.payment_methods.create(params=params).id)


def card_customer(api: httpx.Client, emulator: StripeEmulator, ref: str) -> str:
    """An Entitle customer with a card as its `defaultPaymentMethod`; returns the payment method id."""
    method = card_payment_method(emulator)
    body = {
        "id": ref,
        "name": ref,
        "email": f"{ref}@example.com",
        "defaultPaymentMethod": {"billingId": method, "type": "CARD"},
    }
    resp = api.post("/api/v1/customers", json=body)
    assert resp.status_code == 200, resp.text
    return method
