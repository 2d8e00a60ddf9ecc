"""The two races of paid credit grants (docs/credits.md, "Paid grants": what is guaranteed), each forced, against
the local Stripe, on SQLite and PostgreSQL:

- the grant ends (voided in Entitle, or expired unpaid) while its invoice is being made, and the job voiding its
  invoice runs before the invoice is recorded: the invoice is voided at Stripe all the same;
- the grant ends after Stripe made its invoice but the answer was lost (nothing recorded, and the invoicing, finding
  the grant ended, records nothing): the void finds the invoice at Stripe and voids it;
- the invoicing is retried after Stripe forgot its idempotency keys (24 hours): the invoice the earlier attempt
  made is found and carried on, never a second one.

The request is held at Stripe's answer by the stand-in's `after_write` hook, which ends the grant and runs the
worker while the request waits for that answer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from entitle.jobs.service import Worker
from tests.billing.conftest import connect_stripe
from tests.billing.test_stripe_checkout import new_customer
from tests.billing.test_stripe_credit_grants import (
    PAID_AT_ONCE,
    _balance,
    _card_customer,
    _currency,
    _customer_at_stripe,
    _grant,
    _invoiced,
    _ledger,
)
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import Logged, StripeEmulator


def _invoices_of(emulator: StripeEmulator, customer_billing_id: str, grant_ref: str) -> list[Any]:
    listed = emulator.client().v1.invoices.list(params={"customer": customer_billing_id, "limit": 100}).data
    return [i for i in listed if (i.to_dict().get("metadata") or {}).get("entitleCreditGrantId") == grant_ref]


def _voiding_once_drafted(server: LiveServer, api: httpx.Client, voided: list[str]) -> Callable[[Logged], None]:
    """The emulator's `after_write` hook: once Stripe drafted the grant's invoice (the request still making it),
    the grant is voided through the API and the worker runs its void job; the grant's id goes to `voided`."""

    def void_the_grant(entry: Logged) -> None:
        if entry.path != "/v1/invoices" or voided:
            return
        ref = str((entry.params or {})["metadata"]["entitleCreditGrantId"])
        voided.append(ref)
        with httpx.Client(base_url=api.base_url, headers=api.headers) as other:
            resp = other.post(f"/api/v1/credits/grants/{ref}/void")
        assert resp.status_code == 200 and resp.json()["data"]["status"] == "VOIDED", resp.text
        assert Worker(server.db).drain() >= 1

    return void_the_grant


def _voided_with_its_invoice(
    server: LiveServer,
    api: httpx.Client,
    emulator: StripeEmulator,
    customer: str,
    currency: str,
    grant_ref: str,
    invoice_id: str,
) -> None:
    """The grant's one invoice at Stripe is void, the grant VOIDED with that invoice CANCELED, and no credit
    was ever granted."""
    (invoice,) = _invoices_of(emulator, customer, grant_ref)
    assert (invoice.id, invoice.status) == (invoice_id, "void")
    grant = _grant(api, "cust-corp", grant_ref)
    assert (grant["status"], grant["invoiceId"], grant["latestInvoice"]["status"]) == ("VOIDED", invoice_id, "CANCELED")
    assert _ledger(server, grant_ref) == [] and _balance(api, "cust-corp", currency) == (0, 0)


def _at_stripe_already(server: LiveServer, api: httpx.Client, emulator: StripeEmulator) -> tuple[str, str]:
    """A customer at Stripe (its first grant made it there), so the next grant's invoice is made in its request."""
    connect_stripe(api, emulator)
    new_customer(api, "cust-corp")
    currency = _currency(api)
    assert _invoiced(api, "cust-corp", currency, awaitPaymentConfirmation=False).status_code == 200
    Worker(server.db).drain()
    customer = _customer_at_stripe(server, "cust-corp")
    assert customer is not None
    return currency, customer


