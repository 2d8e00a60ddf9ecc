"""Subscription preview: what provisioning would cost now and on every renewal, without changing
anything (one read transaction). The arithmetic is `pricing`'s; this module gathers the prices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from entitle.catalog.coupons import store as coupons
from entitle.catalog.coupons.models import Coupon
from entitle.catalog.packages import published_charges
from entitle.catalog.packages import store as packages
from entitle.catalog.packages.models import ADDON, PLAN, Package, PackageCharge
from entitle.catalog.products.models import Product
from entitle.clock import as_utc, utcnow
from entitle.customers import store as customers
from entitle.db import Database
from entitle.errors import InvalidArgument
from entitle.periods import BillingWindow, billing_period_at
from entitle.subscriptions import ports, price_rules, pricing, rules, store
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.rules import LIVE
from entitle.subscriptions.schemas import (
    AddonQuantity,
    ChargeQuantity,
    DiscountDetails,
    DiscountOut,
    InvoiceLineOut,
    InvoicePreview,
    PeriodRange,
    PreviewOut,
    PriceOverride,
    SubscriptionPreview,
)
from entitle.subscriptions.service import SubscriptionView, billing_window
from entitle.subscriptions.validation import (
    check_addons,
    check_charges,
    check_unit_ranges,
    is_downgrade,
    latest_package,
    periods_priced,
    trial_used,
)


def charges_for_country(charges: Iterable[PackageCharge], country: str | None) -> list[PackageCharge]:
    """The one rule of which price a country pays, for every reader of prices (preview, billing, paywall,
    widgets): the default charges (no country), each replaced by the country's own charge for the same
    (overage or not, model, feature, period) when `country` is given and one exists; a charge of another
    country only is left out. Countries compare without case; the order is the default charges' order."""
    chosen: dict[tuple[bool, str, str | None, str], PackageCharge] = {}
    for charge in charges:
        key = (
            charge.is_overage,
            charge.billing_model,
            charge.feature_ref or (charge.credit_rate_currency_ref if charge.grants_credits else None),
            charge.billing_period,
        )
        local = charge.billing_country_code and country and charge.billing_country_code.lower() == country.lower()
        if charge.billing_country_code and not local:
            continue
        if local or key not in chosen:
            chosen[key] = charge
    return list(chosen.values())


def money_currency(charge: PackageCharge) -> str | None:
    """The currency a charge is paid in; None for a price in credits (a CREDIT_BASED rate of a feature)."""
    if charge.billing_model == "CREDIT_BASED" and not charge.grants_credits:
        return None
    found = _written_currency(charge)
    return found.lower() if found else None


def _written_currency(charge: PackageCharge) -> str | None:
    """The currency written on a charge: its price's, or its first tier's."""
    return charge.price_currency or next(
        ((t.get("unitPrice") or t.get("flatPrice") or {}).get("currency") for t in charge.tiers or []), None
    )


def check_one_currency(
    s: Session, plan: Package, addons: Sequence[tuple[Package, int]], period: str | None, country: str | None
) -> None:
    """A subscription is billed in one currency (a provider's subscription and invoice hold one): the
    prices its plan and add-ons pay for this period in this country (`charges_for_country`) must share
    it. A plan priced in euros for Germany with an add-on priced only in dollars would be summed as one
    amount by a preview and refused by the provider; it is refused here, naming what to price."""
    if period is None:
        return
    first: dict[str, str] = {}  # currency -> the first package paid in it
    for package in [plan, *(addon for addon, _ in addons)]:
        in_period = [c for c in published_charges.charges_of(s, package) if c.billing_period == period]
        for charge in charges_for_country(in_period, country):
            currency = money_currency(charge)
            if currency is not None:
                first.setdefault(currency, f"{package.kind.lower()} '{package.ref_id}'")
    if len(first) > 1:
        where = f"country {country}" if country else "its default prices"
        paid = " and ".join(f"{what} in {currency}" for currency, what in first.items())
        raise InvalidArgument(
            f"a subscription is billed in one currency, but for {where} {paid}; give each of them a "
            f"{period} price in one currency{f' for {country}' if country else ''}"
        )


def customer_country(s: Session, customer_pk: int, asked: str | None, product_pks: Iterable[int] = ()) -> str | None:
    """The country whose prices the customer sees and pays for `product_pks` (`rules.billing_country`)."""
    products = set(product_pks)
    live = store.of_customer(s, customer_pk, LIVE)
    return rules.billing_country([(sub.product_pk in products, sub.billing_country_code) for sub in live], asked)


