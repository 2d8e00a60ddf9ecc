"""`POST /api/v1/subscriptions/preview` honours `appliedCoupon.promotionCode` (issue 15: the checkout's live
summary): the code is looked up at Stripe as provisioning looks it up and previewed as the Entitle coupon
it applies, exactly as that coupon's id previews; an unknown, inactive or foreign code is a 400 with a
stable code (PROMOTION_CODE_INVALID) and nothing is written. The widgets' preview takes it too. Against
the local Stripe, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from entitle.jobs.service import Worker
from tests.billing.test_billing_information_subscriptions import promotion_code
from tests.billing.test_stripe_catalog_sync import link_of
from tests.billing.test_stripe_coupon_sync import coupon_row, create_coupon
from tests.billing.test_stripe_subscription_sync import connected_with_pro, paying_customer
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator
from tests.support.tokens import browser


def preview(api: httpx.Client, **coupon: Any) -> httpx.Response:
    body = {"customerId": "cust-ada", "planId": "plan-pro", "billingPeriod": "MONTHLY", "appliedCoupon": coupon}
    return api.post("/api/v1/subscriptions/preview", json=body)


def invoices(answer: httpx.Response) -> list[dict[str, Any]]:
    """The preview's invoices, without their period (which starts at the request's instant)."""
    data = answer.json()["data"]
    return [
        {k: v for k, v in invoice.items() if k != "billingPeriodRange"}
        for invoice in (data["immediateInvoice"], data["recurringInvoice"])
    ]


@pytest.mark.emulator_only
def test_a_promotion_code_previews_as_its_coupon_and_a_bad_one_is_refused(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    create_coupon(api, "spring-20", percentOff=20)
    Worker(server.db).drain()
    link = link_of(server, "COUPON", coupon_row(server, "spring-20").pk)
    assert link is not None and link.billing_id is not None
    promotion_code(stripe_emulator, link.billing_id, "SPRING")
    promotion_code(stripe_emulator, link.billing_id, "OVER", active=False)
    foreign: Any = {"id": "foreign-50", "percent_off": 50, "duration": "forever"}
    promotion_code(stripe_emulator, stripe_emulator.client().v1.coupons.create(params=foreign).id, "FOREIGN")
    paying_customer(api, stripe_emulator)

    by_code = preview(api, promotionCode="SPRING")
    assert by_code.status_code == 200, by_code.text
    now = by_code.json()["data"]["immediateInvoice"]
    assert (now["subTotal"], now["discount"], now["total"]) == (29.99, 6.0, 23.99)
    assert now["discountDetails"]["code"] == "spring-20"
    assert now["discounts"] == [{"amount": 6.0, "currency": "usd", "description": "spring-20"}]
    by_id = preview(api, couponId="spring-20")
    assert invoices(by_code) == invoices(by_id)  # exactly what its coupon previews

    for code, says in (("NOPE", "does not exist"), ("OVER", "expired or inactive"), ("FOREIGN", "not an active")):
        refused = preview(api, promotionCode=code)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "PROMOTION_CODE_INVALID"
        assert says in refused.json()["error"]["message"]
    both = preview(api, promotionCode="SPRING", couponId="spring-20")
    assert both.status_code == 400 and both.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert api.get("/api/v1/subscriptions", params={"customerId": "cust-ada"}).json()["data"] == []

    # The widgets' preview (a customer's page) takes the code as the checkout's promotion code field.
    with browser(server, "cust-ada") as page:
        widget = page.post(
            "/api/v1/widgets/customers/cust-ada/preview", json={"planId": "plan-pro", "promotionCode": "SPRING"}
        )
        assert widget.status_code == 200, widget.text
        assert widget.json()["data"]["immediateInvoice"]["total"] == 23.99
        bad = page.post("/api/v1/widgets/customers/cust-ada/preview", json={"planId": "plan-pro", "promotionCode": "X"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "PROMOTION_CODE_INVALID"

    # A code cannot wait for a downgrade at the period's end: the preview refuses it as provisioning does.
    made = api.post(
        "/api/v1/subscriptions",
        json={
            "customerId": "cust-ada",
            "planId": "plan-pro",
            "billingPeriod": "MONTHLY",
            "paymentCollectionMethod": "INVOICE",
        },
    )
    assert made.status_code == 200, made.text
    sub_id = made.json()["data"]["subscription"]["id"]
    Worker(server.db).drain()
    paid = api.post(f"/api/v1/subscriptions/{sub_id}/invoice/paid")
    assert paid.status_code == 200, paid.text
    Worker(server.db).drain()
    assert api.get(f"/api/v1/subscriptions/{sub_id}").json()["data"]["status"] == "ACTIVE"
    body = {"customerId": "cust-ada", "planId": "plan-pro", "billingPeriod": "ANNUALLY"}
    waiting = {**body, "appliedCoupon": {"promotionCode": "SPRING"}}
    for path in ("/api/v1/subscriptions/preview", "/api/v1/subscriptions"):
        refused = api.post(path, json=waiting)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_ARGUMENT", refused.text
        assert "scheduleStrategy IMMEDIATE" in refused.json()["error"]["message"]
    later = api.post("/api/v1/subscriptions/preview", json=body).json()["data"]
    assert later["hasScheduledUpdates"] and later["isPlanDowngrade"]
    now = api.post("/api/v1/subscriptions/preview", json={**waiting, "scheduleStrategy": "IMMEDIATE"})
    assert now.status_code == 200, now.text
    assert not now.json()["data"]["hasScheduledUpdates"] and now.json()["data"]["recurringInvoice"]["discount"] > 0
