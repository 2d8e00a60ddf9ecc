"""Pure rules of the console's catalog editors: how a version's entitlements and charges read as one
line each, the difference between a draft and the published version, and the editors' text fields
(tiers, amounts per currency) turned into the API's request shapes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from entitle.catalog.packages.models import Package, PackageCharge, PackageEntitlement
from entitle.errors import InvalidArgument

Change = Literal["added", "removed", "changed", "unchanged"]


def _num(value: object) -> str:
    return format(Decimal(str(value)).normalize(), "f")


def entitlement_line(e: PackageEntitlement) -> str:
    """What an entitlement grants and how pricing pages show it, as one comparable line."""
    if e.entitlement_type == "CREDIT":
        parts = [f"{_num(e.amount) if e.amount is not None else 'no'} credits per {(e.cadence or '').lower()}"]
    elif not e.is_granted:
        parts = ["withheld"]
    elif e.has_unlimited_usage:
        parts = ["unlimited"]
    elif e.usage_limit is not None:
        parts = [f"up to {_num(e.usage_limit)}" + (" (soft limit)" if e.has_soft_limit else "")]
    else:
        parts = ["granted"]
    if e.reset_period:
        parts.append(f"resets every {e.reset_period.lower()}")
    if e.enum_values:
        parts.append("values " + ", ".join(sorted(e.enum_values)))
    if e.display_name_override:
        parts.append(f'shown as "{e.display_name_override}"')
    if e.hidden_from_widgets:
        parts.append("hidden from " + ", ".join(sorted(w.lower() for w in e.hidden_from_widgets)))
    if e.order is not None:
        parts.append(f"position {_num(e.order)}")
    return "; ".join(parts)


def charge_key(c: PackageCharge) -> str:
    """Which price this is (two versions' prices with the same key are the same price, changed or not)."""
    parts = ["overage" if c.is_overage else c.billing_model, c.feature_ref or "", c.billing_period]
    if c.billing_country_code:
        parts.append(c.billing_country_code.upper())
    return " ".join(p for p in parts if p)


def _price(price: Mapping[str, Any] | None) -> str:
    if not price:
        return "0"
    return f"{_num(price.get('amount', 0))} {str(price.get('currency', '')).upper()}"


def charge_line(c: PackageCharge) -> str:
    if c.tiers:
        steps = []
        for tier in c.tiers:
            bound = f"up to {_num(tier['upTo'])}" if tier.get("upTo") is not None else "beyond"
            step = f"{bound} at {_price(tier.get('unitPrice'))}"
            if tier.get("flatPrice"):
                step += f" + {_price(tier['flatPrice'])} flat"
            steps.append(step)
        text = f"{(c.tiers_mode or '').lower()} tiers: " + "; ".join(steps)
    elif c.price_amount is not None:
        text = f"{_num(c.price_amount)} {(c.price_currency or '').upper()}"
    else:
        text = "no price"
    if c.credit_rate_amount is not None:
        credits = f"{_num(c.credit_rate_amount)} {c.credit_rate_currency_ref} credit(s)"
        if c.grants_credits:
            cadence = (c.credit_grant_cadence or "").replace("_", " ").lower()
            paid = f" for {text}" if c.price_amount is not None or c.tiers else ""
            text = f"grants {credits} a unit bought ({cadence}){paid}"
        else:  # a credit rate: each unit of the feature's usage costs credits
            text = f"{credits} a unit of usage"
    if c.block_size is not None:
        text += f" per block of {_num(c.block_size)}"
    if c.min_unit_quantity is not None or c.max_unit_quantity is not None:
        low = c.min_unit_quantity if c.min_unit_quantity is not None else 0
        high = c.max_unit_quantity if c.max_unit_quantity is not None else "any"
        text += f" (quantity {low} to {high})"
    return text


@dataclass(frozen=True)
class Difference:
    key: str
    published: str | None
    draft: str | None

    @property
    def change(self) -> Change:
        if self.published is None:
            return "added"
        if self.draft is None:
            return "removed"
        return "unchanged" if self.published == self.draft else "changed"


def differences(published: Mapping[str, str], draft: Mapping[str, str]) -> list[Difference]:
    """Every key of either side once: the published version's order first, then what the draft adds."""
    keys = list(published) + [k for k in draft if k not in published]
    return [Difference(k, published.get(k), draft.get(k)) for k in keys]


def setting_lines(package: Package) -> dict[str, str]:
    """What a version sets besides its entitlements and prices, one line each: a plan's pricing type,
    trial, base plan and compatible add-ons; an add-on's pricing type, maximum quantity and dependencies."""
    lines = {"pricing": (package.pricing_type or "none").lower()}
    if package.kind == "PLAN":
        trial = package.default_trial_config
        if trial:
            ending = "the subscription ends" if trial.get("trialEndBehavior") == "CANCEL_SUBSCRIPTION" else "paid"
            lines["trial"] = f"{_num(trial['duration'])} {str(trial['units']).lower()}(s), then {ending}"
        else:
            lines["trial"] = "none"
        lines["base plan"] = package.parent_plan_ref or "none"
        lines["compatible add-ons"] = ", ".join(sorted(package.compatible_addon_ids or [])) or "none"
    else:
        lines["maximum quantity"] = str(package.max_quantity) if package.max_quantity else "any"
        lines["needs first"] = ", ".join(sorted(package.dependencies or [])) or "nothing"
    return lines


def entitlement_lines(rows: Iterable[PackageEntitlement]) -> dict[str, str]:
    return {f"{e.ref_id}" + (" (credits)" if e.entitlement_type == "CREDIT" else ""): entitlement_line(e) for e in rows}


def charge_lines(rows: Iterable[PackageCharge]) -> dict[str, str]:
    return {charge_key(c): charge_line(c) for c in rows}


# ---------------------------------------------------------------------------------------------- editor fields


def moved(order: Sequence[str], index: int, offset: int) -> list[str]:
    """`order` with its `index`-th item moved `offset` places (up is negative), stopping at either end:
    what a plan's "move up" / "move down" button sends as the product's whole new plan order."""
    items = list(order)
    item = items.pop(index)
    items.insert(max(0, min(len(items), index + offset)), item)
    return items


def currency_code(text: str) -> str:
    """A currency as people type it in an editor, as the console shows it ("USD", " eur "): the API's
    code, lower case (the API's `Currency` takes "usd" only, and would answer with its 130 codes)."""
    return text.strip().lower()


def tiers_of(text: str, currency: str) -> list[dict[str, Any]]:
    """The tier editor's lines, `UP_TO UNIT_PRICE [FLAT_PRICE]` each, the last one's UP_TO `*` (no end)."""
    tiers: list[dict[str, Any]] = []
    for number, line in enumerate(text.strip().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise InvalidArgument(f"tier line {number}: write 'UP_TO UNIT_PRICE [FLAT_PRICE]' ('*' for no end)")
        try:
            amounts = [Decimal(p) for p in parts[1:]]
            up_to = None if parts[0] == "*" else Decimal(parts[0])
        except InvalidOperation:
            raise InvalidArgument(f"tier line {number}: amounts must be numbers") from None
        money = currency_code(currency)
        tier: dict[str, Any] = {"up_to": up_to, "unit_price": {"amount": amounts[0], "currency": money}}
        if len(amounts) == 2:
            tier["flat_price"] = {"amount": amounts[1], "currency": money}
        tiers.append(tier)
    return tiers


def amounts_off_of(text: str) -> list[dict[str, str]]:
    """The coupon editor's fixed discounts, `AMOUNT CURRENCY` a line (or comma-separated): the API's
    `amountsOff`, amounts kept as written (the coupons service checks them per currency)."""
    found: list[dict[str, str]] = []
    for number, line in enumerate(text.replace(",", "\n").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise InvalidArgument(f"amount off {number}: write 'AMOUNT CURRENCY', e.g. '10 usd'")
        amount, currency = parts
        try:
            Decimal(amount)
        except InvalidOperation:
            amount, currency = currency, amount  # "usd 10" reads the same
        found.append({"amount": amount, "currency": currency.lower()})
    return found


ONE_CHARGE_MODELS = ("FLAT_FEE", "PER_UNIT", "USAGE_BASED", "OVERAGE")


@dataclass(frozen=True)
class ChargeFields:
    """The one-charge editor's fields (all text, as a form sends them)."""

    billing_model: str
    billing_period: str
    currency: str = "usd"
    amount: str = ""
    feature_id: str = ""
    billing_country_code: str = ""
    tiers_mode: str = ""
    tiers: str = ""
    min_unit_quantity: str = ""
    max_unit_quantity: str = ""
    block_size: str = ""


def one_charge_editable(c: PackageCharge) -> bool:
    """Whether the one-charge editor shows all of this charge, so that saving it changes only what was
    typed: not a credit price (a rate, a grant, a top-up), a credit overage or a minimum spend, whose
    fields it has not (saving one would turn it into a charge of another kind)."""
    return (
        ("OVERAGE" if c.is_overage else c.billing_model) in ONE_CHARGE_MODELS
        and c.billing_cadence == "RECURRING"
        and c.credit_rate_amount is None
        and c.credit_grant_cadence is None
        and c.top_up_custom_currency_ref is None
        and c.custom_currency_ref is None
    )


def one_charge(f: ChargeFields) -> tuple[bool, dict[str, Any]]:
    """(is overage, the API's pricing model or overage pricing model) for one charge: one price period."""
    if f.billing_model not in ONE_CHARGE_MODELS:
        raise InvalidArgument(f"billingModel: expected one of {', '.join(ONE_CHARGE_MODELS)}")
    period: dict[str, Any] = {"billing_period": f.billing_period}
    if f.billing_country_code.strip():
        period["billing_country_code"] = f.billing_country_code.strip()
    if f.tiers.strip():
        period["tiers"] = tiers_of(f.tiers, f.currency)
    elif f.amount.strip():
        period["price"] = {"amount": f.amount.strip(), "currency": currency_code(f.currency)}
    if f.block_size.strip():  # the price is of a block of units ("$10 per 1,000 calls")
        period["block_size"] = f.block_size.strip()
    if f.billing_model == "OVERAGE":
        return True, {"feature_id": f.feature_id or None, "price_periods": [period]}
    model: dict[str, Any] = {"billing_model": f.billing_model, "price_periods": [period]}
    for name, value in (
        ("feature_id", f.feature_id),
        ("min_unit_quantity", f.min_unit_quantity),
        ("max_unit_quantity", f.max_unit_quantity),
    ):
        if value.strip():
            model[name] = value.strip()
    if f.tiers_mode and f.tiers.strip():
        model["tiers_mode"] = f.tiers_mode
    return False, model


def tiers_text(tiers: Sequence[Mapping[str, Any]]) -> str:
    """Stored tiers as the tier editor writes them (the inverse of `tiers_of`)."""
    lines = []
    for tier in tiers:
        up_to = _num(tier["upTo"]) if tier.get("upTo") is not None else "*"
        unit = tier.get("unitPrice") or {"amount": 0}
        line = f"{up_to} {_num(unit['amount'])}"
        if tier.get("flatPrice"):
            line += f" {_num(tier['flatPrice']['amount'])}"
        lines.append(line)
    return "\n".join(lines)


def fields_of(c: PackageCharge) -> ChargeFields:
    """A stored charge as the one-charge editor shows it, to change it."""
    currency = c.price_currency
    for tier in c.tiers or ():
        money = tier.get("unitPrice") or tier.get("flatPrice")
        if currency is None and money:
            currency = money.get("currency")
    return ChargeFields(
        billing_model="OVERAGE" if c.is_overage else c.billing_model,
        billing_period=c.billing_period,
        currency=currency or "usd",
        amount=_num(c.price_amount) if c.price_amount is not None else "",
        feature_id=c.feature_ref or "",
        billing_country_code=c.billing_country_code or "",
        tiers_mode=c.tiers_mode or "",
        tiers=tiers_text(c.tiers or []),
        min_unit_quantity=str(c.min_unit_quantity) if c.min_unit_quantity is not None else "",
        max_unit_quantity=str(c.max_unit_quantity) if c.max_unit_quantity is not None else "",
        block_size=_num(c.block_size) if c.block_size is not None else "",
    )


# Blank rows the metadata editor offers for new keys (more after saving: it works without JavaScript).
NEW_METADATA_ROWS = 3


def metadata_of(keys: Sequence[str], values: Sequence[str]) -> dict[str, str]:
    """The metadata editor's key/value rows as the API's `metadata`: blank rows are skipped, an emptied
    key removes its row; a value with no key, or a key twice, is refused (the API's own `Metadata`
    type then checks lengths and characters)."""
    if len(keys) != len(values):
        raise InvalidArgument("metadata: every row has a key and a value")
    found: dict[str, str] = {}
    for number, (key, value) in enumerate(zip(keys, values, strict=True), start=1):
        key, value = key.strip(), value.strip()
        if not key:
            if value:
                raise InvalidArgument(f"metadata row {number}: the value '{value[:40]}' needs a key")
            continue
        if key in found:
            raise InvalidArgument(f"metadata: the key '{key[:40]}' appears twice")
        found[key] = value
    return found
