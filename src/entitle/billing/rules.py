"""Pure billing rules (no I/O): subscription item changes, the per-customer subscription limit, usage
identifiers and the usage a period bills. Tested in tests/billing/test_billing_rules.py."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from entitle.errors import FailedPrecondition, InvalidArgument
from entitle.money import minor_unit_exponent
from entitle.subscriptions.rules import proration_behavior

if TYPE_CHECKING:
    from entitle.catalog.packages.models import PackageCharge

# Charges the provider does not bill (their links are NO_SYNC_REQUIRED, with the reason; a subscription
# needing one syncs without it). See docs/stripe.md, "Charge kinds".
MINIMUM_SPEND_NOT_BILLED = (
    "a minimum spend is not billed through the provider: a Stripe price cannot express a minimum per "
    "period, so Stripe bills the subscription's other charges and no shortfall"
)
CREDIT_RATE_NOT_BILLED = "a credit rate is paid in credits (usage of the feature draws them), not through the provider"
FREE_CREDITS_NOT_BILLED = "a credit charge without a price grants its credits at no cost: nothing to bill"
NO_GRANT_NOT_BILLED = "a credit-based price without a creditGrantCadence grants no credits: nothing to bill"


def not_billed(charge: PackageCharge) -> str | None:
    """Why the provider does not bill this charge (None: it does). A credit charge with a price is billed
    per unit like a per-unit charge (its units: the subscription's CREDIT charge quantity)."""
    if charge.billing_model == "MINIMUM_SPEND":
        return MINIMUM_SPEND_NOT_BILLED
    if charge.billing_model == "CREDIT_BASED":
        if charge.feature_ref is not None:
            return CREDIT_RATE_NOT_BILLED
        if not charge.grants_credits:
            return NO_GRANT_NOT_BILLED
        if charge.price_amount is None and not charge.tiers:
            return FREE_CREDITS_NOT_BILLED
    return None


STRIPE_SUBSCRIPTIONS_PER_CUSTOMER = 500
"""Stripe's limit of active subscriptions per customer."""


class TooManySubscriptions(FailedPrecondition):
    code = "BILLING_SUBSCRIPTION_LIMIT_REACHED"


def billed_by_provider(charges: Sequence[PackageCharge], billing_period: str | None) -> bool:
    """Whether any of a subscription's charges (its plan's and add-ons') is one the provider bills for
    the subscription's period: a recurring charge of that period that is not a minimum spend, a credit rate
    or a credit charge without a price."""
    return any(
        c.billing_cadence != "ONE_OFF" and c.billing_period == billing_period and not_billed(c) is None for c in charges
    )


def check_subscription_limit(active: int, limit: int = STRIPE_SUBSCRIPTIONS_PER_CUSTOMER) -> None:
    """Refuse one more provider subscription for a customer that already has `active` of them."""
    if active >= limit:
        raise TooManySubscriptions(
            f"the paying customer already has {active} active subscriptions at the billing provider, the most "
            f"one provider customer can hold ({limit}); end one first, or bill this one to another customer"
        )


class InvoiceRecipientMissing(InvalidArgument):
    code = "CUSTOMER_EMAIL_REQUIRED"


def check_invoice_recipient(payment_collection_method: str, pricing_type: str, email: str | None) -> None:
    """A paid subscription the provider invoices (INVOICE: the provider emails each invoice, due after the
    invoice days) needs the paying customer's email, or no one would receive its invoices."""
    if payment_collection_method == "INVOICE" and pricing_type == "PAID" and not (email or "").strip():
        raise InvoiceRecipientMissing(
            "paymentCollectionMethod INVOICE: the billing provider emails the invoices to the paying customer, "
            "who has no email; set the customer's email first"
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


def meter_event_name(environment: str, feature_ref: str, *, overage: bool = False) -> str:
    """The provider meter's event name for a feature (unique per environment, at most 100 characters).
    An overage charge has its own meter (`entitle_overage_...`, fed only the usage past the included
    amount), so it never bills the usage a usage-based charge of the same feature bills."""
    if overage:
        digest = hashlib.sha256(f"{environment}\0{feature_ref}\0overage".encode()).hexdigest()[:10]
        return f"entitle_overage_{_UNSAFE.sub('_', feature_ref)[:70]}_{digest}"
    digest = hashlib.sha256(f"{environment}\0{feature_ref}".encode()).hexdigest()[:10]
    return f"entitle_{_UNSAFE.sub('_', feature_ref)[:70]}_{digest}"


# Stripe payment method types as the contract's `PaymentMethod.type` (others are recorded without one).
PAYMENT_METHOD_TYPES: dict[str, str] = {
    "card": "CARD",
    "us_bank_account": "BANK",
    "sepa_debit": "BANK",
    "bacs_debit": "BANK",
    "cashapp": "CASH_APP",
    "paypal": "PAYPAL",
}

# Stripe counts a meter event identifier once within a rolling 24 hours (and replays an idempotency key
# for 24 hours): a report re-sent later is counted again, so it is checked against the meter first.
METER_IDENTIFIER_WINDOW = timedelta(hours=24)


def renewal_period(invoice: Mapping[str, Any]) -> tuple[int, int] | None:
    """The billing period (epoch seconds, start < end) a draft renewal invoice bills usage for, or None
    when the invoice does not identify one: only a `subscription_cycle` invoice closes a period (the
    first invoice, `subscription_create`, has no usage yet; an update, threshold or manual invoice, or
    one whose reason is missing, closes none), so no other can mark a period's usage as sent."""
    if invoice.get("status") not in (None, "draft") or invoice.get("billing_reason") != "subscription_cycle":
        return None
    start, end = invoice.get("period_start"), invoice.get("period_end")
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
        return None
    return (start, end) if 0 < start < end else None


def _minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def usage_event_time(period_start: datetime, period_end: datetime, now: datetime) -> datetime:
    """When a period's meter event is timestamped: inside the period (the invoice bills events within
    it), never ahead of now, and on a whole minute where the period allows, because Stripe's meter
    summaries (how a late retry finds the event) are queried in whole minutes."""
    latest = min(period_end - timedelta(seconds=1), now)
    aligned = _minute(latest)
    return aligned if aligned >= period_start else latest


def usage_lookup_range(period_start: datetime, period_end: datetime) -> tuple[datetime, datetime]:
    """The whole minutes in which a period's meter event lies (`usage_event_time`) and no neighbouring
    period's does: from the first whole minute of the period to the minute after its last event time."""
    first = _minute(period_start)
    if first < period_start:
        first += timedelta(minutes=1)
    return first, _minute(period_end - timedelta(seconds=1)) + timedelta(minutes=1)


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


def provider_proration(behavior: str | None) -> str | None:
    """A subscription's `prorationBehavior` (validated by `subscriptions.rules.proration_behavior`) as
    Stripe's `proration_behavior` (None: Stripe's default)."""
    return None if behavior is None else _PRORATIONS[behavior]


def proration_of(billing_information: Mapping[str, Any] | None) -> str | None:
    """`billingInformation.prorationBehavior` as the provider's proration behaviour (None when absent)."""
    return provider_proration(proration_behavior(billing_information))


# ---------------------------------------------------------------------------------------------- prices
#
# How one catalog charge is billed by the provider (Stripe's Price model), and what the provider bills
# for a quantity. Entitle's own arithmetic is `entitle.subscriptions.pricing`; `provider_amount` models
# Stripe's documented semantics so the property tests (tests/billing/test_stripe_charge_kinds.py) can
# check that the provider bills exactly what Entitle computes, for any tiers and any quantity.


@dataclass(frozen=True)
class ProviderTier:
    """One Stripe tier, amounts in exact minor units (`up_to` None: "inf")."""

    up_to: int | None
    unit_amount_minor: Decimal | None = None
    flat_amount_minor: Decimal | None = None


@dataclass(frozen=True)
class PriceShape:
    """How the provider bills one charge per quantity.

    - per unit (no tiers): `unit_amount_minor` per unit; with `divide_by` the provider divides the
      quantity by it and rounds up first (Stripe `transform_quantity`), so the price is per block;
    - tiered: `tiers` in `tiers_mode` (Stripe `billing_scheme=tiered`, which takes no quantity
      transformation).

    What Entitle sends as the quantity (item quantity, or reported usage) is `provider_quantity`:
    the units themselves, or — where Stripe cannot transform the quantity itself — the units rounded up
    to whole blocks (`round_quantity_to`, tiers with a block size), or the number of blocks
    (`count_blocks_of`, a fractional block size).
    """

    unit_amount_minor: Decimal | None = None
    tiers: tuple[ProviderTier, ...] = ()
    tiers_mode: str | None = None  # "graduated" | "volume"
    divide_by: int | None = None
    round_quantity_to: int | None = None
    count_blocks_of: Decimal | None = None


_MAX_DECIMALS = 12  # Stripe's unit_amount_decimal: at most 12 decimal places (minor units)


def _minor(amount: Decimal, exponent: int) -> Decimal:
    return (amount * (Decimal(10) ** exponent)).normalize()


def _whole(value: Decimal) -> bool:
    return value == value.to_integral_value()


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def price_shape(
    *,
    amount: Decimal | None,
    tiers: Sequence[tuple[Decimal | None, Decimal | None, Decimal | None]],
    tiers_mode: str | None,
    block_size: Decimal | None,
    exponent: int,
) -> PriceShape | str:
    """The provider price of a charge (major-unit `amount`, or `tiers` as (upTo, unit price, flat
    price) in major units, with `tiers_mode` VOLUME|GRADUATED and an optional `block_size`), or why the
    provider cannot bill exactly what Entitle computes.

    Entitle's amount for q units (`pricing.line_for`): the units are rounded up to whole blocks,
    u = ceil(q / block) * block; then `amount * u`, or the tiered cost of u. Mapped so the provider bills
    the same: a per-unit price per block of `amount * block` on ceil(q / block) (Stripe's
    `transform_quantity` divide_by/round up for a whole block size, else the number of blocks is sent);
    tiers become Stripe tiers (last `up_to` "inf"), and with a block size the quantity sent is u.
    """
    block = block_size if block_size is not None and block_size > 0 and block_size != 1 else None
    if tiers:
        if tiers_mode not in ("VOLUME", "GRADUATED"):
            return "tiers need tiersMode VOLUME or GRADUATED"
        converted: list[ProviderTier] = []
        for i, (up_to, unit, flat) in enumerate(tiers):
            if up_to is not None and (not _whole(up_to) or up_to <= 0):
                return f"tier {i + 1} ends at {up_to}: the provider's tier bounds are whole numbers of units"
            if (up_to is None) != (i == len(tiers) - 1):
                return "only the last tier is open-ended"
            unit_minor = _minor(unit, exponent) if unit else None
            flat_minor = _minor(flat, exponent) if flat else None
            if flat_minor is not None and not _whole(flat_minor):
                return f"tier {i + 1}'s flat price {flat} is not a whole number of minor units, as the provider needs"
            if unit_minor is not None and _decimals(unit_minor) > _MAX_DECIMALS:
                return f"tier {i + 1}'s unit price {unit} has more than {_MAX_DECIMALS} decimal places of minor units"
            converted.append(ProviderTier(int(up_to) if up_to is not None else None, unit_minor, flat_minor))
        if block is not None and not _whole(block):
            return (
                f"tiers with a fractional block size ({block}) send fractional quantities, which the provider refuses"
            )
        return PriceShape(
            tiers=tuple(converted),
            tiers_mode=tiers_mode.lower(),
            round_quantity_to=int(block) if block is not None else None,
        )
    if amount is None:
        return "the charge has no amount"
    per_block = _minor(amount * (block or 1), exponent)
    if _decimals(per_block) > _MAX_DECIMALS:
        return f"the price {amount} has more than {_MAX_DECIMALS} decimal places of minor units"
    if block is None:
        return PriceShape(unit_amount_minor=per_block)
    if _whole(block):
        return PriceShape(unit_amount_minor=per_block, divide_by=int(block))
    return PriceShape(unit_amount_minor=per_block, count_blocks_of=block)


def provider_quantity(shape: PriceShape, units: Decimal) -> Decimal:
    """The quantity Entitle sends the provider for `units` (an item's quantity, or a period's usage)."""
    if shape.round_quantity_to is not None:
        return _ceil(units / shape.round_quantity_to) * shape.round_quantity_to
    if shape.count_blocks_of is not None:
        return _ceil(units / shape.count_blocks_of)
    return units


def provider_amount(shape: PriceShape, quantity: Decimal) -> Decimal:
    """What the provider bills, in exact minor units before its rounding, for a quantity it was sent
    (Stripe's documented semantics: `transform_quantity` divides and rounds up; volume prices every unit
    at the tier the quantity falls in, plus that tier's flat amount; graduated prices each unit at its
    own tier, plus the flat amount of every tier reached). Quantities of at least one unit."""
    if not shape.tiers:
        billed = _ceil(quantity / shape.divide_by) if shape.divide_by else quantity
        return billed * (shape.unit_amount_minor or Decimal(0))
    if shape.tiers_mode == "volume":
        tier = next(t for t in shape.tiers if t.up_to is None or quantity <= t.up_to)
        return quantity * (tier.unit_amount_minor or 0) + (tier.flat_amount_minor or 0)
    total, floor = Decimal(0), Decimal(0)
    for tier in shape.tiers:
        if quantity <= floor:
            break
        top = quantity if tier.up_to is None else min(quantity, Decimal(tier.up_to))
        total += (top - floor) * (tier.unit_amount_minor or 0) + (tier.flat_amount_minor or 0)
        floor = Decimal(tier.up_to) if tier.up_to is not None else quantity
    return total


def _ceil(value: Decimal) -> Decimal:
    return value.to_integral_value(rounding=ROUND_CEILING)


def period_overage(
    windows: Sequence[tuple[datetime, Decimal]],
    period_start: datetime,
    period_end: datetime,
    previous: tuple[datetime, Decimal] | None,
    included: Decimal,
) -> tuple[Decimal, datetime | None, Decimal]:
    """The usage past the `included` amount a billing period bills (an overage charge), from the
    feature's usage windows as `period_usage` selects them: each window's usage beyond `included` (the
    limit applies per usage window), less what an earlier period already billed of the first window
    (`previous`, the watermark: that window's counter when last measured). Never negative. Returns
    (value, the window measured last, its counter value) — the next watermark, as `period_usage`."""
    ordered = sorted((w for w in windows if w[0] < period_end), key=lambda w: w[0])
    first = max((i for i, w in enumerate(ordered) if w[0] <= period_start), default=None)
    overlapping = ordered[first:] if first is not None else [w for w in ordered if w[0] > period_start]
    if not overlapping:
        return Decimal(0), None, Decimal(0)
    total = sum((max(v - included, Decimal(0)) for _, v in overlapping), Decimal(0))
    if previous is not None and previous[0] == overlapping[0][0]:
        total -= max(previous[1] - included, Decimal(0))
    last_start, last_value = overlapping[-1]
    return max(total, Decimal(0)), last_start, last_value


def charge_currency(charge: PackageCharge) -> str:
    """A charge's currency (lowercase): its price's, or its tiers'."""
    if charge.price_currency:
        return charge.price_currency.lower()
    for tier in charge.tiers or ():
        for key in ("unitPrice", "flatPrice"):
            if (tier.get(key) or {}).get("currency"):
                return str(tier[key]["currency"]).lower()
    return "usd"


def charge_shape(charge: PackageCharge) -> PriceShape | str:
    """`price_shape` of a stored charge (its tiers are JSON documents with exact decimal strings)."""

    def amount(price: Any) -> Decimal | None:
        return Decimal(str(price["amount"])) if price else None

    tiers = [
        (
            Decimal(str(t["upTo"])) if t.get("upTo") is not None else None,
            amount(t.get("unitPrice")),
            amount(t.get("flatPrice")),
        )
        for t in charge.tiers or ()
    ]
    return price_shape(
        amount=charge.price_amount,
        tiers=tiers,
        tiers_mode=charge.tiers_mode or ("GRADUATED" if charge.is_overage else None),
        block_size=charge.block_size,
        exponent=minor_unit_exponent(charge_currency(charge)),
    )


# The languages Stripe takes as a customer's `preferred_locales` (its invoices and receipts are written in
# the first): https://docs.stripe.com/api/customers/object#customer_object-preferred_locales
STRIPE_LOCALES = frozenset(
    {
        *("bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi", "fil", "fr", "fr-CA", "hr"),
        *("hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt", "pt-BR", "ro", "ru"),
        *("sk", "sl", "sv", "th", "tr", "vi", "zh", "zh-HK", "zh-TW"),
    }
)
_LOCALE_BY_LOWER = {locale.lower(): locale for locale in STRIPE_LOCALES}


def stripe_locales(language: str | None) -> tuple[str, ...]:
    """A customer's `language` (a BCP 47 tag such as `fr-CA`, `en_US` or `pt-br`) as Stripe's locale: the
    tag itself when Stripe has it, else its base language (`en-US` -> `en`), else none — a language Stripe
    does not write in is kept by Entitle and not sent, since Stripe would refuse the whole customer."""
    if not language:
        return ()
    tag = language.strip().replace("_", "-").lower()
    for candidate in (tag, tag.split("-", 1)[0]):
        if candidate in _LOCALE_BY_LOWER:
            return (_LOCALE_BY_LOWER[candidate],)
    return ()


def clip_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Stripe's metadata limits: keys up to 40 characters, values up to 500."""
    return {k[:40]: v[:500] for k, v in metadata.items()}