@pytest.mark.emulator_only
@pytest.mark.parametrize("ending", ["VOIDED", "EXPIRED"])
def test_a_grant_ended_while_its_invoice_was_made_gets_that_invoice_voided(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock, ending: str
) -> None:
    currency, customer = _at_stripe_already(server, api, stripe_emulator)
    ended: list[str] = []

    def end_the_grant(entry: Logged) -> None:
        """Stripe made the grant's draft; before the request hears it, the grant ends and the job that voids its
        invoice runs, finding none to void yet (its invoicing job is not due: it waits a minute for the request)."""
        if entry.path != "/v1/invoices" or ended:
            return
        ref = str((entry.params or {})["metadata"]["entitleCreditGrantId"])
        ended.append(ref)
        if ending == "VOIDED":
            with httpx.Client(base_url=api.base_url, headers=api.headers) as other:
                resp = other.post(f"/api/v1/credits/grants/{ref}/void")
            assert resp.status_code == 200 and resp.json()["data"]["status"] == "VOIDED", resp.text
        else:
            test_clock.advance(timedelta(seconds=40))  # past its expireAt: `credits.expire_unpaid` is due
        assert Worker(server.db).drain() >= 1

    stripe_emulator.standin.after_write = end_the_grant
    expire = (test_clock.now() + timedelta(seconds=30)).isoformat()
    resp = _invoiced(api, "cust-corp", currency, expireAt=expire)
    stripe_emulator.standin.after_write = None
    assert resp.status_code == 200, resp.text
    grant = resp.json()["data"]
    assert ended == [grant["id"]]
    assert grant["status"] == ending and grant["invoiceId"] is not None  # recorded on the grant that ended

    test_clock.advance(timedelta(minutes=2))
    Worker(server.db).drain()
    (invoice,) = _invoices_of(stripe_emulator, customer, grant["id"])
    assert (invoice.id, invoice.status) == (grant["invoiceId"], "void")  # nobody can pay it
    grant = _grant(api, "cust-corp", grant["id"])
    assert (grant["status"], grant["latestInvoice"]["status"]) == (ending, "CANCELED")
    assert _ledger(server, grant["id"]) == [] and _balance(api, "cust-corp", currency) == (0, 0)


@pytest.mark.emulator_only
@pytest.mark.parametrize(
    "lost",
    [
        pytest.param("/v1/invoices", id="draft"),
        pytest.param("/v1/invoiceitems", id="line"),
        pytest.param("/v1/invoices/", id="finalized"),  # the first POST under it is the finalize
    ],
)
def test_an_invoicing_retried_after_stripe_forgot_its_keys_carries_on_the_invoice_made(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock, lost: str
) -> None:
    """Stripe did the request's step but its answer was lost; the job is retried more than a day later (the
    worker was down), when Stripe no longer knows the keys: it finds the grant's invoice and finishes it."""
    currency, customer = _at_stripe_already(server, api, stripe_emulator)
    stripe_emulator.fail_next(1, path_prefix=lost, status=500, after_execution=True)
    resp = _invoiced(api, "cust-corp", currency)
    assert resp.status_code == 200, resp.text
    grant = resp.json()["data"]
    assert grant["status"] == "PAYMENT_PENDING" and grant["invoiceId"] is None  # the job will make it
    (made,) = _invoices_of(stripe_emulator, customer, grant["id"])

    test_clock.advance(timedelta(hours=25))
    stripe_emulator.standin.pass_identifier_window()
    Worker(server.db).drain()
    (invoice,) = _invoices_of(stripe_emulator, customer, grant["id"])  # the one made first, and only it
    assert invoice.id == made.id
    assert (invoice.status, [line.amount for line in invoice.lines.data]) == ("open", [1250])
    grant = _grant(api, "cust-corp", grant["id"])
    assert (grant["status"], grant["invoiceId"], grant["latestInvoice"]["status"]) == (
        "PAYMENT_PENDING",
        invoice.id,
        "OPEN",
    )
    assert _ledger(server, grant["id"]) == [] and _balance(api, "cust-corp", currency) == (0, 0)


