"""Subscription lifecycle rules: the status machine and proration, as pure functions.

Statuses (the contract's SubscriptionStatus):

- NOT_STARTED: provisioned with a start date in the future; grants nothing yet.
- PAYMENT_PENDING: waiting for the billing provider to collect the first payment; grants nothing.
- IN_TRIAL: in a trial period; grants the plan's entitlements.
- ACTIVE: paid (or free, or custom-priced); grants the plan's entitlements.
- CANCELED: ended by a cancellation (immediate, at a scheduled date, by the billing provider, by a
  plan change that replaced it, or because payment never arrived); grants nothing.
- EXPIRED: a trial ended without converting; grants nothing.

Every allowed move is listed in `TRANSITIONS`; anything else is refused, so an event that arrives
late (a payment for a subscription already canceled) cannot resurrect a subscription.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

from entitle.errors import InvalidArgument
from entitle.money import minor_unit_exponent


class Status(StrEnum):
    NOT_STARTED = "NOT_STARTED"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    IN_TRIAL = "IN_TRIAL"
    ACTIVE = "ACTIVE"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


class Event(StrEnum):
    START = "START"  # the start date arrived (NOT_STARTED -> the status it starts in)
    START_TRIAL = "START_TRIAL"
    PAYMENT_REQUIRED = "PAYMENT_REQUIRED"
    PAYMENT_SUCCEEDED = "PAYMENT_SUCCEEDED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    TRIAL_CONVERTED = "TRIAL_CONVERTED"
    TRIAL_ENDED = "TRIAL_ENDED"  # trial over, trialEndBehavior CANCEL_SUBSCRIPTION
    CANCEL = "CANCEL"
    PAYMENT_EXPIRED = "PAYMENT_EXPIRED"


LIVE = frozenset({Status.ACTIVE, Status.IN_TRIAL})
"""Statuses that grant entitlements."""
OPEN = frozenset({Status.NOT_STARTED, Status.PAYMENT_PENDING, Status.IN_TRIAL, Status.ACTIVE})
"""Statuses of a subscription that has not ended: at most one per customer, product and resource, but
for a PAYMENT_PENDING replacement of a live one (kept until the replacement is paid for)."""

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.NOT_STARTED, Event.START): Status.ACTIVE,
    (Status.NOT_STARTED, Event.START_TRIAL): Status.IN_TRIAL,
    (Status.NOT_STARTED, Event.PAYMENT_REQUIRED): Status.PAYMENT_PENDING,
    (Status.NOT_STARTED, Event.CANCEL): Status.CANCELED,
    (Status.PAYMENT_PENDING, Event.PAYMENT_SUCCEEDED): Status.ACTIVE,
    (Status.PAYMENT_PENDING, Event.PAYMENT_FAILED): Status.PAYMENT_PENDING,
    (Status.PAYMENT_PENDING, Event.PAYMENT_EXPIRED): Status.CANCELED,
    (Status.PAYMENT_PENDING, Event.CANCEL): Status.CANCELED,
    (Status.IN_TRIAL, Event.TRIAL_CONVERTED): Status.ACTIVE,
    (Status.IN_TRIAL, Event.PAYMENT_REQUIRED): Status.PAYMENT_PENDING,
    (Status.IN_TRIAL, Event.TRIAL_ENDED): Status.EXPIRED,
    (Status.IN_TRIAL, Event.CANCEL): Status.CANCELED,
    (Status.ACTIVE, Event.PAYMENT_SUCCEEDED): Status.ACTIVE,
    (Status.ACTIVE, Event.PAYMENT_FAILED): Status.ACTIVE,
    (Status.ACTIVE, Event.CANCEL): Status.CANCELED,
}


class IllegalTransition(ValueError):
    def __init__(self, status: Status, event: Event) -> None:
        super().__init__(f"a {status.value} subscription cannot take {event.value}")
        self.status = status
        self.event = event


def transition(status: Status | str, event: Event | str) -> Status:
    current, happened = Status(status), Event(event)
    try:
        return TRANSITIONS[(current, happened)]
    except KeyError:
        raise IllegalTransition(current, happened) from None


def prorated_amount(
    amount: Decimal, currency: str, period_start: datetime, period_end: datetime, at: datetime
) -> Decimal:
    """The share of `amount` for what remains of the period after `at`, rounded to the currency's
    minor unit (banker's rounding so that rounding errors do not drift one way)."""
    if period_end <= period_start:
        raise ValueError("a period must end after it starts")
    if at <= period_start:
        share = Decimal(1)
    elif at >= period_end:
        share = Decimal(0)
    else:
        remaining = Decimal((period_end - at).total_seconds())
        share = remaining / Decimal((period_end - period_start).total_seconds())
    quantum = Decimal(1).scaleb(-minor_unit_exponent(currency))
    return (amount * share).quantize(quantum, rounding=ROUND_HALF_EVEN)


# -- billingInformation ------------------------------------------------------------------------------

PRORATION_BEHAVIORS = ("CREATE_PRORATIONS", "NONE", "INVOICE_IMMEDIATELY")


# Sent to the billing provider and never kept (the provider customer's or subscription's).
FORWARDED_BILLING_INFORMATION = (
    "billingAddress",
    "taxIds",
    "metadata",
    "taxRateIds",
    "taxPercentage",
    "invoiceDaysUntilDue",
)


def forwarded_billing_information(billing_information: Mapping[str, Any] | None) -> bool:
    """Whether `billingInformation` carries anything for the provider alone (see FORWARDED_BILLING_INFORMATION)."""
    return any((billing_information or {}).get(k) not in (None, [], {}) for k in FORWARDED_BILLING_INFORMATION)


def days_until_due(billing_information: Mapping[str, Any] | None) -> int | None:
    """`billingInformation.invoiceDaysUntilDue`: whole days, 0 to 730 (None when absent)."""
    value = (billing_information or {}).get("invoiceDaysUntilDue")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal) or value != int(value):
        raise InvalidArgument("billingInformation.invoiceDaysUntilDue must be a whole number of days")
    if not 0 <= value <= 730:
        raise InvalidArgument("billingInformation.invoiceDaysUntilDue must be between 0 and 730")
    return int(value)


