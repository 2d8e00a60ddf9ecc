"""test_hostile_writes.py's targets for the Salesforce Flow actions (docs/salesforce.md): each with every field
a Flow may send, on the seeded catalog (plan `basic`, add-on `extra`, feature `calls`, coupon `c10`)."""

from __future__ import annotations

from tests.support.hostile import Make, Target, customer_reads, ok


def upsert_customer(m: Make) -> Target:
    ref = m.customer()
    body = {"name": "N", "email": "a@b.co", "language": "en", "timezone": "UTC", "metadata": {"k": "v"}}
    return Target({"customer_id": ref}, body, customer_reads(ref))


def provision_subscription(m: Make) -> Target:
    customer, ref = m.customer(), m.uid("sf-opp")
    body = {
        "id": ref,
        "customerId": customer,
        "planId": "basic",
        "billingPeriod": "MONTHLY",
        "addons": [{"id": "extra", "quantity": 2}],
        "entitlements": [{"type": "FEATURE", "id": "calls", "usageLimit": 50}],
        "startDate": "2030-01-01T00:00:00Z",
        "metadata": {"salesforceOpportunityId": "0065g00000HostlAAA"},
    }
    return Target({}, body, [f"/api/v1/subscriptions/{ref}", *customer_reads(customer)])


def create_credit_grant(m: Make) -> Target:
    customer, currency = m.customer(), m.uid("cur")
    ok(m.api.post("/api/v1/credits/custom-currencies", json={"id": currency, "displayName": "C"}))
    body = {
        "id": m.uid("sf-line"),
        "customerId": customer,
        "currencyId": currency,
        "amount": 100,
        "displayName": "G",
        "grantType": "PAID",
        "cost": {"amount": 5, "currency": "usd"},
        "metadata": {"salesforceLineItemId": "00k5g00000HostlAAA"},
    }
    reads = [
        f"/api/v1/credits/grants?customerId={customer}",
        f"/api/v1/customers/{customer}/entitlements/check?currencyId={currency}",
    ]
    return Target({}, body, reads)