@pytest.mark.emulator_only
def test_a_grant_voided_while_its_charge_was_being_made_is_never_charged(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    """CHARGE: the grant is voided after its invoice was drafted and before the card is charged; the invoicing
    asks just before charging, leaves the invoice unpaid, and it is voided."""
    connect_stripe(api, stripe_emulator)
    currency = _currency(api)
    _card_customer(server, api, stripe_emulator, "cust-pays", PAID_AT_ONCE)
    customer = _customer_at_stripe(server, "cust-pays")
    assert customer is not None
    voided: list[str] = []
    # Its void job finds no invoice yet.
    stripe_emulator.standin.after_write = _voiding_once_drafted(server, api, voided)
    resp = _invoiced(api, "cust-pays", currency, paymentCollectionMethod="CHARGE")
    stripe_emulator.standin.after_write = None
    assert resp.status_code == 200, resp.text
    grant = resp.json()["data"]
    assert voided == [grant["id"]] and grant["status"] == "VOIDED"

    Worker(server.db).drain()
    (invoice,) = _invoices_of(stripe_emulator, customer, grant["id"])
    assert (invoice.id, invoice.status, invoice.amount_paid) == (grant["invoiceId"], "void", 0)
    assert stripe_emulator.client().v1.charges.list(params={"customer": customer}).data == []
    grant = _grant(api, "cust-pays", grant["id"])
    assert (grant["status"], grant["latestInvoice"]["status"]) == ("VOIDED", "CANCELED")
    assert _ledger(server, grant["id"]) == [] and _balance(api, "cust-pays", currency) == (0, 0)


@pytest.mark.emulator_only
def test_a_grant_voided_after_its_invoice_was_made_unheard_gets_that_invoice_voided(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    """Stripe finalized (and sent) the invoice, but its answer to the request was lost: nothing is recorded. The
    grant is voided before the job retries; the job then makes nothing, and the void finds the invoice at Stripe."""
    currency, customer = _at_stripe_already(server, api, stripe_emulator)
    stripe_emulator.fail_next(1, path_prefix="/v1/invoices/", status=500, after_execution=True)  # the finalize
    resp = _invoiced(api, "cust-corp", currency)
    assert resp.status_code == 200, resp.text
    grant = resp.json()["data"]
    assert grant["status"] == "PAYMENT_PENDING" and grant["invoiceId"] is None
    (made,) = _invoices_of(stripe_emulator, customer, grant["id"])
    assert made.status == "open"  # the customer could pay it

    resp = api.post(f"/api/v1/credits/grants/{grant['id']}/void")
    assert resp.status_code == 200 and resp.json()["data"]["status"] == "VOIDED", resp.text
    test_clock.advance(timedelta(minutes=2))  # the invoicing job is due too
    Worker(server.db).drain()
    _voided_with_its_invoice(server, api, stripe_emulator, customer, currency, grant["id"], made.id)


@pytest.mark.emulator_only
def test_a_grant_voided_mid_invoice_whose_finalize_went_unheard_gets_that_invoice_voided(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    """The grant is voided while the request makes its invoice, and its void job runs then (finding only the
    draft); Stripe then finalizes the invoice but the answer is lost, so the request records nothing. The
    invoicing job, finding the grant ended, looks for the invoice at Stripe and records it: it is voided."""
    currency, customer = _at_stripe_already(server, api, stripe_emulator)
    voided: list[str] = []
    # Its void job finds a draft only.
    stripe_emulator.standin.after_write = _voiding_once_drafted(server, api, voided)
    stripe_emulator.fail_next(1, path_prefix="/v1/invoices/", status=500, after_execution=True)  # the finalize
    resp = _invoiced(api, "cust-corp", currency)
    stripe_emulator.standin.after_write = None
    assert resp.status_code == 200, resp.text
    grant = resp.json()["data"]
    assert voided == [grant["id"]] and grant["invoiceId"] is None
    (made,) = _invoices_of(stripe_emulator, customer, grant["id"])
    assert made.status == "open"

    test_clock.advance(timedelta(minutes=2))  # the invoicing job is due
    Worker(server.db).drain()
    _voided_with_its_invoice(server, api, stripe_emulator, customer, currency, grant["id"], made.id)
