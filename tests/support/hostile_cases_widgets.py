"""test_hostile_writes.py's cases for the widgets' routes (issue 15): what a customer's page may write
about its one customer. The module's server key stands in for the page's client key and token (the
route's key check is the same `CustomerKey`; its refusal of other customers is tested in
test_widgets_api.py): here it is the hostile bodies and path ids that are sent."""

from __future__ import annotations

from tests.support.hostile import Make, Target, customer_reads, ok, sub_reads

BASE = "/api/v1/widgets/customers/{customer_id}"


def preview(m: Make) -> Target:
    customer = m.customer()
    body = {
        "planId": "basic",
        "billingPeriod": "MONTHLY",
        "unitQuantity": 1,
        "addons": [{"id": "extra", "quantity": 1}],
    }
    return Target({"customer_id": customer}, body, customer_reads(customer))


def setup_intent(m: Make) -> Target:
    integration = m.integration()
    customer = m.customer()
    # The worker does not run here: whether Stripe answers or not, the write is a clean 4xx/5xx-free answer.
    return Target(
        {"customer_id": customer}, None, customer_reads(customer), expect=-1, cleanup=m.remove_integration(integration)
    )


def payment_method(m: Make) -> Target:
    integration = m.integration()
    customer = m.customer()
    return Target(
        {"customer_id": customer},
        {"paymentMethodId": "pm_card_visa"},
        customer_reads(customer),
        expect=-1,
        cleanup=m.remove_integration(integration),
    )


def portal_session(m: Make) -> Target:
    integration = m.integration()
    customer = m.customer()
    return Target(
        {"customer_id": customer},
        {"returnUrl": "https://app.example.com/account"},
        customer_reads(customer),
        expect=-1,
        cleanup=m.remove_integration(integration),
    )


def subscribe(m: Make) -> Target:
    customer = m.customer()
    body = {"planId": "basic", "billingPeriod": "MONTHLY", "addons": [{"id": "extra", "quantity": 1}]}
    return Target(
        {"customer_id": customer}, body, [f"/api/v1/subscriptions?customerId={customer}", *customer_reads(customer)]
    )


def cancel(m: Make) -> Target:
    customer, ref = m.subscription()
    return Target({"customer_id": customer, "subscription_id": ref}, None, sub_reads(customer, ref))


def scheduled_change(m: Make) -> Target:
    customer, ref = m.subscription("pro")
    change = {"billingPeriod": "ANNUALLY", "scheduleStrategy": "END_OF_BILLING_PERIOD"}
    ok(m.api.patch(f"/api/v1/subscriptions/{ref}", json=change))
    return Target({"customer_id": customer, "subscription_id": ref}, None, sub_reads(customer, ref), expect=-1)
