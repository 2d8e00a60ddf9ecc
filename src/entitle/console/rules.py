"""Pure rules of the console: roles, sign-in throttling, monthly recurring revenue, provider dashboard links."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from urllib.parse import quote

from entitle.errors import InvalidArgument
from entitle.money import minor_unit_exponent


class Role(StrEnum):
    ADMIN = "admin"  # everything, including users, API keys and integrations
    EDITOR = "editor"  # catalog, customers, subscriptions
    VIEWER = "viewer"  # read-only


class Permission(StrEnum):
    READ = "read"
    EDIT = "edit"
    ADMINISTER = "administer"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.EDITOR: frozenset({Permission.READ, Permission.EDIT}),
    Role.VIEWER: frozenset({Permission.READ}),
}


def role_of(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidArgument(f"role must be one of {', '.join(r.value for r in Role)}") from None


def may(role: Role | str, permission: Permission) -> bool:
    return permission in GRANTS[Role(role)]


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value):
        raise InvalidArgument("email must look like name@example.com")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(f"passwords are at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(f"passwords are at most {MAX_PASSWORD_LENGTH} characters")


# --- sign-in throttling --------------------------------------------------------------------------

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)


@dataclass(frozen=True)
class Failures:
    count: int
    window_start: datetime
    locked_until: datetime | None = None


def locked(state: Failures | None, now: datetime) -> bool:
    return state is not None and state.locked_until is not None and now < state.locked_until


def after_failure(state: Failures | None, now: datetime) -> Failures:
    """One more failed sign-in: the MAX_FAILURES-th within FAILURE_WINDOW locks the email for LOCKOUT
    (the right password included, so guessing gains nothing while locked)."""
    if state is None or now - state.window_start > FAILURE_WINDOW:
        state = Failures(0, now)
    count = state.count + 1
    return Failures(count, state.window_start, now + LOCKOUT if count >= MAX_FAILURES else state.locked_until)


# --- monthly recurring revenue -------------------------------------------------------------------

RECURRING_STATUSES = frozenset({"ACTIVE"})
MONTHS_IN = {"MONTHLY": Decimal(1), "ANNUALLY": Decimal(12)}


@dataclass(frozen=True)
class RecurringCharge:
    """What one subscription bills each period for its base and per-unit charges at their current
    quantities, after its recurring discount (usage-based and one-off charges are not in it)."""

    currency: str
    billing_period: str
    amount: Decimal
    status: str
    pricing_type: str
    in_trial: bool


def monthly_amount(charge: RecurringCharge) -> Decimal:
    return charge.amount / MONTHS_IN[charge.billing_period]


def counts_in_mrr(charge: RecurringCharge) -> bool:
    return (
        charge.status in RECURRING_STATUSES
        and not charge.in_trial
        and charge.pricing_type == "PAID"
        and charge.billing_period in MONTHS_IN
        and charge.amount > 0
    )


def mrr(charges: Iterable[RecurringCharge]) -> dict[str, Decimal]:
    """Monthly recurring revenue per currency (lower case), rounded to the currency's minor unit once,
    after summing (a period's price divided by its months, so an annual price counts a twelfth)."""
    totals: dict[str, Decimal] = {}
    for charge in charges:
        if counts_in_mrr(charge):
            currency = charge.currency.lower()
            totals[currency] = totals.get(currency, Decimal(0)) + monthly_amount(charge)
    return {
        currency: total.quantize(Decimal(1).scaleb(-minor_unit_exponent(currency)))
        for currency, total in sorted(totals.items())
    }


def one_off_totals(charges: Iterable[tuple[str, Decimal]]) -> dict[str, Decimal]:
    """One-off charges `(currency, amount)` summed per currency (lower case), rounded to the currency's
    minor unit once, after summing, as MRR is; zero amounts (a free grant) are no charge."""
    totals: dict[str, Decimal] = {}
    for currency, amount in charges:
        if amount > 0:
            totals[currency.lower()] = totals.get(currency.lower(), Decimal(0)) + amount
    return {
        currency: total.quantize(Decimal(1).scaleb(-minor_unit_exponent(currency)))
        for currency, total in sorted(totals.items())
    }


# Where the provider's dashboard shows each kind of synced entity (a plan or add-on is a Stripe product).
STRIPE_DASHBOARD_PATHS = {
    "CUSTOMER": "customers",
    "SUBSCRIPTION": "subscriptions",
    "PLAN": "products",
    "ADDON": "products",
    "COUPON": "coupons",
}


def dashboard_url(vendor: str, livemode: bool, entity_type: str, billing_id: str | None) -> str | None:
    """The provider's dashboard page of a synced entity (test-mode objects live under /test/), or None."""
    path = STRIPE_DASHBOARD_PATHS.get(entity_type)
    if vendor.upper() != "STRIPE" or path is None or not billing_id:
        return None
    mode = "" if livemode else "test/"
    return f"https://dashboard.stripe.com/{mode}{path}/{quote(billing_id, safe='')}"
