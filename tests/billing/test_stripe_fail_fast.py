"""Fail fast on what retrying cannot fix (issue 13, items 3-5), on SQLite and PostgreSQL, against the emulator.

- Connecting calls Stripe once to check the key (the stand-in answers `GET /v1/account` for every key it
  was not told to refuse: `revoked_keys` answer 401, `restricted_keys` 403 on the paths they lack), records
  the account, and makes the recommended billing-portal configuration (`/v1/billing_portal/configurations`,
  the stand-in's), which portal sessions then use.
- Attaching a payment method reads it at Stripe first (localstripe's payment methods carry the card).
- A Stripe error no retry can fix (400, 404, 401, 403) makes the job dead at once, with Stripe's message in
  the job and the sync state; a 503 keeps retrying.
- Stripe not answering a request that waits for it is a 503 `PROVIDER_UNAVAILABLE` that writes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import CliRunner

from entitle.billing import catalog_sync
from entitle.billing.models import ERROR, PACKAGE, Integration
from entitle.billing.stripe_support import RECOMMENDED_PORTAL_FEATURES, is_permanent
from entitle.cli import app
from entitle.jobs.models import DEAD, PENDING, Job
from entitle.jobs.service import Worker
from tests.billing.conftest import card_payment_method, connect_stripe
from tests.billing.test_stripe_catalog_sync import link_of, make_plan, sync_jobs, version
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.emulator_only

RESTRICTED_KEY = "rk_test_51RestrictedKey00000000000000777"


def connect(api: httpx.Client, emulator: StripeEmulator, key: str, **extra: Any) -> httpx.Response:
    body = {"vendorIdentifier": "STRIPE", "apiSecretKey": key, "apiBase": emulator.api_base, **extra}
    return api.post("/api/v1/integrations", json=body)


def nothing_written(server: LiveServer) -> None:
    with server.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Integration)) == 0
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def features_of(configuration: dict[str, Any]) -> dict[str, Any]:
    """The recommended settings, read back from what Stripe holds."""
    f = configuration["features"]
    return {
        "invoice_history": f["invoice_history"]["enabled"],
        "customer_update": (f["customer_update"]["enabled"], sorted(f["customer_update"]["allowed_updates"])),
        "payment_method_update": f["payment_method_update"]["enabled"],
        "subscription_cancel": f["subscription_cancel"]["enabled"],
        "subscription_pause": f["subscription_pause"]["enabled"],
        "subscription_update": f["subscription_update"]["enabled"],
    }


RECOMMENDED = {
    "invoice_history": True,
    "customer_update": (True, ["address"]),  # billing address on; name and email stay Entitle's
    "payment_method_update": True,
    "subscription_cancel": False,
    "subscription_pause": False,
    "subscription_update": False,  # no plan switching, no quantity updates
}


def test_connecting_checks_the_key_records_the_account_and_configures_the_portal(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    data = connect_stripe(api, stripe_emulator)
    assert data["accountId"].startswith("acct_") and data["accountName"] == "Entitle Stripe emulator"
    (configuration,) = stripe_emulator.standin.portal_configurations.values()
    assert data["portalConfigurationId"] == configuration["id"]
    assert features_of(configuration) == RECOMMENDED
    reads = [(e.method, e.path) for e in stripe_emulator.standin.log]
    assert ("GET", "/v1/account") in reads
    # Connecting again (the same key) updates the same configuration rather than making another.
    configuration["features"]["subscription_cancel"]["enabled"] = True  # changed in the dashboard
    again = connect_stripe(api, stripe_emulator)
    assert again["portalConfigurationId"] == configuration["id"]
    assert len(stripe_emulator.standin.portal_configurations) == 1
    assert features_of(configuration) == RECOMMENDED
    # On demand too; a configuration deleted at Stripe is made anew.
    configuration["features"]["subscription_update"]["enabled"] = True
    refreshed = api.post(f"/api/v1/integrations/{data['id']}/portal-configuration")
    assert refreshed.status_code == 200, refreshed.text
    assert features_of(configuration) == RECOMMENDED
    stripe_emulator.standin.portal_configurations.clear()
    remade = api.post(f"/api/v1/integrations/{data['id']}/portal-configuration").json()["data"]
    (configuration,) = stripe_emulator.standin.portal_configurations.values()
    assert remade["portalConfigurationId"] == configuration["id"] != data["portalConfigurationId"]
    assert features_of(configuration) == RECOMMENDED


def test_portal_sessions_use_the_recommended_configuration(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    integration = connect_stripe(api, stripe_emulator)
    customer = stripe_emulator.client().v1.customers.create(params={"name": "Ada"})
    assert api.post("/api/v1/customers", json={"id": "cust-ada", "billingId": customer.id}).status_code == 200
    resp = api.post("/api/v1/customers/cust-ada/portal-session", json={"returnUrl": "https://app.example.com/"})
    assert resp.status_code == 200, resp.text
    (session,) = stripe_emulator.standin.portal_sessions.values()
    assert session["configuration"] == integration["portalConfigurationId"]


def test_an_unreachable_provider_is_a_503_with_a_retry_hint_and_nothing_is_written(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    stripe_emulator.fail_next(1, path_prefix="/v1/account", method="GET", status=503)
    resp = connect_stripe_raw(api, stripe_emulator)
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert resp.headers["retry-after"] == "5" and "retry" in resp.json()["error"]["message"]
    nothing_written(server)
    # Nothing listening at all: the same answer, at once.
    body = {"vendorIdentifier": "STRIPE", "apiSecretKey": stripe_emulator.secret_key, "apiBase": "http://127.0.0.1:9"}
    refused = api.post("/api/v1/integrations", json=body)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
    nothing_written(server)


def connect_stripe_raw(api: httpx.Client, emulator: StripeEmulator) -> httpx.Response:
    return connect(api, emulator, emulator.secret_key)


def test_a_key_stripe_refuses_or_a_restricted_key_missing_permissions_is_a_400(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    stripe_emulator.standin.revoked_keys.add("sk_test_51Revoked0000000000000000001")
    revoked = connect(api, stripe_emulator, "sk_test_51Revoked0000000000000000001")
    assert revoked.status_code == 400 and revoked.json()["error"]["code"] == "PROVIDER_REFUSED"
    assert "secret key" in revoked.json()["error"]["message"]
    stripe_emulator.standin.restricted_keys[RESTRICTED_KEY] = ("/v1/account", "/v1/prices", "/v1/billing/meters")
    restricted = connect(api, stripe_emulator, RESTRICTED_KEY)
    assert restricted.status_code == 400, restricted.text
    error = restricted.json()["error"]
    assert error["code"] == "PROVIDER_PERMISSIONS_MISSING", error
    assert "Prices (write)" in error["message"] and "Meters (write)" in error["message"]
    assert "Customers" not in error["message"]
    nothing_written(server)
    # The same restricted key with every permission connects (it may not read the account: no name then).
    stripe_emulator.standin.restricted_keys[RESTRICTED_KEY] = ("/v1/account",)
    ok = connect(api, stripe_emulator, RESTRICTED_KEY)
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"]["accountId"] is None and ok.json()["data"]["portalConfigurationId"]


# -- payment methods -------------------------------------------------------------------------------------


def attach(api: httpx.Client, ref: str, method: str) -> httpx.Response:
    body = {"integrationId": "STRIPE", "paymentMethodId": method, "vendorIdentifier": "STRIPE"}
    return api.post(f"/api/v1/customers/{ref}/payment-method", json=body)


def test_attaching_a_payment_method_checks_it_at_stripe_and_shows_the_card(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    assert api.post("/api/v1/customers", json={"id": "cust-ada"}).status_code == 200
    with server.db.read() as s:
        jobs_before = s.scalar(select(func.count()).select_from(Job))

    missing = attach(api, "cust-ada", "pm_doesnotexist000000")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "PAYMENT_METHOD_NOT_FOUND"
    # Someone else's card: attached to another Stripe customer.
    other = stripe_emulator.client().v1.customers.create(params={"name": "Grace"})
    taken = card_payment_method(stripe_emulator)
    stripe_emulator.client().v1.payment_methods.attach(taken, params={"customer": other.id})
    in_use = attach(api, "cust-ada", taken)
    assert in_use.status_code == 400 and in_use.json()["error"]["code"] == "PAYMENT_METHOD_IN_USE"
    assert other.id in in_use.json()["error"]["message"]
    with server.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == jobs_before  # no job left to retry a 404
    assert api.get("/api/v1/customers/cust-ada").json()["data"].get("defaultPaymentMethod") is None

    method = card_payment_method(stripe_emulator)
    done = attach(api, "cust-ada", method)
    assert done.status_code == 200, done.text
    shown = {k: v for k, v in done.json()["data"]["defaultPaymentMethod"].items() if v is not None}
    assert shown == {
        "billingId": method,
        "type": "CARD",
        "cardLast4Digits": "4242",
        "cardExpiryMonth": 12,
        "cardExpiryYear": 2040,
        "cardBrand": "visa",
    }
    assert api.get("/api/v1/customers/cust-ada").json()["data"]["defaultPaymentMethod"]["cardLast4Digits"] == "4242"


def test_attaching_while_stripe_is_unreachable_is_a_503_that_writes_nothing(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator
) -> None:
    connect_stripe(api, stripe_emulator)
    assert api.post("/api/v1/customers", json={"id": "cust-ada"}).status_code == 200
    method = card_payment_method(stripe_emulator)
    stripe_emulator.fail_next(1, path_prefix="/v1/payment_methods", method="GET", status=503)
    resp = attach(api, "cust-ada", method)
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert api.get("/api/v1/customers/cust-ada").json()["data"].get("defaultPaymentMethod") is None


# -- permanent errors in jobs ----------------------------------------------------------------------------


def test_a_permanent_stripe_error_dead_letters_the_job_at_once_with_its_message(
    server: LiveServer,
    api: httpx.Client,
    stripe_emulator: StripeEmulator,
    test_clock: TestClock,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connect_stripe(api, stripe_emulator)
    stripe_emulator.fail_next(1, path_prefix="/v1/products", status=400)
    make_plan(api)
    Worker(server.db).drain()
    (job,) = sync_jobs(server)
    assert (job.status, job.attempts) == (DEAD, 1)  # not retried: the same request would be refused again
    assert job.last_error is not None and "InvalidRequestError" in job.last_error
    package, _ = version(server, "plan-pro", 1)
    link = link_of(server, PACKAGE, package.pk)
    assert link is not None and link.sync_state == ERROR and "injected failure" in (link.reason or "")
    states = api.get(f"/api/v1/integrations/{link_integration(server)}/sync-states").json()["data"]
    assert [(st_["status"], "injected failure" in st_["error"]) for st_ in states] == [("ERROR", True)]
    monkeypatch.setenv("ENTITLE_DATABASE_URL", database_url)
    monkeypatch.setenv("ENTITLE_DATA_DIR", str(tmp_path))
    listed = CliRunner().invoke(app, ["jobs", "list"])  # dead jobs, with their last error
    assert listed.exit_code == 0, listed.output
    assert catalog_sync.SYNC_PACKAGE_JOB in listed.stdout and "InvalidRequestError" in listed.stdout


def test_a_transient_stripe_error_keeps_retrying(
    server: LiveServer, api: httpx.Client, stripe_emulator: StripeEmulator, test_clock: TestClock
) -> None:
    connect_stripe(api, stripe_emulator)
    stripe_emulator.fail_next(2, path_prefix="/v1/products", status=503)
    make_plan(api)
    worker = Worker(server.db)
    worker.drain()
    (job,) = sync_jobs(server)
    assert (job.status, job.attempts) == (PENDING, 1)
    for _ in range(2):
        test_clock.advance(timedelta(hours=1))
        worker.drain()
    assert sync_jobs(server)[0].status == "SUCCEEDED"


def link_integration(server: LiveServer) -> str:
    with server.db.read() as s:
        return s.scalars(select(Integration.ref_id)).one()


def _stripe_error(status: int, code: str | None) -> stripe.StripeError:
    body = {"error": {"message": "m", "code": code}}
    if status == 401:
        return stripe.AuthenticationError("m", http_status=status, json_body=body, code=code)
    if status == 403:
        return stripe.PermissionError("m", http_status=status, json_body=body, code=code)
    if status == 429:
        return stripe.RateLimitError("m", http_status=status, json_body=body, code=code)
    if status in (400, 404, 409):
        return stripe.InvalidRequestError("m", None, code=code, http_status=status, json_body=body)
    return stripe.APIError("m", http_status=status, json_body=body, code=code)


@given(
    status=st.sampled_from([400, 401, 403, 404, 409, 429, 500, 502, 503]),
    code=st.sampled_from([None, "resource_missing", "parameter_invalid", "lock_timeout", "idempotency_key_in_use"]),
)
def test_which_stripe_errors_are_permanent(status: int, code: str | None) -> None:
    transient_code = code in ("lock_timeout", "idempotency_key_in_use")
    expected = status in (401, 403) or (status in (400, 404) and not transient_code)
    assert is_permanent(_stripe_error(status, code)) is expected
    assert is_permanent(stripe.APIConnectionError("unreachable")) is False


def test_the_recommended_portal_settings_are_what_stigg_recommends() -> None:
    assert RECOMMENDED_PORTAL_FEATURES["customer_update"]["allowed_updates"] == ["address"]
    assert {name: f["enabled"] for name, f in RECOMMENDED_PORTAL_FEATURES.items()} == {
        "invoice_history": True,
        "customer_update": True,
        "payment_method_update": True,
        "subscription_cancel": False,
        "subscription_pause": False,
        "subscription_update": False,
    }