def prices_of(
    charges: list[PackageCharge], billing_period: str, country: str | None, label: str
) -> list[pricing.Price]:
    """The package's charges for one billing period (`charges_for_country`), overage left out (billed in
    arrears from usage)."""
    in_period = [c for c in charges if not c.is_overage and c.billing_period == billing_period]
    result = []
    for charge in charges_for_country(in_period, country):
        tiers = tuple(
            pricing.Tier(
                up_to=Decimal(str(t["upTo"])) if t.get("upTo") is not None else None,
                unit_price=Decimal(str((t.get("unitPrice") or {}).get("amount", 0))),
                flat_price=Decimal(str((t.get("flatPrice") or {}).get("amount", 0))),
            )
            for t in charge.tiers or []
        )
        currency = _written_currency(charge)
        what = f"{label} ({charge.feature_ref})" if charge.feature_ref else label
        result.append(
            pricing.Price(
                description=what,
                billing_model=charge.billing_model,
                currency=currency or "usd",
                amount=charge.price_amount,
                tiers=tiers,
                tiers_mode=charge.tiers_mode,
                block_size=charge.block_size,
                feature_ref=charge.feature_ref,
                credit_currency_ref=charge.credit_rate_currency_ref if charge.grants_credits else None,
            )
        )
    return result


def plan_prices(
    s: Session, plan: Package, period: str, country: str | None, overrides: Mapping[price_rules.Key, Decimal]
) -> list[pricing.Price]:
    """A plan version's recurring prices for one period and country as a subscription with `overrides`
    (`price_rules.amounts`) pays them."""
    charges = packages.charges_of(s, plan.pk)
    return [price_rules.applied(price, overrides) for price in prices_of(charges, period, country, plan.display_name)]


def held_lines(
    s: Session, sub: Subscription, period: str, country: str | None, quantities: dict[str, Decimal] | None = None
) -> list[pricing.Line]:
    """`price_lines` of what the subscription holds: its plan version and add-ons, its charges' quantities
    (`quantities` when the caller read them already), its seats and its own price overrides, for one
    `period` in `country`."""
    plan = s.get(Package, sub.plan_pk)
    assert plan is not None  # a subscription's plan version is never deleted
    addons = [
        (addon, row.quantity)
        for row in store.addons_of(s, [sub.pk]).get(sub.pk, [])
        if (addon := s.get(Package, row.addon_pk)) is not None and addon.kind == ADDON
    ]
    if quantities is None:
        quantities = {
            pricing.quantity_key(c.charge_type, c.ref_id): c.quantity
            for c in store.charges_of(s, [sub.pk]).get(sub.pk, [])
        }
    units = Decimal(sub.unit_quantity or 1)
    return price_lines(s, plan, addons, period, country, quantities, units, price_rules.amounts(sub.price_overrides))


def price_lines(
    s: Session,
    plan: Package,
    addons: list[tuple[Package, int]],
    period: str,
    country: str | None,
    quantities: dict[str, Decimal],
    units: Decimal = Decimal(1),
    overrides: Mapping[price_rules.Key, Decimal] | None = None,
) -> list[pricing.Line]:
    """The lines one period of a plan and its add-ons costs: what a preview shows and what the console's
    MRR adds up, priced once here. `units`: the quantity of a per-unit charge `quantities` does not name
    (the subscription's `unitQuantity`, as the billing provider is sent it). `overrides`: the
    subscription's own prices (`price_rules.amounts`)."""
    lines: list[pricing.Line] = []
    overrides = overrides or {}
    for price in plan_prices(s, plan, period, country, overrides):
        qty = quantities.get(price.feature_ref or "", units) if price.billing_model == "PER_UNIT" else Decimal(1)
        if price.credit_currency_ref is not None:
            qty = quantities.get(pricing.quantity_key("CREDIT", price.credit_currency_ref), Decimal(1))
        line = pricing.line_for(price, qty)
        if line is not None:
            lines.append(line)
    for addon, quantity in addons:
        for price in prices_of(packages.charges_of(s, addon.pk), period, country, addon.display_name):
            line = pricing.line_for(price_rules.applied(price, overrides, addon.ref_id), Decimal(quantity))
            if line is not None:
                lines.append(line)
    return lines


