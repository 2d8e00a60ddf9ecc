"""A promotion code is applied at Stripe as the code itself, not only its coupon (issue 13), so Stripe counts
its redemptions and enforces its restrictions; on SQLite and PostgreSQL, against the emulator.

The stand-in serves promotion codes (localstripe has none): `discounts[][promotion_code]` on subscription
create and update, and a paid Checkout's discount, check `max_redemptions`, a customer restriction and
`restrictions.first_time_transaction` as Stripe does, and count `times_redeemed` (see promotions.py).
What Entitle can see before applying a code (expired, used up, another customer's) is a 400 at request
time; what only Stripe decides when the code is applied (a redemption race, first-time-only) makes the
sync job dead at once with Stripe's message (a permanent error).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from entitle.billing import subscription_sync
from entitle.billing.models import ERROR, SUBSCRIPTION
from entitle.jobs.models import DEAD, SUCCEEDED
from entitle.jobs.service import Worker
from tests.billing.test_billing_information_subscriptions import promotion_code
from tests.billing.test_stripe_catalog_sync import link_of
from tests.billing.test_stripe_checkout import CHECKOUT, new_customer
from tests.billing.test_stripe_coupon_sync import coupon_row, create_coupon
from tests.billing.test_stripe_subscription_sync import (
    connected_with_pro,
    jobs_of,
    paying_customer,
    provision,
    subscription_row,
)
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.emulator_only


def synced_coupon(server: LiveServer, api: httpx.Client, ref: str = "spring-20") -> str:
    create_coupon(api, ref, percentOff=20)
    Worker(server.db).drain()
    link = link_of(server, "COUPON", coupon_row(server, ref).pk)
    assert link is not None and link.billing_id is not None
    return link.billing_id


def redeemed(emulator: StripeEmulator, promo_id: str) -> int:
    return int(emulator.client().v1.promotion_codes.retrieve(promo_id).times_redeemed)


def discount_of(emulator: StripeEmulator, billing_id: str | None) -> tuple[Any, Any]:
    assert billing_id is not None
    found: dict[str, Any] = emulator.client().v1.subscriptions.retrieve(billing_id).to_dict()
    (discount,) = found["discounts"]
    return discount["promotion_code"], discount["coupon"]["id"]


def test_the_code_itself_is_redeemed_at_stripe_and_its_limit_is_stripes(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    assert api.patch("/api/v1/products/acme", json={"multipleSubscriptions": True}).status_code == 200
    coupon = synced_coupon(server, api)
    once = promotion_code(stripe_emulator, coupon, "ONCE", max_redemptions=1)
    paying_customer(api, stripe_emulator)
    paying_customer(api, stripe_emulator, "cust-bob")

    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY", appliedCoupon={"promotionCode": "ONCE"})
    Worker(server.db).drain()
    assert discount_of(stripe_emulator, subscription_row(server, ref).billing_id) == (once, coupon)
    assert redeemed(stripe_emulator, once) == 1
    # Used up: refused while the request waits, nothing written.
    body = {"customerId": "cust-bob", "planId": "plan-pro", "appliedCoupon": {"promotionCode": "ONCE"}}
    resp = api.post("/api/v1/subscriptions", json=body)
    assert resp.status_code == 400 and "maximum number of times" in resp.json()["error"]["message"], resp.text
    assert api.get("/api/v1/subscriptions", params={"customerId": "cust-bob"}).json()["data"] == []

    # Two requests racing for the last redemption both pass the request-time check; Stripe takes one and
    # refuses the other, whose job is dead at once with Stripe's message.
    last = promotion_code(stripe_emulator, coupon, "LAST", max_redemptions=1)
    first = provision(api, "cust-bob", "plan-pro", id="sub-1", appliedCoupon={"promotionCode": "LAST"})
    second = provision(api, "cust-bob", "plan-pro", id="sub-2", appliedCoupon={"promotionCode": "LAST"})
    Worker(server.db).drain()
    assert redeemed(stripe_emulator, last) == 1
    assert discount_of(stripe_emulator, subscription_row(server, first).billing_id) == (last, coupon)
    refused = link_of(server, SUBSCRIPTION, subscription_row(server, second).pk)
    assert refused is not None and refused.sync_state == ERROR
    assert "maximum number of times" in (refused.reason or "")
    statuses = sorted((job.status, job.attempts) for job in jobs_of(server, subscription_sync.SYNC_SUBSCRIPTION_JOB))
    assert statuses.count((DEAD, 1)) == 1

    # First-time-only: Ada has paid an invoice, so Stripe refuses it for her.
    newcomers = promotion_code(stripe_emulator, coupon, "WELCOME", restrictions={"first_time_transaction": True})
    late = provision(api, "cust-ada", "plan-pro", id="sub-3", appliedCoupon={"promotionCode": "WELCOME"})
    Worker(server.db).drain()
    link = link_of(server, SUBSCRIPTION, subscription_row(server, late).pk)
    assert link is not None and link.sync_state == ERROR and "prior transactions" in (link.reason or "")
    assert redeemed(stripe_emulator, newcomers) == 0


def test_a_promotion_code_on_update_and_through_checkout_is_redeemed(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    coupon = synced_coupon(server, api)
    spring = promotion_code(stripe_emulator, coupon, "SPRING")
    paying_customer(api, stripe_emulator)
    ref = provision(api, "cust-ada", "plan-pro", billingPeriod="MONTHLY")
    Worker(server.db).drain()
    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"promotionCode": "SPRING"})
    assert resp.status_code == 200, resp.text
    Worker(server.db).drain()
    (update,) = jobs_of(server, subscription_sync.UPDATE_SUBSCRIPTION_JOB)
    assert update.status == SUCCEEDED
    assert discount_of(stripe_emulator, subscription_row(server, ref).billing_id) == (spring, coupon)
    assert redeemed(stripe_emulator, spring) == 1

    # A code restricted to another Stripe customer is refused at request time.
    other = stripe_emulator.client().v1.customers.create(params={"name": "Grace"})
    promotion_code(stripe_emulator, coupon, "GRACE", customer=other.id)
    resp = api.patch(f"/api/v1/subscriptions/{ref}", json={"promotionCode": "GRACE"})
    assert resp.status_code == 400 and "another customer" in resp.json()["error"]["message"], resp.text

    # Checkout: the session carries the code, and paying it redeems the code on the subscription it makes.
    new_customer(api, "cust-bob")
    body = {
        "customerId": "cust-bob",
        "planId": "plan-pro",
        "checkoutOptions": CHECKOUT,
        "appliedCoupon": {"promotionCode": "SPRING"},
    }
    data = api.post("/api/v1/subscriptions", json=body).json()["data"]
    assert data["status"] == "PAYMENT_REQUIRED"
    session = stripe_emulator.client().v1.checkout.sessions.retrieve(data["checkoutBillingId"])
    assert [d.promotion_code for d in session.discounts] == [spring]
    paid = httpx.post(f"{data['checkoutUrl']}/pay")
    assert paid.status_code in (200, 303), paid.text
    made = stripe_emulator.client().v1.checkout.sessions.retrieve(data["checkoutBillingId"]).subscription
    assert discount_of(stripe_emulator, str(made)) == (spring, coupon)
    assert redeemed(stripe_emulator, spring) == 2
