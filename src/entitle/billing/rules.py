"""Pure billing rules (no I/O): subscription item changes, the per-customer subscription limit, usage
identifiers and the usage a period bills. Tested in tests/billing/test_billing_rules.py."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from entitle.errors import FailedPrecondition, InvalidArgument

STRIPE_SUBSCRIPTIONS_PER_CUSTOMER = 500
"""Stripe's limit of active subscriptions per customer."""


class TooManySubscriptions(FailedPrecondition):
    code = "BILLING_SUBSCRIPTION_LIMIT_REACHED"


def check_subscription_limit(active: int, limit: int = STRIPE_SUBSCRIPTIONS_PER_CUSTOMER) -> None:
    """Refuse one more provider subscription for a customer that already has `active` of them."""
    if active >= limit:
        raise TooManySubscriptions(
            f"the paying customer already has {active} active subscriptions at the billing provider, the most "
            f"one provider customer can hold ({limit}); end one first, or bill this one to another customer"
        )


@dataclass(frozen=True)
class CurrentItem:
    id: str
    price: str
    quantity: int | None


@dataclass(frozen=True)
class WantedItem:
    price: str
    quantity: int | None  # None: metered (no quantity)


@dataclass(frozen=True)
class ItemChange:
    """One entry of a provider subscription update's item list."""

    id: str | None = None  # an existing item (to change or delete); None: a new item
    price: str | None = None  # the new price of a new or replaced item
    quantity: int | None = None
    deleted: bool = False


def item_changes(current: Sequence[CurrentItem], wanted: Sequence[WantedItem]) -> list[ItemChange]:
    """The item edits that turn `current` into `wanted` (empty when they match).

    An item on a wanted price is kept (its quantity changed when it differs). Left-over current items
    are given the left-over wanted prices in order (the item is replaced in place: its id stays, the
    price changes — a plan change keeps its line; licensed items only), then any remaining current items
    are deleted and any remaining wanted prices added.
    """
    changes: list[ItemChange] = []
    remaining = list(current)
    unmatched: list[WantedItem] = []
    for want in wanted:
        found = next((c for c in remaining if c.price == want.price), None)
        if found is None:
            unmatched.append(want)
            continue
        remaining.remove(found)
        if want.quantity is not None and found.quantity != want.quantity:
            changes.append(ItemChange(id=found.id, quantity=want.quantity))
    # In place only between licensed items (a metered item has no quantity to carry over).
    licensed_old = [c for c in remaining if c.quantity is not None]
    licensed_new = [w for w in unmatched if w.quantity is not None]
    for old, want in zip(licensed_old, licensed_new, strict=False):
        changes.append(ItemChange(id=old.id, price=want.price, quantity=want.quantity))
        remaining.remove(old)
        unmatched.remove(want)
    changes += [ItemChange(id=old.id, deleted=True) for old in remaining]
    changes += [ItemChange(price=want.price, quantity=want.quantity) for want in unmatched]
    return changes


def apply_item_changes(current: Sequence[CurrentItem], changes: Sequence[ItemChange]) -> list[WantedItem]:
    """What a provider subscription holds after `changes` (the model `item_changes` is tested against)."""
    items = {c.id: WantedItem(c.price, c.quantity) for c in current}
    added: list[WantedItem] = []
    for change in changes:
        if change.id is None:
            assert change.price is not None
            added.append(WantedItem(change.price, change.quantity))
        elif change.deleted:
            del items[change.id]
        else:
            old = items[change.id]
            quantity = change.quantity if change.quantity is not None else old.quantity
            items[change.id] = WantedItem(change.price or old.price, quantity)
    return list(items.values()) + added


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def coupon_billing_ref(environment: str, coupon_ref: str) -> str:
    """The provider coupon's id: readable, unique per environment (two environments may share a
    Stripe account), at most 200 characters and only characters Stripe takes in ids."""
    digest = hashlib.sha256(f"{environment}\0{coupon_ref}".encode()).hexdigest()[:10]
    return f"entitle_{_UNSAFE.sub('-', coupon_ref)[:150]}_{digest}"


def meter_event_name(environment: str, feature_ref: str) -> str:
    """The provider meter's event name for a feature (unique per environment, at most 100 characters)."""
    digest = hashlib.sha256(f"{environment}\0{feature_ref}".encode()).hexdigest()[:10]
    return f"entitle_{_UNSAFE.sub('_', feature_ref)[:70]}_{digest}"


def usage_identifier(subscription_ref: str, feature_ref: str, period_start: datetime) -> str:
    """The meter event identifier of one (subscription, feature, period): the same on every retry, so
    the provider counts the period's usage once."""
    key = f"{subscription_ref}\0{feature_ref}\0{int(period_start.timestamp())}"
    return f"entitle-usage-{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def period_usage(
    windows: Sequence[tuple[datetime, Decimal]],
    period_start: datetime,
    period_end: datetime,
    previous: tuple[datetime, Decimal] | None,
) -> tuple[Decimal, datetime | None, Decimal]:
    """The usage a billing period bills, from the feature's usage windows (start, counter value).

    The windows overlapping the period are the one running at its start and those starting inside it.
    Their counters are summed, less what an earlier period already billed of the first one (`previous`:
    the window and cumulative value the last report measured — the watermark), so a usage window
    that resets with the billing period bills its counter, and one that never resets (or spans several
    periods) bills only its growth. A counter set lower in between bills nothing, never a negative
    amount. Returns (value, the window measured last, its counter value) — the next watermark.
    """
    ordered = sorted((w for w in windows if w[0] < period_end), key=lambda w: w[0])
    first = max((i for i, w in enumerate(ordered) if w[0] <= period_start), default=None)
    overlapping = ordered[first:] if first is not None else [w for w in ordered if w[0] > period_start]
    if not overlapping:
        return Decimal(0), None, Decimal(0)
    total = sum((v for _, v in overlapping), Decimal(0))
    if previous is not None and previous[0] == overlapping[0][0]:
        total -= previous[1]
    last_start, last_value = overlapping[-1]
    return max(total, Decimal(0)), last_start, last_value


_PRORATIONS = {"CREATE_PRORATIONS": "create_prorations", "NONE": "none", "INVOICE_IMMEDIATELY": "always_invoice"}


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


def proration_of(billing_information: Mapping[str, Any] | None) -> str | None:
    """`billingInformation.prorationBehavior` as the provider's proration behaviour (None when absent)."""
    value = (billing_information or {}).get("prorationBehavior")
    if value is None:
        return None
    if value not in _PRORATIONS:
        raise InvalidArgument(f"billingInformation.prorationBehavior must be one of {', '.join(_PRORATIONS)}")
    return _PRORATIONS[str(value)]
