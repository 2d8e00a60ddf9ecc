"""Every charge kind of the catalog at Stripe: tiered (graduated, volume), per block, usage-based tiered,
overage, minimum spend and credits — the pure mapping (property tests against Entitle's own pricing) and
the sync against the local Stripe, on SQLite and PostgreSQL.

Endpoints and who emulates them (tests/support/stripe_emulator.py): Prices (POST/GET /v1/prices:
`billing_scheme=tiered` with `tiers`/`tiers_mode`, `transform_quantity`, `recurring[usage_type]=metered`
with `recurring[meter]`), Billing Meters and Meter events are the stand-in's; each recurring price with
whole amounts is mirrored as a localstripe Plan (tiers and `transform_quantity` included), and Customers,
Subscriptions and their first Invoice are localstripe's — with the subscription-item amount replaced by
Stripe's documented tier and quantity-transformation rules (the stand-in's boot script), so the invoice
Stripe makes can be compared with Entitle's preview. localstripe subscriptions take one item, so the
invoice comparisons use plans with one billed charge.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.billing import catalog_sync, rules
from entitle.billing.models import NO_SYNC_REQUIRED, PACKAGE, PACKAGE_CHARGE, SUBSCRIPTION, SUCCESS
from entitle.billing.stripe_provider import _price_params
from entitle.billing.usage_models import BillingUsageReport
from entitle.catalog.packages.models import Package, PackageCharge
from entitle.jobs import store as job_store
from entitle.jobs.models import DEAD, Job
from entitle.jobs.service import Worker
from entitle.money import minor_unit_exponent
from entitle.subscriptions import pricing
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_catalog_sync import flat, link_of, publish_plan, version
from tests.billing.test_stripe_subscription_sync import (
    paying_customer,
    provision,
    stripe_subscriptions,
    subscription_row,
)
from tests.billing.test_stripe_usage_sync import env_name, invoice_created, summary
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

# ---------------------------------------------------------------------------------------------- pure mapping


def stripe_bills(params: dict[str, Any], quantity: int) -> Decimal:
    """What Stripe bills (exact minor units, before its rounding) for a quantity on a price created with
    `params`, read the way Stripe reads them: `unit_amount` or `unit_amount_decimal`; `transform_quantity`
    divides and rounds; tiers with `up_to` "inf"; volume = every unit at the quantity's tier + its flat
    amount; graduated = each unit at its own tier + the flat amount of every tier reached."""

    def unit(source: dict[str, Any]) -> Decimal:
        if source.get("unit_amount") is not None:
            return Decimal(int(source["unit_amount"]))
        return Decimal(str(source.get("unit_amount_decimal") or 0))

    q = Decimal(quantity)
    if params.get("billing_scheme") != "tiered":
        transform = params.get("transform_quantity")
        if transform:
            rounding = "ROUND_CEILING" if transform["round"] == "up" else "ROUND_FLOOR"
            q = (q / transform["divide_by"]).to_integral_value(rounding=rounding)
        return q * unit(params)
    tiers = params["tiers"]
    bounds = [None if t["up_to"] == "inf" else Decimal(t["up_to"]) for t in tiers]
    if params["tiers_mode"] == "volume":
        i = next(i for i, b in enumerate(bounds) if b is None or q <= b)
        return q * unit(tiers[i]) + Decimal(tiers[i].get("flat_amount") or 0)
    total, start = Decimal(0), Decimal(0)
    for tier, bound in zip(tiers, bounds, strict=True):
        if q <= start:
            break
        top = q if bound is None else min(q, bound)
        total += (top - start) * unit(tier) + Decimal(tier.get("flat_amount") or 0)
        start = top
    return total


CURRENCIES = st.sampled_from(["usd", "jpy", "eur"])


@st.composite
def charges(draw: st.DrawFn) -> tuple[PackageCharge, pricing.Price]:
    """A per-unit charge (a price, or 1-5 tiers), as the catalog stores it and as the pricing engine sees it."""
    currency = draw(CURRENCIES)
    exp = minor_unit_exponent(currency)
    # Unit prices down to 1/10000 of a minor unit; flat prices in whole minor units (Stripe's rule).
    unit = st.integers(0, 10**6).map(lambda n: Decimal(n).scaleb(-(exp + 4)))
    flat_amount = st.integers(1, 10**5).map(lambda n: Decimal(n).scaleb(-exp))
    block = draw(st.none() | st.integers(1, 60).map(Decimal) | st.sampled_from([Decimal("2.5"), Decimal("0.5")]))
    tiered = draw(st.booleans())
    if not tiered:
        amount = draw(unit)
        charge = PackageCharge(
            billing_model="PER_UNIT", price_amount=amount, price_currency=currency, block_size=block, is_overage=False
        )
        return charge, pricing.Price("seats", "PER_UNIT", currency, amount=amount, block_size=block)
    bounds = sorted(draw(st.sets(st.integers(1, 500), max_size=4)))
    tiers: list[pricing.Tier] = []
    docs: list[dict[str, Any]] = []
    for up_to in [*bounds, None]:
        unit_price = draw(st.none() | unit)
        flat_price = draw(flat_amount) if unit_price is None else draw(st.none() | flat_amount)
        tiers.append(
            pricing.Tier(
                Decimal(up_to) if up_to is not None else None, unit_price or Decimal(0), flat_price or Decimal(0)
            )
        )
        docs.append(
            {
                "upTo": str(up_to) if up_to is not None else None,
                "unitPrice": {"amount": str(unit_price), "currency": currency} if unit_price is not None else None,
                "flatPrice": {"amount": str(flat_price), "currency": currency} if flat_price is not None else None,
            }
        )
    mode = draw(st.sampled_from(["GRADUATED", "VOLUME"]))
    charge = PackageCharge(billing_model="PER_UNIT", tiers=docs, tiers_mode=mode, block_size=block, is_overage=False)
    return charge, pricing.Price("seats", "PER_UNIT", currency, tiers=tuple(tiers), tiers_mode=mode, block_size=block)


def _spec_params(charge: PackageCharge) -> dict[str, Any] | str:
    charge.charge_id, charge.billing_period, charge.billing_cadence = "charge-1", "MONTHLY", "RECURRING"
    package = Package(display_name="Pro")
    spec = catalog_sync._price_spec(package, charge, {"entitleEnvironment": "development"})
    if isinstance(spec, str):
        return spec
    return dict(_price_params(spec, "prod_test"))


@given(charges(), st.integers(1, 3000))
def test_stripe_bills_what_entitles_pricing_computes_for_any_tiers_and_quantity(
    case: tuple[PackageCharge, pricing.Price], quantity: int
) -> None:
    charge, price = case
    params = _spec_params(charge)
    fractional_block = price.block_size is not None and price.block_size != price.block_size.to_integral_value()
    if price.tiers and fractional_block:
        # Tiers on fractional units (2.5 seats) cannot be sent as Stripe's whole quantities: refused, saying so.
        assert isinstance(params, str) and "fractional block size" in params
        return
    assert not isinstance(params, str), params
    shape = rules.charge_shape(charge)
    assert not isinstance(shape, str)
    sent = rules.provider_quantity(shape, Decimal(quantity))
    assert sent == sent.to_integral_value()  # Stripe quantities are whole numbers
    line = pricing.line_for(price, Decimal(quantity))
    assert line is not None
    ours = line.sub_total.scaleb(minor_unit_exponent(price.currency))
    assert stripe_bills(params, int(sent)) == ours
    assert rules.provider_amount(shape, sent) == ours  # the model the usage sync relies on agrees
    if params.get("billing_scheme") == "tiered":
        assert params["tiers"][-1]["up_to"] == "inf" and "transform_quantity" not in params
        assert all("flat_amount_decimal" not in t for t in params["tiers"])


def test_what_stripe_cannot_express_is_refused_with_the_reason() -> None:
    fractional_bound = rules.price_shape(
        amount=None,
        tiers=[(Decimal("10.5"), Decimal(1), None), (None, Decimal(2), None)],
        tiers_mode="GRADUATED",
        block_size=None,
        exponent=2,
    )
    assert isinstance(fractional_bound, str) and "whole numbers" in fractional_bound
    fractional_flat = rules.price_shape(
        amount=None, tiers=[(None, None, Decimal("0.005"))], tiers_mode="VOLUME", block_size=None, exponent=2
    )
    assert isinstance(fractional_flat, str) and "whole number of minor units" in fractional_flat
    too_fine = rules.price_shape(amount=Decimal("1E-15"), tiers=[], tiers_mode=None, block_size=None, exponent=2)
    assert isinstance(too_fine, str) and "12 decimal places" in too_fine


def test_blocks_map_to_stripes_transform_quantity_or_to_whole_blocks() -> None:
    per_block = rules.price_shape(amount=Decimal("0.5"), tiers=[], tiers_mode=None, block_size=Decimal(10), exponent=2)
    assert per_block == rules.PriceShape(unit_amount_minor=Decimal(500), divide_by=10)
    assert rules.provider_quantity(per_block, Decimal(25)) == 25  # Stripe divides and rounds up itself
    assert rules.provider_amount(per_block, Decimal(25)) == 1500
    half = rules.price_shape(amount=Decimal(2), tiers=[], tiers_mode=None, block_size=Decimal("2.5"), exponent=2)
    assert half == rules.PriceShape(unit_amount_minor=Decimal(500), count_blocks_of=Decimal("2.5"))
    assert rules.provider_quantity(half, Decimal(6)) == 3  # three blocks of 2.5 cover 6 units
    tiers = rules.price_shape(
        amount=None,
        tiers=[(Decimal(10), Decimal(5), None), (None, Decimal(4), Decimal(20))],
        tiers_mode="GRADUATED",
        block_size=Decimal(5),
        exponent=2,
    )
    assert not isinstance(tiers, str) and tiers.round_quantity_to == 5 and tiers.divide_by is None
    assert rules.provider_quantity(tiers, Decimal(11)) == 15


windows_values = st.lists(st.integers(0, 5000).map(Decimal), min_size=1, max_size=6)


@given(windows_values, st.integers(0, 3000).map(Decimal))
def test_overage_of_a_running_total_bills_exactly_the_excess_over_all_periods(
    growth: list[Decimal], included: Decimal
) -> None:
    """A window that never resets, measured at the end of consecutive periods: the periods' overages add
    up to the usage past the included amount, whatever the period boundaries."""
    from datetime import UTC, datetime

    forever = datetime(2020, 1, 1, tzinfo=UTC)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    total, previous, billed = Decimal(0), None, Decimal(0)
    for n, step in enumerate(growth):
        total += step
        period_start = start + timedelta(days=30 * n)
        value, window, cumulative = rules.period_overage(
            [(forever, total)], period_start, period_start + timedelta(days=30), previous, included
        )
        assert value >= 0
        billed += value
        previous = (window, cumulative) if window is not None else previous
    assert billed == max(total - included, Decimal(0))


@given(windows_values, st.integers(0, 3000).map(Decimal))
def test_overage_of_windows_that_reset_with_the_period_bills_each_windows_excess(
    usage: list[Decimal], included: Decimal
) -> None:
    from datetime import UTC, datetime

    start = datetime(2026, 1, 1, tzinfo=UTC)
    windows = [(start + timedelta(days=30 * n), v) for n, v in enumerate(usage)]
    previous = None
    for n, v in enumerate(usage):
        period_start = start + timedelta(days=30 * n)
        value, window, cumulative = rules.period_overage(
            windows, period_start, period_start + timedelta(days=30), previous, included
        )
        assert value == max(v - included, Decimal(0))
        assert (
            rules.period_overage(windows, period_start, period_start + timedelta(days=30), previous, Decimal(0))[0]
            == rules.period_usage(windows, period_start, period_start + timedelta(days=30), previous)[0]
        )
        previous = (window, cumulative) if window is not None else previous


# ---------------------------------------------------------------------------------------------- catalog sync


def _setup(api: httpx.Client) -> None:
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    for ref, meter in (("f-seats", "FLUCTUATING"), ("f-storage", "FLUCTUATING"), ("f-calls", "INCREMENTAL")):
        body = {"id": ref, "displayName": ref, "featureType": "NUMBER", "meterType": meter}
        assert api.post("/api/v1/features", json=body).status_code == 200
    body = {"id": "f-tokens", "displayName": "Tokens", "featureType": "NUMBER", "meterType": "INCREMENTAL"}
    assert api.post("/api/v1/features", json=body).status_code == 200


def _plan(api: httpx.Client, ref: str, charges: dict[str, Any]) -> None:
    assert api.post("/api/v1/plans", json={"id": ref, "displayName": ref, "productId": "acme"}).status_code == 200
    resp = api.patch(f"/api/v1/plans/{ref}", json={"charges": {"pricingType": "PAID", **charges}})
    assert resp.status_code == 200, resp.text
    publish_plan(api, ref)


def tiers_of(*rows: tuple[int | None, float | None, float | None]) -> list[dict[str, Any]]:
    return [
        {"upTo": up_to}
        | ({"unitPrice": {"amount": unit, "currency": "usd"}} if unit is not None else {})
        | ({"flatPrice": {"amount": fee, "currency": "usd"}} if fee is not None else {})
        for up_to, unit, fee in rows
    ]


SEATS = {
    "billingModel": "PER_UNIT",
    "featureId": "f-seats",
    "tiersMode": "GRADUATED",
    "pricePeriods": [{"billingPeriod": "MONTHLY", "tiers": tiers_of((10, 5, None), (None, 4, 20))}],
}
STORAGE = {
    "billingModel": "PER_UNIT",
    "featureId": "f-storage",
    "pricePeriods": [flat("MONTHLY", 0.5) | {"blockSize": 10}],
}
CALLS = {
    "billingModel": "USAGE_BASED",
    "featureId": "f-calls",
    "tiersMode": "VOLUME",
    "pricePeriods": [{"billingPeriod": "MONTHLY", "tiers": tiers_of((1000, 0.02, None), (None, 0.01, None))}],
}
TOKENS_OVERAGE = {
    "featureId": "f-tokens",
    "entitlement": {"featureId": "f-tokens", "usageLimit": 1000, "hasSoftLimit": True},
    "pricePeriods": [flat("MONTHLY", 0.001)],
}
CREDITS = {
    "billingModel": "CREDIT_BASED",
    "pricePeriods": [{"billingPeriod": "MONTHLY", "creditRate": {"amount": 1, "currencyId": "credits"}}],
}


def _price(emulator: StripeEmulator, server: LiveServer, charge: PackageCharge) -> Any:
    link = link_of(server, PACKAGE_CHARGE, charge.pk)
    assert link is not None and link.sync_state == SUCCESS and link.billing_id, link and link.reason
    return emulator.client().v1.prices.retrieve(link.billing_id)


def test_every_charge_kind_is_synced_or_says_why_not(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    _setup(api)
    _plan(
        api,
        "plan-kinds",
        {
            "pricingModels": [
                {"billingModel": "FLAT_FEE", "pricePeriods": [flat("MONTHLY", 10)]},
                SEATS,
                STORAGE,
                CALLS,
                CREDITS,
            ],
            "overagePricingModels": [TOKENS_OVERAGE],
            "minimumSpend": [{"billingPeriod": "MONTHLY", "minimum": {"amount": 100, "currency": "usd"}}],
        },
    )
    Worker(server.db).drain()
    package, charges = version(server, "plan-kinds", 1)
    product_link = link_of(server, PACKAGE, package.pk)
    assert product_link is not None and product_link.sync_state == SUCCESS
    by = {(c.billing_model, c.feature_ref, c.is_overage): c for c in charges}

    seats = _price(stripe_emulator, server, by[("PER_UNIT", "f-seats", False)])
    assert (seats.billing_scheme, seats.tiers_mode, seats.recurring.usage_type) == ("tiered", "graduated", "licensed")
    assert [(t["up_to"], t["unit_amount"], t["flat_amount"]) for t in seats["tiers"]] == [
        (10, 500, None),
        (None, 400, 2000),
    ]
    storage = _price(stripe_emulator, server, by[("PER_UNIT", "f-storage", False)])
    assert (storage.billing_scheme, storage.unit_amount) == ("per_unit", 500)  # $0.50 a unit = $5 a block of 10
    assert storage.transform_quantity.to_dict() == {"divide_by": 10, "round": "up"}

    meters = {m.event_name: m.id for m in stripe_emulator.client().v1.billing.meters.list().data}
    env = env_name(server)
    calls = _price(stripe_emulator, server, by[("USAGE_BASED", "f-calls", False)])
    assert (calls.billing_scheme, calls.tiers_mode) == ("tiered", "volume")
    assert (calls.recurring.usage_type, calls.recurring.meter) == (
        "metered",
        meters[rules.meter_event_name(env, "f-calls")],
    )
    assert [(t["up_to"], t["unit_amount"]) for t in calls["tiers"]] == [(1000, 2), (None, 1)]
    overage = _price(stripe_emulator, server, by[("USAGE_BASED", "f-tokens", True)])
    overage_meter = meters[rules.meter_event_name(env, "f-tokens", overage=True)]
    assert (overage.recurring.usage_type, overage.recurring.meter) == ("metered", overage_meter)
    assert overage_meter != meters.get(rules.meter_event_name(env, "f-tokens"))
    assert (overage.unit_amount_decimal, overage.metadata["entitleOverage"]) == (Decimal("0.1"), "true")

    minimum = link_of(server, PACKAGE_CHARGE, by[("MINIMUM_SPEND", None, False)].pk)
    assert minimum is not None and minimum.sync_state == NO_SYNC_REQUIRED
    assert minimum.reason is not None and "minimum spend" in minimum.reason and "shortfall" in minimum.reason
    credits = link_of(server, PACKAGE_CHARGE, by[("CREDIT_BASED", None, False)].pk)
    assert credits is not None and credits.sync_state == NO_SYNC_REQUIRED
    assert credits.reason is not None and "credit" in credits.reason
    with server.db.read() as s:
        assert job_store.dead_count(s) == 0


def _invoice_total(emulator: StripeEmulator, billing_id: str) -> int:
    sub = emulator.client().v1.subscriptions.retrieve(billing_id)
    invoice = emulator.client().v1.invoices.retrieve(str(sub.latest_invoice))
    return int(invoice.total)


@pytest.mark.parametrize(
    ("model", "quantity"),
    [
        (SEATS, 15),  # graduated: 10 x $5 + 5 x $4 + $20
        (SEATS | {"tiersMode": "VOLUME"}, 15),  # volume: 15 x $4 + $20
        (STORAGE | {"featureId": "f-seats"}, 25),  # per block: 3 blocks of 10 at $5
        (SEATS | {"pricePeriods": [SEATS["pricePeriods"][0] | {"blockSize": 4}]}, 11),  # tiers on 12 seats
    ],
    ids=["graduated", "volume", "per-block", "tiers-per-block"],
)
def test_stripes_first_invoice_equals_entitles_preview(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, model: dict[str, Any], quantity: int
) -> None:
    connect_stripe(api, stripe_emulator)
    _setup(api)
    # A minimum spend is not billed by Stripe: the subscription syncs without it (one Stripe item).
    minimum = [{"billingPeriod": "MONTHLY", "minimum": {"amount": 1, "currency": "usd"}}]
    _plan(api, "plan-seats", {"pricingModels": [model], "minimumSpend": minimum})
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    charges = [{"id": "f-seats", "quantity": quantity, "type": "FEATURE"}]
    preview = api.post(
        "/api/v1/subscriptions/preview",
        json={"customerId": "cust-ada", "planId": "plan-seats", "billingPeriod": "MONTHLY", "charges": charges},
    )
    assert preview.status_code == 200, preview.text
    expected = Decimal(str(preview.json()["data"]["recurringInvoice"]["total"]))
    provision(api, "cust-ada", "plan-seats", charges=charges)
    Worker(server.db).drain()

    sub = subscription_row(server, "sub-cust-ada-plan-seats")
    link = link_of(server, SUBSCRIPTION, sub.pk)
    assert link is not None and link.sync_state == SUCCESS, link and link.reason
    assert sub.billing_id is not None and sub.status == "ACTIVE"
    (stripe_sub,) = [s for s in stripe_subscriptions(stripe_emulator) if s.id == sub.billing_id]
    (item,) = stripe_sub["items"].data
    assert item.quantity == (
        12 if "blockSize" in model["pricePeriods"][0] and "tiers" in model["pricePeriods"][0] else quantity
    )
    assert _invoice_total(stripe_emulator, sub.billing_id) == int(expected * 100) > 0


def test_a_subscription_stripe_has_nothing_to_bill_for_is_not_synced_and_active_at_once(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """A paid plan whose only charge is credits: no Stripe subscription could bill anything, so the
    subscription is NO_SYNC_REQUIRED with the reason and active at once — not held for a payment that
    never comes, nor a sync job retried until it is dead."""
    connect_stripe(api, stripe_emulator)
    _setup(api)
    _plan(api, "plan-credits", {"pricingModels": [CREDITS]})
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    provision(api, "cust-ada", "plan-credits")
    Worker(server.db).drain()

    sub = subscription_row(server, "sub-cust-ada-plan-credits")
    link = link_of(server, SUBSCRIPTION, sub.pk)
    assert link is not None and link.sync_state == NO_SYNC_REQUIRED, link and link.reason
    assert link.reason is not None and "nothing the provider bills for MONTHLY" in link.reason
    assert (sub.status, sub.billing_id) == ("ACTIVE", None)
    with server.db.read() as s:
        dead = s.scalars(select(Job).where(Job.status == DEAD)).all()
    assert dead == []


# ---------------------------------------------------------------------------------------------- overage usage


def test_overage_reports_only_the_usage_past_the_included_amount(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    _setup(api)
    # 1000 tokens included, then 2 cents a token (a whole-cent price: localstripe's plans hold integers).
    overage = TOKENS_OVERAGE | {"pricePeriods": [flat("MONTHLY", 0.02)]}
    _plan(api, "plan-metered", {"overagePricingModels": [overage]})
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    provision(api, "cust-ada", "plan-metered")
    Worker(server.db).drain()
    sub = subscription_row(server, "sub-cust-ada-plan-metered")
    link = link_of(server, SUBSCRIPTION, sub.pk)
    assert link is not None and link.sync_state == SUCCESS and sub.billing_id is not None
    (stripe_sub,) = [s for s in stripe_subscriptions(stripe_emulator) if s.id == sub.billing_id]
    (item,) = stripe_sub["items"].data
    assert item.plan.usage_type == "metered"  # billed in arrears: nothing up front
    for value in (700, 550):
        body = {"usages": [{"customerId": "cust-ada", "featureId": "f-tokens", "value": value}]}
        assert api.post("/api/v1/usage", json=body).status_code == 200

    start = sub.start_date
    end = start + timedelta(days=30)
    invoice_created(server, sub.billing_id, start, end)
    Worker(server.db).drain()

    with server.db.read() as s:
        (row,) = s.scalars(select(BillingUsageReport))
        assert (row.feature_ref, row.value, row.state) == ("f-tokens#overage", 250, "SENT")
    meters = {m.event_name: m.id for m in stripe_emulator.client().v1.billing.meters.list().data}
    meter = meters[rules.meter_event_name(env_name(server), "f-tokens", overage=True)]
    customer = str(stripe_sub.customer)
    assert summary(stripe_emulator, meter, customer, start, end) == 250  # 1250 used, 1000 included


def test_an_add_on_raises_the_included_amount_the_overage_starts_from(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    _setup(api)
    body = {"id": "addon-tokens", "displayName": "More tokens", "productId": "acme"}
    assert api.post("/api/v1/addons", json=body).status_code == 200
    grant = {"entitlements": [{"type": "FEATURE", "id": "f-tokens", "usageLimit": 500}]}
    assert api.post("/api/v1/addons/addon-tokens/entitlements", json=grant).status_code == 200
    publish_plan(api, "addon-tokens", path="addons")
    assert (
        api.post("/api/v1/plans", json={"id": "plan-metered", "displayName": "M", "productId": "acme"}).status_code
        == 200
    )
    overage = TOKENS_OVERAGE | {"pricePeriods": [flat("MONTHLY", 0.02)]}
    charges = {"pricingType": "PAID", "overagePricingModels": [overage]}
    resp = api.patch("/api/v1/plans/plan-metered", json={"charges": charges, "compatibleAddonIds": ["addon-tokens"]})
    assert resp.status_code == 200, resp.text
    publish_plan(api, "plan-metered")
    Worker(server.db).drain()
    paying_customer(api, stripe_emulator)
    provision(api, "cust-ada", "plan-metered", addons=[{"id": "addon-tokens", "quantity": 2}])
    Worker(server.db).drain()
    sub = subscription_row(server, "sub-cust-ada-plan-metered")
    assert sub.billing_id is not None
    body = {"usages": [{"customerId": "cust-ada", "featureId": "f-tokens", "value": 2300}]}
    assert api.post("/api/v1/usage", json=body).status_code == 200

    start = sub.start_date
    invoice_created(server, sub.billing_id, start, start + timedelta(days=30))
    Worker(server.db).drain()
    with server.db.read() as s:
        (row,) = s.scalars(select(BillingUsageReport))
        assert (row.value, row.state) == (300, "SENT")  # 1000 in the plan + 2 x 500 from the add-on
