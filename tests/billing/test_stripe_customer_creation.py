"""What POST /api/v1/customers (and PATCH) asks Stripe, and when (issue 13), on SQLite and PostgreSQL,
against the emulator.

- A payment method given with the customer (`defaultPaymentMethod.billingId`, `passthrough.stripe.paymentMethodId`)
  is read at Stripe as one attached later is: its card details become `defaultPaymentMethod`; an unknown
  one is a 400, another Stripe customer's a 400, Stripe not answering a 503 — each writes nothing.
- A promotion code in `subscriptionParams` is looked up before the customer's transaction opens, as on
  POST /api/v1/subscriptions, so no lock is held while Stripe answers.

"Before the transaction" is observed, not timed: the server runs in this process, so the test wraps the
server's `Database.transaction` with a depth counter and the Stripe calls with a probe reading it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from entitle.billing.stripe_provider import StripeProvider
from entitle.customers.models import Customer
from entitle.jobs.models import Job
from entitle.jobs.service import Worker
from tests.billing.conftest import card_payment_method, connect_stripe
from tests.billing.test_billing_information_subscriptions import promotion_code
from tests.billing.test_stripe_catalog_sync import link_of
from tests.billing.test_stripe_coupon_sync import coupon_row, create_coupon
from tests.billing.test_stripe_subscription_sync import (
    connected_with_pro,
    paying_customer,
    provision,
    stripe_customer_of,
)
from tests.conftest import LiveServer
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.emulator_only

CARD = {"cardBrand": "visa", "cardLast4Digits": "4242", "cardExpiryMonth": 12, "cardExpiryYear": 2040}


@pytest.fixture
def open_transactions(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """For each Stripe read a request waits for (payment method, promotion code), how many write
    transactions of the server were open while Stripe was asked."""
    # Per thread: the server's own background threads (its worker, the push hub) open transactions of
    # their own at any moment; what matters is whether the thread asking Stripe holds one.
    depth: dict[int, int] = defaultdict(int)
    seen: list[int] = []
    opened = server.db.transaction

    @contextmanager
    def counted() -> Iterator[Session]:
        depth[threading.get_ident()] += 1
        try:
            with opened() as s:
                yield s
        finally:
            depth[threading.get_ident()] -= 1

    def probe(name: str) -> None:
        original = getattr(StripeProvider, name)

        def wrapped(self: StripeProvider, *args: Any, **kwargs: Any) -> Any:
            seen.append(depth[threading.get_ident()])
            return original(self, *args, **kwargs)

        monkeypatch.setattr(StripeProvider, name, wrapped)

    monkeypatch.setattr(server.db, "transaction", counted)
    probe("payment_method")
    probe("find_promotion_code")
    return seen


def customers_and_jobs(server: LiveServer) -> tuple[int, int]:
    with server.db.read() as s:
        return (
            int(s.scalar(select(func.count()).select_from(Customer)) or 0),
            int(s.scalar(select(func.count()).select_from(Job)) or 0),
        )


def shown_card(data: dict[str, Any]) -> dict[str, Any]:
    method = data["defaultPaymentMethod"] or {}
    return {k: method.get(k) for k in CARD}


def test_a_card_given_at_creation_is_read_at_stripe_like_an_attached_one(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, open_transactions: list[int]
) -> None:
    connect_stripe(api, stripe_emulator)
    before = customers_and_jobs(server)

    missing = api.post("/api/v1/customers", json={"id": "cust-x", "defaultPaymentMethod": {"billingId": "pm_nope1"}})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "PAYMENT_METHOD_NOT_FOUND"
    passthrough = {"stripe": {"paymentMethodId": "pm_nope2"}}
    missing = api.post("/api/v1/customers", json={"id": "cust-x", "passthrough": passthrough})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "PAYMENT_METHOD_NOT_FOUND"
    other = stripe_emulator.client().v1.customers.create(params={"name": "Grace"})
    taken = card_payment_method(stripe_emulator)
    stripe_emulator.client().v1.payment_methods.attach(taken, params={"customer": other.id})
    in_use = api.post("/api/v1/customers", json={"id": "cust-x", "defaultPaymentMethod": {"billingId": taken}})
    assert in_use.status_code == 400 and in_use.json()["error"]["code"] == "PAYMENT_METHOD_IN_USE"
    method = card_payment_method(stripe_emulator)
    stripe_emulator.fail_next(1, path_prefix="/v1/payment_methods", method="GET", status=503)
    down = api.post("/api/v1/customers", json={"id": "cust-x", "defaultPaymentMethod": {"billingId": method}})
    assert down.status_code == 503 and down.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert customers_and_jobs(server) == before  # nothing written by any of them

    # The contract's defaultPaymentMethod: Stripe's card details, whatever the caller claimed.
    claimed = {"billingId": method, "type": "CARD", "cardLast4Digits": "0000"}
    made = api.post("/api/v1/customers", json={"id": "cust-ada", "defaultPaymentMethod": claimed})
    assert made.status_code == 200, made.text
    assert shown_card(made.json()["data"]) == CARD
    assert shown_card(api.get("/api/v1/customers/cust-ada").json()["data"]) == CARD

    # `passthrough.stripe.paymentMethodId`, with a subscription in the same request (the journey), and on PATCH.
    second = card_payment_method(stripe_emulator)
    body = {"id": "cust-bob", "passthrough": {"stripe": {"paymentMethodId": second}}}
    made = api.post("/api/v1/customers", json=body)
    assert made.status_code == 200, made.text
    assert shown_card(made.json()["data"]) == CARD and made.json()["data"]["passthrough"] is None
    third = card_payment_method(stripe_emulator)
    patched = api.patch("/api/v1/customers/cust-ada", json={"passthrough": {"stripe": {"paymentMethodId": third}}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["defaultPaymentMethod"]["billingId"] == third
    assert shown_card(patched.json()["data"]) == CARD
    refused = api.patch("/api/v1/customers/cust-ada", json={"passthrough": {"stripe": {"paymentMethodId": "pm_no"}}})
    assert refused.status_code == 400
    assert api.get("/api/v1/customers/cust-ada").json()["data"]["defaultPaymentMethod"]["billingId"] == third

    assert open_transactions and set(open_transactions) == {0}  # Stripe was never asked inside a transaction


def test_a_card_given_with_no_integration_is_kept_as_given(server: LiveServer, api: httpx.Client) -> None:
    given = {"billingId": "pm_elsewhere", "type": "CARD", "cardLast4Digits": "1881"}
    made = api.post("/api/v1/customers", json={"id": "cust-ada", "defaultPaymentMethod": given})
    assert made.status_code == 200, made.text
    assert made.json()["data"]["defaultPaymentMethod"]["cardLast4Digits"] == "1881"


def test_a_promotion_code_in_subscription_params_is_looked_up_before_the_transaction(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, open_transactions: list[int]
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    create_coupon(api, "spring-20", percentOff=20)
    Worker(server.db).drain()
    link = link_of(server, "COUPON", coupon_row(server, "spring-20").pk)
    assert link is not None and link.billing_id is not None
    promotion_code(stripe_emulator, link.billing_id, "SPRING")
    method = card_payment_method(stripe_emulator)
    params = {"planId": "plan-pro", "billingPeriod": "MONTHLY", "appliedCoupon": {"promotionCode": "SPRING"}}
    body = {"id": "cust-ada", "defaultPaymentMethod": {"billingId": method}, "subscriptionParams": params}

    plain = api.post("/api/v1/customers", json={**body, "subscriptionParams": {**params, "appliedCoupon": {}}})
    assert plain.status_code == 200, plain.text  # no code: nothing to ask about it
    assert api.post("/api/v1/customers/cust-ada/archive").status_code == 200
    body["id"] = "cust-bob"
    nope = {**params, "appliedCoupon": {"promotionCode": "NOPE"}}
    refused = api.post("/api/v1/customers", json={**body, "subscriptionParams": nope})
    assert refused.status_code == 400 and "does not exist" in refused.json()["error"]["message"]
    assert api.get("/api/v1/customers/cust-bob").status_code == 404  # no customer left behind

    made = api.post("/api/v1/customers", json=body)
    assert made.status_code == 200, made.text
    (sub,) = api.get("/api/v1/subscriptions", params={"customerId": "cust-bob"}).json()["data"]
    assert [c["id"] for c in sub["coupons"]] == ["spring-20"]
    assert open_transactions.count(0) == len(open_transactions) >= 4  # cards and codes, all outside


def test_a_synced_customers_name_email_and_language_reach_stripe_when_they_change(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connected_with_pro(server, api, stripe_emulator)
    paying_customer(api, stripe_emulator, "cust-ada")
    provision(api, "cust-ada", "plan-pro")
    Worker(server.db).drain()
    assert stripe_customer_of(server, stripe_emulator, "cust-ada").name == "Ada"
    never_synced = api.post("/api/v1/customers", json={"id": "cust-new", "name": "New"})
    assert never_synced.status_code == 200, never_synced.text

    jobs = customers_and_jobs(server)[1]
    assert api.patch("/api/v1/customers/cust-new", json={"name": "Newer"}).status_code == 200
    assert api.patch("/api/v1/customers/cust-ada", json={"metadata": {"tier": "gold"}}).status_code == 200
    assert api.patch("/api/v1/customers/cust-ada", json={"name": "Ada"}).status_code == 200  # unchanged
    assert customers_and_jobs(server)[1] == jobs  # nothing for Stripe: not there, or no contact field changed

    changed = {"name": "Ada Lovelace", "email": "ada@lovelace.test", "language": "fr-FR"}
    assert api.patch("/api/v1/customers/cust-ada", json=changed).status_code == 200
    Worker(server.db).drain()
    at_stripe = stripe_customer_of(server, stripe_emulator, "cust-ada")
    assert (at_stripe.name, at_stripe.email, at_stripe.preferred_locales) == (
        "Ada Lovelace",
        "ada@lovelace.test",
        ["fr"],
    )

    # With billing information in the same update, its one customer sync carries the new name too.
    jobs = customers_and_jobs(server)[1]
    address = {"line1": "12 Analytical Row", "city": "London", "country": "GB"}
    both = {"name": "Countess Ada", "passthrough": {"stripe": {"billingAddress": address}}}
    assert api.patch("/api/v1/customers/cust-ada", json=both).status_code == 200
    assert customers_and_jobs(server)[1] == jobs + 1
    Worker(server.db).drain()
    at_stripe = stripe_customer_of(server, stripe_emulator, "cust-ada")
    assert (at_stripe.name, at_stripe.address["city"]) == ("Countess Ada", "London")

    # A language Stripe does not write in is kept (the contract returns it) and not sent: Stripe keeps French.
    assert api.patch("/api/v1/customers/cust-ada", json={"language": "tlh"}).status_code == 200
    Worker(server.db).drain()
    assert api.get("/api/v1/customers/cust-ada").json()["data"]["language"] == "tlh"
    assert stripe_customer_of(server, stripe_emulator, "cust-ada").preferred_locales == ["fr"]
