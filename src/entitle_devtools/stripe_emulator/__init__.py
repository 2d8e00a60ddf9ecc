"""A local Stripe for development and tests: localstripe behind a stand-in for what it lacks.

Development only (the `stripe-emulator` extra): the `entitle` package never imports this package, and
this package never imports localstripe (GPL-3.0) either — localstripe runs as a separate process
(`localstripe.py`). `entitle-stripe-emulator` (`cli.py`) starts both and connects a development
environment to them; docs/stripe.md walks through it.
"""

from entitle_devtools.stripe_emulator.emulator import StripeEmulator, running_emulator
from entitle_devtools.stripe_emulator.standin import Failure, Logged, StandIn
from entitle_devtools.stripe_emulator.wire import TEST_SECRET_KEY, StripeError, decode_form

__all__ = [
    "TEST_SECRET_KEY",
    "Failure",
    "Logged",
    "StandIn",
    "StripeEmulator",
    "StripeError",
    "decode_form",
    "running_emulator",
]