def check_days_until_due(billing_information: Mapping[str, Any] | None, payment_collection_method: str) -> None:
    """`invoiceDaysUntilDue` is when invoices the provider *sends* fall due: only a subscription collected
    by INVOICE has such invoices (a 400 otherwise, rather than a value no one would use)."""
    if days_until_due(billing_information) is not None and payment_collection_method != "INVOICE":
        raise InvalidArgument(
            "billingInformation.invoiceDaysUntilDue applies to invoices the provider sends: give it with "
            f"paymentCollectionMethod INVOICE (this subscription's is {payment_collection_method})"
        )


def proration_behavior(billing_information: Mapping[str, Any] | None) -> str | None:
    """`billingInformation.prorationBehavior`, one of PRORATION_BEHAVIORS (None when absent)."""
    value = (billing_information or {}).get("prorationBehavior")
    if value is None:
        return None
    if value not in PRORATION_BEHAVIORS:
        raise InvalidArgument(f"billingInformation.prorationBehavior must be one of {', '.join(PRORATION_BEHAVIORS)}")
    return str(value)


def billing_country(subscribed: Sequence[tuple[bool, str | None]], asked: str | None) -> str | None:
    """Whose country's prices a customer sees and pays, as Stigg's price localization has it: a country the
    customer already subscribed with wins over the one a page asks for (a billing provider's customer has
    one currency), the newest subscription of the product in question first, then its newest of any
    product; without one, the country asked for (the app's knowledge: billing address, GeoIP); else none
    (the default prices). `subscribed`: the customer's live subscriptions, oldest first, as (of the
    product in question, billingCountryCode)."""
    of_product = [country for same, country in subscribed if same and country]
    anywhere = [country for _, country in subscribed if country]
    subscribed_in = of_product or anywhere
    return subscribed_in[-1] if subscribed_in else asked or None


def keeps_billing_cycle(
    current_pricing: str | None,
    current_period: str | None,
    current_anchor: datetime,
    new_period: str | None,
    now: datetime,
) -> bool:
    """Does an immediate plan change keep the billing cycle of the paid subscription it replaces?

    Yes when both bill the same period and the current one's cycle has begun (not in a trial): the new
    plan is charged for the rest of the current period, and its period ends where the old one's did (as
    Stigg and Stripe do unless the anchor is reset, which Entitle refuses). A change of billing period
    starts a new cycle now; a free subscription has no cycle to keep."""
    return (
        current_pricing == "PAID"
        and current_period is not None
        and current_period == new_period
        and current_anchor <= now
    )