def checked_overrides(
    s: Session,
    plan: Package,
    addons: list[tuple[Package, int]],
    period: str | None,
    country: str | None,
    overrides: Sequence[PriceOverride] | None,
) -> list[dict[str, Any]] | None:
    """`priceOverrides` of a provisioning, update or preview, checked against the prices the subscription
    has, in the form the subscription keeps them (None: no overrides)."""
    if not overrides:
        return None
    if period is None:
        raise InvalidArgument("priceOverrides: the plan has no recurring price to override")
    plan_charges = packages.charges_of(s, plan.pk)
    addon_charges = {addon.ref_id: packages.charges_of(s, addon.pk) for addon, _ in addons}
    plan_prices = prices_of(plan_charges, period, country, plan.display_name)
    addon_prices = {
        addon.ref_id: prices_of(addon_charges[addon.ref_id], period, country, addon.display_name) for addon, _ in addons
    }
    credit_priced: dict[str, set[str]] = {}
    for charge in [*plan_charges, *(c for charges in addon_charges.values() for c in charges)]:
        if (
            charge.billing_model == "CREDIT_BASED"
            and charge.feature_ref
            and charge.credit_rate_currency_ref
            and not charge.is_overage
            and charge.billing_period == period
        ):
            credit_priced.setdefault(charge.feature_ref, set()).add(charge.credit_rate_currency_ref)
    return price_rules.check(overrides, plan_prices, addon_prices, period, credit_priced)


def _out(inv: pricing.Invoice, window: PeriodRange | None, details: DiscountDetails | None) -> InvoicePreview:
    return InvoicePreview(
        sub_total=inv.sub_total,
        total=inv.total,
        currency=inv.currency,
        tax=Decimal(0),
        discount=inv.discount,
        billing_period_range=window,
        discount_details=details if inv.discount else None,
        discounts=[DiscountOut(amount=inv.discount, currency=inv.currency, description=details.code or "discount")]
        if inv.discount and details
        else [],
        lines=[
            InvoiceLineOut(
                currency=line.currency,
                description=line.description,
                sub_total=pricing.round_money(line.sub_total, line.currency),
                unit_price=line.unit_price,
                quantity=line.quantity,
            )
            for line in inv.lines
        ],
    )


