"""A subscription's formerly refused fields, honoured (issue 13): `billingInformation` (address and tax ids
to the Stripe customer, metadata and tax rates to the Stripe subscription — forwarded sealed, never kept),
`appliedCoupon.promotionCode` / `promotionCode` (a Stripe promotion code applies its Entitle coupon; an
unknown or expired one is a 400) and `awaitPaymentConfirmation: false` (active at once; a later payment
failure follows the documented path: `paymentCollection` FAILED, the status kept). Against the local
Stripe, on SQLite and PostgreSQL.

Who emulates what (tests/support/stripe_emulator.py): customers, tax ids, tax rates, subscriptions with
`default_tax_rates` and coupons are localstripe's; promotion codes and subscription discounts the
stand-in's.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.jobs.models import SUCCEEDED, Job
from entitle.jobs.service import Worker
from tests.billing import test_stripe_webhooks as stripe_webhooks
from tests.billing.conftest import connect_stripe
from tests.billing.test_billing_information import CITY, VAT, assert_nothing_kept, stripe_tax_ids, table_dump
from tests.billing.test_stripe_catalog_sync import link_of, publish_plan
from tests.billing.test_stripe_coupon_sync import coupon_row, create_coupon, discount_coupon
from tests.billing.test_stripe_subscription_sync import (
    connected_with_pro,
    customer_row,
    jobs_of,
    paying_customer,
    provision,
    stripe_customer_of,
    subscription_row,
)
from tests.billing.test_stripe_webhooks import (
    DECLINED_AFTER_3DS,
    authenticate,
    customer_with_card,
    events_of,
    granted,
    setup,
    wait_for_event,
)
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

COST_CENTER = "cc-31337-zq"
webhook_secret = stripe_webhooks.webhook_secret
localstripe_webhooks = stripe_webhooks.localstripe_webhooks


def tax_rate(emulator: StripeEmulator, percentage: str = "19") -> str:
    params: Any = {"display_name": "VAT", "inclusive": False, "percentage": percentage}
    return str(emulator.client().v1.tax_rates.create(params=params).id)


def stripe_subscription(emulator: StripeEmulator, billing_id: str | None) -> dict[str, Any]:
    assert billing_id is not None
    found: dict[str, Any] = emulator.client().v1.subscriptions.retrieve(billing_id).to_dict()
    return found


def rates_of(found: dict[str, Any]) -> list[tuple[str, float]]:
    return [(r["id"], float(r["percentage"])) for r in found.get("default_tax_rates") or []]


@pytest.mark.emulator_only
def test_subscription_billing_information_reaches_stripe_and_is_not_kept(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    paying_customer(api, stripe_emulator)
    vat = tax_rate(stripe_emulator)
    information = {
        "billingAddress": {"line1": "1 Quux Road", "city": CITY, "country": "DE"},
        "taxIds": [{"type": "eu_vat", "value": VAT}],
        "metadata": {"costCenter": COST_CENTER},
        "taxRateIds": [vat],
        "taxPercentage": 7.5,
    }
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY", billingInformation=information)
    assert api.get(f"/api/v1/subscriptions/{ref}").status_code == 200
    assert_nothing_kept(server)
    assert COST_CENTER not in table_dump(server)
    Worker(server.db).drain()
    customer = stripe_customer_of(server, stripe_emulator, "cust-ada").to_dict()
    assert customer["address"]["city"] == CITY
    assert stripe_tax_ids(stripe_emulator, customer["id"]) == [("eu_vat", VAT)]
    found = stripe_subscription(stripe_emulator, subscription_row(server, ref).billing_id)
    assert found["metadata"]["costCenter"] == COST_CENTER
    assert found["metadata"]["entitleSubscriptionId"] == ref
    rates = rates_of(found)
    assert rates[0] == (vat, 19.0) and rates[1][1] == 7.5 and len(rates) == 2
    assert all(job.sealed is None for job in jobs_of(server, "billing.sync_subscription"))
    assert_nothing_kept(server)
    assert COST_CENTER not in table_dump(server)

    # An update replaces the tax rates at Stripe (and again keeps nothing).
    other = tax_rate(stripe_emulator, "5")
    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"billingInformation": {"taxRateIds": [other]}})
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    found = stripe_subscription(stripe_emulator, subscription_row(server, ref).billing_id)
    assert rates_of(found) == [(other, 5.0)]
    (update_job,) = jobs_of(server, "billing.update_subscription")
    assert (update_job.status, update_job.sealed) == (SUCCEEDED, None)


def test_billing_information_nothing_can_take_is_refused(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    assert api.post("/api/v1/customers", json={"id": "cust-ada"}).status_code == 200
    assert api.post("/api/v1/products", json={"id": "acme", "displayName": "Acme"}).status_code == 200
    assert (
        api.post("/api/v1/plans", json={"id": "plan-free", "displayName": "Free", "productId": "acme"}).status_code
        == 200
    )
    publish_plan(api, "plan-free")
    body = {"customerId": "cust-ada", "planId": "plan-free", "billingInformation": {"billingAddress": {"city": CITY}}}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BILLING_INTEGRATION_REQUIRED", resp.text
    assert api.get("/api/v1/subscriptions", params={"customerId": "cust-ada"}).json()["data"] == []

    connect_stripe(api, stripe_emulator)
    # A free subscription has no Stripe subscription for tax rates...
    body["billingInformation"] = {"taxRateIds": ["txr_123"]}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 400, resp.text
    assert "not billed by the provider" in resp.json()["error"]["message"]
    # ...but its customer takes the address: the customer is synced to Stripe for it.
    body["billingInformation"] = {"billingAddress": {"city": CITY, "country": "DE"}}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    assert stripe_customer_of(server, stripe_emulator, "cust-ada").to_dict()["address"]["city"] == CITY
    assert_nothing_kept(server)


def promotion_code(emulator: StripeEmulator, coupon_billing_id: str, code: str, **extra: Any) -> str:
    params: Any = {"promotion": {"type": "coupon", "coupon": coupon_billing_id}, "code": code, **extra}
    return str(emulator.client().v1.promotion_codes.create(params=params).id)


@pytest.mark.emulator_only
def test_a_promotion_code_applies_its_coupon_at_stripe_and_an_unknown_one_is_refused(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    create_coupon(api, "spring-20", percentOff=20)
    Worker(server.db).drain()
    link = link_of(server, "COUPON", coupon_row(server, "spring-20").pk)
    assert link is not None and link.billing_id is not None
    promotion_code(stripe_emulator, link.billing_id, "SPRING")
    promotion_code(stripe_emulator, link.billing_id, "OVER", active=False)
    foreign_coupon: Any = {"id": "foreign-50", "percent_off": 50, "duration": "forever"}
    foreign = stripe_emulator.client().v1.coupons.create(params=foreign_coupon)
    promotion_code(stripe_emulator, foreign.id, "FOREIGN")
    paying_customer(api, stripe_emulator)

    for code, says in (("NOPE", "does not exist"), ("OVER", "expired or inactive"), ("FOREIGN", "not an active")):
        body = {"customerId": "cust-ada", "planId": "plan-pro", "appliedCoupon": {"promotionCode": code}}
        resp = api.post("/api/v1/subscriptions", json=body)
        assert resp.status_code == 400, resp.text
        assert says in resp.json()["error"]["message"]
    assert api.get("/api/v1/subscriptions", params={"customerId": "cust-ada"}).json()["data"] == []

    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY", appliedCoupon={"promotionCode": "SPRING"})
    assert [c["id"] for c in api.get(f"/api/v1/subscriptions/{ref}").json()["data"]["coupons"]] == ["spring-20"]
    Worker(server.db).drain()
    billing_id = subscription_row(server, ref).billing_id
    assert billing_id is not None and discount_coupon(stripe_emulator, billing_id) == link.billing_id

    # The update's `promotionCode`: an unknown one is refused and changes nothing.
    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"promotionCode": "NOPE"})
    assert resp.status_code == 400
    assert subscription_row(server, ref).coupon_ref == "spring-20"


@pytest.mark.emulator_only
def test_await_payment_confirmation_false_activates_at_once_and_a_failure_is_reported_later(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    webhook_secret: str,
    localstripe_webhooks: None,
) -> None:
    setup(server, api, stripe_emulator, webhook_secret)
    customer_with_card(api, stripe_emulator, "cust-waits", DECLINED_AFTER_3DS)
    customer_with_card(api, stripe_emulator, "cust-now", DECLINED_AFTER_3DS)
    waiting = provision(api, "cust-waits", "plan-pro", billingPeriod="MONTHLY")
    assert subscription_row(server, waiting).status == "PAYMENT_PENDING"  # the default waits for the money
    body = {"customerId": "cust-now", "planId": "plan-pro", "id": "sub-now", "awaitPaymentConfirmation": False}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert (data["status"], data["subscription"]["status"]) == ("SUCCESS", "ACTIVE")
    assert granted(server, "cust-now") and not granted(server, "cust-waits")
    with server.db.read() as s:
        settlements = list(s.scalars(select(Job).where(Job.kind == "billing.payment_settlement")))
    assert len(settlements) == 1  # only the waiting one has a settlement window

    Worker(server.db).drain()
    row = subscription_row(server, "sub-now")
    assert row.billing_id is not None and row.status == "ACTIVE"
    assert authenticate(stripe_emulator, row.billing_id) == 402  # the card is declined after 3-D Secure
    wait_for_event(server, "invoice.payment_failed")
    Worker(server.db).drain()
    assert [e.status for e in events_of(server, "invoice.payment_failed")] == ["PROCESSED"]
    row = subscription_row(server, "sub-now")
    assert (row.status, row.payment_collection) == ("ACTIVE", "FAILED")  # the documented failure path
    assert customer_row(server, "cust-now").billing_id is not None

    # An update never waits: true is refused, false is what it does.
    resp = api.patch("/api/v1/subscriptions/sub-now", json={"awaitPaymentConfirmation": True})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "UNSUPPORTED_FIELD"
    assert api.patch("/api/v1/subscriptions/sub-now", json={"awaitPaymentConfirmation": False}).status_code == 200
