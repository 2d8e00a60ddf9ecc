"""The local Stripe itself, through the official SDK: what localstripe serves, what the stand-in adds.

Each test names who emulates the endpoints it uses: "localstripe" (forwarded by the stand-in) or
"stand-in" (served from its own state). Idempotency keys and failure injection are the stand-in's
for every endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import stripe

from tests.billing.conftest import card_payment_method
from tests.support.stripe_emulator import StripeEmulator, decode_form, fixture_objects


def test_the_sdk_creates_a_customer_and_a_product(stripe_emulator: StripeEmulator) -> None:
    """localstripe: POST/GET /v1/customers, POST/GET /v1/products."""
    client = stripe_emulator.client()
    customer = client.v1.customers.create(params={"email": "ada@example.com", "name": "Ada", "metadata": {"a": "1"}})
    product = client.v1.products.create(params={"name": "Acme Pro Plan", "metadata": {"entitleEntityId": "pro"}})
    assert customer.id.startswith("cus_") and product.id.startswith("prod_")
    assert client.v1.customers.retrieve(customer.id).email == "ada@example.com"
    fetched = client.v1.products.retrieve(product.id)
    assert (fetched.name, fetched.metadata["entitleEntityId"]) == ("Acme Pro Plan", "pro")


@pytest.mark.emulator_only  # fixed keys and whole-account listings: the stand-in's own behaviour
def test_idempotency_keys_replay_the_first_answer(stripe_emulator: StripeEmulator) -> None:
    """localstripe: POST /v1/products; stand-in: idempotency (localstripe has none)."""
    client = stripe_emulator.client()
    first = client.v1.products.create(params={"name": "Once"}, options={"idempotency_key": "k-1"})
    again = client.v1.products.create(params={"name": "Once"}, options={"idempotency_key": "k-1"})
    assert again.id == first.id
    assert [p.id for p in stripe_emulator.products()] == [first.id]
    assert [e.replayed for e in stripe_emulator.standin.writes()] == [False, True]
    with pytest.raises(stripe.IdempotencyError):
        client.v1.products.create(params={"name": "Other"}, options={"idempotency_key": "k-1"})
    # A failure in front of Stripe saves nothing: the same key then goes through once.
    stripe_emulator.fail_next(1, path_prefix="/v1/products")
    with pytest.raises(stripe.APIError):
        client.v1.products.create(params={"name": "Later"}, options={"idempotency_key": "k-2"})
    later = client.v1.products.create(params={"name": "Later"}, options={"idempotency_key": "k-2"})
    # A response lost after execution: the retry with the same key gets the saved object.
    stripe_emulator.fail_next(1, path_prefix="/v1/products", after_execution=True)
    with pytest.raises(stripe.APIError):
        client.v1.products.create(params={"name": "Lost"}, options={"idempotency_key": "k-3"})
    lost = client.v1.products.create(params={"name": "Lost"}, options={"idempotency_key": "k-3"})
    assert sorted(p.id for p in stripe_emulator.products()) == sorted([first.id, later.id, lost.id])


def test_prices_are_served_by_the_stand_in_and_mirrored_as_localstripe_plans(stripe_emulator: StripeEmulator) -> None:
    """stand-in: /v1/prices (create, retrieve, update, list); localstripe: /v1/products, /v1/plans (the
    mirror), /v1/customers, /v1/subscriptions and the invoice it makes on the price."""
    client = stripe_emulator.client()
    product = client.v1.products.create(params={"name": "Acme Pro Plan"})
    monthly = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 2999,
            "recurring": {"interval": "month"},
            "metadata": {"entitleChargeId": "c1"},
        }
    )
    assert (monthly.unit_amount, monthly.unit_amount_decimal, monthly.type) == (2999, Decimal(2999), "recurring")
    assert monthly.recurring is not None and monthly.recurring.interval == "month"
    fractional = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount_decimal": "0.5"}  # type: ignore[typeddict-item]
    )
    assert (fractional.unit_amount, str(fractional.unit_amount_decimal), fractional.type) == (None, "0.5", "one_time")
    plan = client.v1.plans.retrieve(monthly.id)  # the same id, at localstripe
    assert (plan.amount, plan.interval) == (2999, "month")
    method = card_payment_method(stripe_emulator)  # no raw card number: real Stripe takes none from a server
    customer = client.v1.customers.create(
        params={
            "email": "ada@example.com",
            "payment_method": method,
            "invoice_settings": {"default_payment_method": method},
        }
    )
    subscription = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": monthly.id}]})
    assert subscription.status == "active" and subscription["items"].data[0].plan.id == monthly.id
    invoice = client.v1.invoices.retrieve(str(subscription.latest_invoice))
    assert (invoice.amount_due, invoice.status) == (2999, "paid")
    archived = client.v1.prices.update(monthly.id, params={"active": False, "metadata": {"entitleChargeId": ""}})
    assert archived.active is False and "entitleChargeId" not in archived.metadata
    active = client.v1.prices.list(params={"product": product.id, "active": True}).data
    assert [p.id for p in active] == [fractional.id]
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.prices.create(params={"product": "prod_nope", "currency": "usd", "unit_amount": 1})
    assert missing.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.create(params={"product": product.id, "currency": "usd"})


def test_checkout_portal_and_meters_are_served_by_the_stand_in(stripe_emulator: StripeEmulator) -> None:
    """stand-in: /v1/checkout/sessions, /v1/billing_portal/sessions, /v1/billing/meters,
    /v1/billing/meter_events, event summaries; localstripe: /v1/customers, /v1/products."""
    client = stripe_emulator.client()
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    product = client.v1.products.create(params={"name": "Acme Pro Plan"})
    price = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 1000, "recurring": {"interval": "month"}}
    )
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "success_url": "https://example.com/ok",
            "line_items": [{"price": price.id, "quantity": 3}],
        }
    )
    assert (session.status, session.amount_total, session.currency) == ("open", 3000, "usd")
    assert session.url is not None and session.url.startswith(stripe_emulator.api_base)
    assert client.v1.checkout.sessions.expire(session.id).status == "expired"
    portal = client.v1.billing_portal.sessions.create(params={"customer": customer.id, "return_url": "https://x/r"})
    assert portal.customer == customer.id and portal.url.startswith(stripe_emulator.api_base)
    meter = client.v1.billing.meters.create(
        params={"display_name": "API calls", "event_name": "api_call", "default_aggregation": {"formula": "sum"}}
    )
    for value in ("5", "7"):
        client.v1.billing.meter_events.create(
            params={"event_name": "api_call", "payload": {"stripe_customer_id": customer.id, "value": value}}
        )
    summaries = client.v1.billing.meters.event_summaries.list(
        meter.id, params={"customer": customer.id, "start_time": 0, "end_time": 2**31}
    )
    assert [s.aggregated_value for s in summaries.data] == [12]
    assert client.v1.billing.meters.deactivate(meter.id).status == "inactive"


def test_stand_in_objects_have_the_fields_of_stripes_published_examples(stripe_emulator: StripeEmulator) -> None:
    """stand-in objects against shared/stripe/fixtures3.json (Stripe's OpenAPI example objects)."""
    fixtures = fixture_objects()
    if fixtures is None:
        pytest.skip("shared/stripe/fixtures3.json is not beside the repository")
    client = stripe_emulator.client()
    customer = client.v1.customers.create(params={})
    product = client.v1.products.create(params={"name": "P"})
    price = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 100, "recurring": {"interval": "year"}}
    )
    meter = client.v1.billing.meters.create(
        params={"display_name": "m", "event_name": "m", "default_aggregation": {"formula": "count"}}
    )
    ours: dict[str, Any] = {
        "price": price,
        "checkout.session": client.v1.checkout.sessions.create(
            params={"mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}]}
        ),
        "billing_portal.session": client.v1.billing_portal.sessions.create(params={"customer": customer.id}),
        "billing.meter": meter,
        "billing.meter_event": client.v1.billing.meter_events.create(
            params={"event_name": "m", "payload": {"stripe_customer_id": customer.id}}
        ),
        "billing.meter_event_summary": client.v1.billing.meters.event_summaries.list(
            meter.id, params={"customer": customer.id, "start_time": 0, "end_time": 2**31}
        ).data[0],
    }
    for name, obj in ours.items():
        assert set(obj.to_dict()) == set(fixtures[name]), name
        assert obj.object == fixtures[name]["object"]


def test_decode_form_builds_nested_parameters() -> None:
    assert decode_form("a=1&m%5Bk%5D=v&items%5B0%5D%5Bprice%5D=p&items%5B1%5D%5Bprice%5D=q&e=") == {
        "a": "1",
        "m": {"k": "v"},
        "items": [{"price": "p"}, {"price": "q"}],
        "e": "",
    }


@pytest.mark.emulator_only
def test_item_updates_are_prorated_by_time_as_stripe_prorates_them(stripe_emulator: StripeEmulator) -> None:
    """localstripe (boot patch) on the stand-in's clock: each changed item's old amount credited for the
    unused fraction of the period, its new amount charged for the rest, each line in whole cents (half away
    from zero); `always_invoice` charges them now, `create_prorations` leaves them for the next invoice, and
    `pending_if_incomplete` keeps the old items until the declined invoice is paid."""
    jan_15, jan_25, feb_15 = (datetime(2026, month, day, 12, tzinfo=UTC) for month, day in ((1, 15), (1, 25), (2, 15)))
    stripe_emulator.standin.clock = jan_15.timestamp
    client = stripe_emulator.client()
    product = client.v1.products.create(params={"name": "Acme"})

    def monthly(amount: int) -> str:
        params: Any = {
            "product": product.id,
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": "month"},
        }
        return str(client.v1.prices.create(params=params).id)

    basic, pro, seat = monthly(1000), monthly(3000), monthly(333)
    method = card_payment_method(stripe_emulator)
    customer = client.v1.customers.create(
        params={"payment_method": method, "invoice_settings": {"default_payment_method": method}}
    ).id
    created: Any = {"customer": customer, "items": [{"price": basic}, {"price": seat, "quantity": 3}]}
    sub = client.v1.subscriptions.create(params=created)
    assert (sub.current_period_start, sub.current_period_end) == (int(jan_15.timestamp()), int(feb_15.timestamp()))
    plan_item, seat_item = (item.id for item in sub["items"].data)
    at = int(jan_25.timestamp())  # 21 of the period's 31 days are left

    def update(items: list[dict[str, Any]], behavior: str, **extra: Any) -> Any:
        params: Any = {"items": items, "proration_behavior": behavior, "proration_date": at, **extra}
        return client.v1.subscriptions.update(sub.id, params=params).to_dict()

    def lines_of(invoice_id: str) -> list[int]:
        return sorted(line.amount for line in client.v1.invoices.retrieve(invoice_id).lines.data)

    changed = update([{"id": plan_item, "price": pro}, {"id": seat_item, "quantity": 1}], "always_invoice")
    # 1000 x 21/31 = 677.42, 3000 x 21/31 = 2032.26, 999 x 21/31 = 676.74, 333 x 21/31 = 225.58
    assert lines_of(changed["latest_invoice"]) == [-677, -677, 226, 2032]
    invoice = client.v1.invoices.retrieve(changed["latest_invoice"])
    assert (invoice.total, invoice.status, invoice.billing_reason) == (904, "paid", "subscription_update")
    assert [(i["plan"]["id"], i["quantity"]) for i in changed["items"]["data"]] == [(pro, 1), (seat, 1)]

    # Declined: the items stay, the change waits for its invoice; paid later, it is applied.
    declining_card: Any = {"number": "4000000000000341", "exp_month": 12, "exp_year": 2040, "cvc": "123"}
    declining = client.v1.payment_methods.create(params={"type": "card", "card": declining_card}).id
    client.v1.payment_methods.attach(declining, params={"customer": customer})
    client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": declining}})
    waiting = update([{"id": seat_item, "quantity": 5}], "always_invoice", payment_behavior="pending_if_incomplete")
    assert waiting["pending_update"] is not None
    assert [(i["plan"]["id"], i["quantity"]) for i in waiting["items"]["data"]] == [(pro, 1), (seat, 1)]
    open_invoice = client.v1.invoices.retrieve(waiting["latest_invoice"])
    assert (open_invoice.status, open_invoice.total) == ("open", 1128 - 226)  # 1665 x 21/31 = 1127.9
    client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": method}})
    assert client.v1.invoices.pay(open_invoice.id).status == "paid"
    applied = client.v1.subscriptions.retrieve(sub.id).to_dict()
    assert applied["pending_update"] is None
    assert [(i["plan"]["id"], i["quantity"]) for i in applied["items"]["data"]] == [(pro, 1), (seat, 5)]

    # create_prorations: nothing invoiced now, the two lines wait for the next invoice.
    later = update([{"id": seat_item, "quantity": 6}], "create_prorations")
    assert later["latest_invoice"] == open_invoice.id
    pending = client.v1.invoice_items.list(params={"customer": customer}).data
    assert sorted(item.amount for item in pending) == [-1128, 1353]  # 1998 x 21/31 = 1353.48