def preview_subscription(db: Database, env_id: int, req: SubscriptionPreview) -> PreviewOut:
    now = utcnow()
    code = req.applied_coupon.promotion_code if req.applied_coupon else None
    information = req.billing_information.wire() if req.billing_information else None
    prefetched: dict[str, Any] = {}
    if code:  # asked of the provider outside the transaction, as provisioning does
        payer_ref = req.paying_customer_id or req.customer_id
        prefetched = ports.billing.impl.prefetch_promotion_code(db, env_id, payer_ref, information, code)
    with db.read() as s:
        s.info.update(prefetched)
        customer = customers.get_live(s, env_id, req.customer_id)
        plan = latest_package(s, env_id, PLAN, req.plan_id)
        charges = packages.charges_of(s, plan.pk)
        priced = periods_priced(charges)
        period = req.billing_period or ("MONTHLY" if "MONTHLY" in priced or not priced else sorted(priced)[0])
        if priced and period not in priced:
            raise InvalidArgument(f"plan '{plan.ref_id}' has no {period} price")
        addons = check_addons(s, env_id, plan, req.addons or [])
        quantities = {b.feature_id: b.quantity for b in req.billable_features or []}
        # What provisioning would refuse is refused here too: a quantity outside its price's range.
        check_unit_ranges(charges, quantities)
        check_charges(charges, req.charges or [])
        quantities |= {pricing.quantity_key(c.type, c.id): c.quantity for c in req.charges or []}
        units = Decimal(req.unit_quantity or 1)
        country = req.billing_country_code
        check_one_currency(s, plan, addons, period, country)
        overrides = price_rules.amounts(checked_overrides(s, plan, addons, period, country, req.price_overrides))
        lines = price_lines(s, plan, addons, period, country, quantities, units, overrides)
        currency = lines[0].currency if lines else "usd"
        percent: Decimal | None = None
        fixed: Decimal | None = None
        details: DiscountDetails | None = None
        coupon_ref = req.applied_coupon.coupon_id if req.applied_coupon else None
        if coupon_ref and code:
            raise InvalidArgument("appliedCoupon: give couponId or promotionCode, not both")
        if code:
            payer = customers.get_live(s, env_id, req.paying_customer_id) if req.paying_customer_id else customer
            coupon_ref = ports.billing.impl.preview_promotion_code(s, env_id, payer, information, code)
        if coupon_ref:
            coupon = coupons.find(s, env_id, coupon_ref)
            if coupon is None or coupon.status != "ACTIVE":
                raise InvalidArgument(f"coupon '{coupon_ref}' does not exist or is archived")
            percent, fixed = _coupon_terms(coupon, currency)
            details = DiscountDetails(code=coupon.ref_id, percentage=percent, fixed_amount=fixed)
        recurring = pricing.invoice(currency, lines, percent_off=percent, amount_off=fixed)

        # As provisioning decides it: the plan's trial only for a newcomer to the product (a free
        # subscription there does not count), unless the request says otherwise.
        override = req.trial_override_configuration
        in_trial = (
            bool(override.is_trial)
            if override is not None
            else bool(plan.default_trial_config) and not trial_used(s, customer, plan.product_pk)
        )
        # A product that allows several subscriptions adds one beside those it has: none is replaced.
        product = s.get(Product, plan.product_pk)
        replaces = product is not None and not product.multiple_subscriptions
        current = next(
            (
                x
                for x in (store.of_customer(s, customer.pk, [st.value for st in LIVE]) if replaces else ())
                if x.product_pk == plan.product_pk and (x.resource_ref or None) == (req.resource_id or None)
            ),
            None,
        )
        downgrade = current is not None and is_downgrade(s, current, plan, period, req.billing_country_code)
        # As provisioning decides it: a downgrade waits for the end of the billing period the current
        # subscription is in, unless IMMEDIATE; one not billing a period now (free, in its trial) has none
        # to wait for and is replaced at once. The change's first period starts when the change does.
        current_window = billing_window(current, now) if current is not None else None
        scheduled = downgrade and req.schedule_strategy != "IMMEDIATE" and current_window is not None
        if scheduled and code:
            raise InvalidArgument(
                "promotion codes are sent to the billing provider and not kept, so they cannot wait for a downgrade "
                "at the end of the period (provisioning refuses it too): preview with scheduleStrategy IMMEDIATE, "
                "or without the code"
            )
        if scheduled and current_window is not None:
            start = current_window.end
        else:
            start = as_utc(req.start_date) if req.start_date else now
        window = billing_period_at(start, period, start) if priced else None
        renewal: PeriodRange | None = None
        if (
            window is not None
            and current is not None
            and not scheduled
            and not in_trial
            and not req.start_date
            and rules.keeps_billing_cycle(
                current.pricing_type, current.billing_period, as_utc(current.billing_cycle_anchor), period, now
            )
        ):
            # As provisioning does it: the new plan keeps the current billing cycle, so the change bills the
            # rest of the current period (the proration below) and the plan's price recurs from its end.
            kept = billing_period_at(current.billing_cycle_anchor, period, now)
            after = billing_period_at(current.billing_cycle_anchor, period, kept.end)
            window = BillingWindow(now, kept.end)
            renewal = PeriodRange(start=after.start, end=after.end)
        period_range = PeriodRange(start=window.start, end=window.end) if window else None
        if scheduled or in_trial:
            # Nothing is due now: a trial (also one replacing a free subscription) bills at its end.
            immediate = pricing.invoice(currency, [])
        elif current is not None and current.billing_period and as_utc(current.billing_cycle_anchor) <= now:
            immediate = _proration(
                s, current, plan, addons, period, country, quantities, units, now, currency, overrides, (percent, fixed)
            )
        else:
            # A new subscription, or one replacing a trial (nothing paid to credit back; its billing
            # cycle starts when the trial ends): the first period in full.
            immediate = recurring
        return PreviewOut(
            immediate_invoice=_out(immediate, period_range, details),
            recurring_invoice=_out(recurring, renewal or period_range, details) if priced else None,
            billing_period_range=period_range,
            has_scheduled_updates=scheduled,
            is_plan_downgrade=downgrade,
        )


def _coupon_terms(coupon: Coupon, currency: str) -> tuple[Decimal | None, Decimal | None]:
    """The coupon's percentage off, and its fixed amount off in `currency` (None: it has none there)."""
    fixed = next((Decimal(str(a["amount"])) for a in coupon.amounts_off or [] if a.get("currency") == currency), None)
    return coupon.percent_off, fixed


def _proration(
    s: Session,
    current: Subscription,
    plan: Package,
    addons: list[tuple[Package, int]],
    period: str,
    country: str | None,
    quantities: dict[str, Decimal],
    units: Decimal,
    now: datetime,
    currency: str,
    overrides: Mapping[price_rules.Key, Decimal],
    coupon: tuple[Decimal | None, Decimal | None],
) -> pricing.Invoice:
    """Changing mid-period: credit the unused share of what is paid, charge the same share of the new price,
    or, when the billing period changes, the whole new price: the new period starts now (the previewed
    period range), as a provider restarts the cycle when the interval changes. Both sides are discounted
    (`pricing.discounted`): the credit by the coupon the subscription has (an archived one no longer applies,
    as on its renewal), the charge by `coupon` (percentage, fixed amount)."""
    window = billing_period_at(current.billing_cycle_anchor, current.billing_period or period, now)
    share = Decimal((window.end - now).total_seconds()) / Decimal((window.end - window.start).total_seconds())
    old_period = current.billing_period or period
    old_lines = held_lines(s, current, old_period, country)
    new_lines = price_lines(s, plan, addons, period, country, quantities, units, overrides)
    had = coupons.find(s, current.environment_id, current.coupon_ref) if current.coupon_ref else None
    old_percent, old_fixed = _coupon_terms(had, currency) if had and had.status == "ACTIVE" else (None, None)
    old_lines = pricing.discounted(old_lines, percent_off=old_percent, amount_off=old_fixed)
    new_lines = pricing.discounted(new_lines, percent_off=coupon[0], amount_off=coupon[1])
    credits = [pricing.scaled(line, -share, f"Unused time on {line.description}") for line in old_lines]
    if old_period != period:  # a month's share of a year's price is no price at all
        charges = new_lines
    else:
        charges = [pricing.scaled(line, share, f"Remaining time on {line.description}") for line in new_lines]
    return pricing.invoice(currency, credits + charges)


def preview_change(
    db: Database,
    env_id: int,
    view: SubscriptionView,
    *,
    addons: list[AddonQuantity] | None = None,
    billing_period: str | None = None,
    schedule_strategy: str | None = None,
) -> PreviewOut:
    """What changing the subscription in place (its add-ons or its billing period, as PATCH does) costs:
    the preview of its own plan with those terms changed and the others as the subscription keeps them,
    which the change leaves as they are: its charges' quantities, units, coupon, country and resource."""
    sub = view.sub
    with db.read() as s:
        charges = [
            ChargeQuantity(id=c.ref_id, quantity=c.quantity, type=c.charge_type)
            for c in store.charges_of(s, [sub.pk]).get(sub.pk, [])
        ]
    own = [AddonQuantity(id=a.addon_ref, quantity=a.quantity) for a in view.addons]
    coupon = view.coupon if view.coupon is not None and view.coupon.get("status") == "ACTIVE" else None
    req = SubscriptionPreview.model_validate(
        {
            "customer_id": view.customer_ref,
            "plan_id": sub.plan_ref,
            "billing_period": billing_period or sub.billing_period,
            "billing_country_code": sub.billing_country_code,
            "unit_quantity": sub.unit_quantity,
            "resource_id": sub.resource_ref,
            "addons": own if addons is None else addons,
            "charges": charges or None,
            "applied_coupon": {"coupon_id": coupon["id"]} if coupon else None,
            "schedule_strategy": schedule_strategy,
        }
    )
    out = preview_subscription(db, env_id, req)
    window = view.billing_window()
    if billing_period is not None or window is None or out.has_scheduled_updates or sub.billing_period is None:
        return out
    # In place the subscription keeps its billing cycle (a provisioning starts a new one now, which is
    # what the preview dates): what is due now covers the rest of its current period, and the recurring
    # invoice the period after it.
    now = out.billing_period_range.start if out.billing_period_range else utcnow()
    after = billing_period_at(sub.billing_cycle_anchor, sub.billing_period, window.end)
    renewal = PeriodRange(start=after.start, end=after.end)
    recurring = out.recurring_invoice
    return out.model_copy(
        update={
            "immediate_invoice": out.immediate_invoice.model_copy(
                update={"billing_period_range": PeriodRange(start=now, end=window.end)}
            ),
            "recurring_invoice": recurring.model_copy(update={"billing_period_range": renewal}) if recurring else None,
            "billing_period_range": PeriodRange(start=window.start, end=window.end),
        }
    )
