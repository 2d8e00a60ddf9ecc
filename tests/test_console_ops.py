"""The console's operations pages (issue 14), server side on SQLite and PostgreSQL: changing a
subscription's plan or add-ons after the price preview and cancelling a scheduled change, links to the
billing provider's dashboard, the webhooks sent about a customer, the subscriptions list's filters, the
overview's usage chart, and disabling console users.

Most tests share one server per engine (`module_server`) with one catalog; each makes its own customers."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from entitle.billing import store as billing_store
from entitle.billing.models import Integration
from entitle.config import console_page_url, load_settings
from entitle.console import accounts
from entitle.console.models import ConsoleUser
from entitle.customers.models import Customer
from entitle.db.migrate import upgrade
from entitle.db.types import JSONDoc, UTCDateTime
from entitle.environments.service import environment_pk
from entitle.errors import FailedPrecondition
from entitle.jobs.service import Worker
from entitle.secrets import ENV_VAR
from entitle.subscriptions import preview as subscription_preview
from entitle.subscriptions import service as subscription_service
from entitle.subscriptions.models import Subscription
from entitle.subscriptions.schemas import AddonQuantity
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.console import browser, csrf_of, make_user, sign_in, signed_in
from tests.test_webhooks import SECRET_KEY as WEBHOOK_SECRETS_KEY
from tests.test_webhooks import receivers  # noqa: F401  (the fixture)


@dataclass(frozen=True)
class Shop:
    server: LiveServer
    api: httpx.Client
    editor: str
    viewer: str


def _published(api: httpx.Client, kind: str, ref: str, monthly: int, **fields: object) -> None:
    made = api.post(f"/api/v1/{kind}", json={"id": ref, "displayName": ref.title(), "productId": "ops"})
    assert made.status_code == 200, made.text
    charges = {
        "pricingType": "PAID",
        "pricingModels": [
            {
                "billingModel": "FLAT_FEE",
                "pricePeriods": [{"billingPeriod": "MONTHLY", "price": {"amount": monthly, "currency": "usd"}}],
            }
        ],
    }
    assert api.patch(f"/api/v1/{kind}/{ref}", json={"charges": charges, **fields}).status_code == 200
    published = api.post(f"/api/v1/{kind}/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"})
    assert published.status_code == 200, published.text


@pytest.fixture(scope="module")
def shop(module_server: LiveServer) -> Iterator[Shop]:
    """Product `ops`: plans `basic` (10 a month, sells the `seats-pack` add-on at 5, at most 3) and
    `business` (30 a month); an editor and a viewer."""
    with module_server.http() as api:
        assert api.post("/api/v1/products", json={"id": "ops", "displayName": "Ops"}).status_code == 200
        _published(api, "addons", "seats-pack", 5, maxQuantity=3)
        _published(api, "plans", "basic", 10, compatibleAddonIds=["seats-pack"])
        _published(api, "plans", "business", 30)
        editor = make_user(module_server.db, "ops-editor@example.com", "editor")
        viewer = make_user(module_server.db, "ops-viewer@example.com", "viewer")
        yield Shop(module_server, api, editor, viewer)


def _subscribed(shop: Shop, customer: str, plan: str = "basic") -> str:
    assert shop.api.post("/api/v1/customers", json={"id": customer}).status_code == 200
    made = shop.api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": plan})
    assert made.status_code == 200, made.text
    ref: str = made.json()["data"]["id"]
    return ref


def _text(page: httpx.Response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text)))


def _subscription(shop: Shop, ref: str) -> dict[str, object]:
    found: dict[str, object] = shop.api.get(f"/api/v1/subscriptions/{ref}").json()["data"]
    return found


def test_add_ons_change_after_the_preview_the_api_shows(shop: Shop) -> None:
    sub = _subscribed(shop, "ops-addons")
    with signed_in(shop.server.base_url, shop.editor) as web:
        customer = web.get("/console/customers/ops-addons")
        assert f"/console/subscriptions/{sub}/change" in customer.text
        change = web.get(f"/console/subscriptions/{sub}/change")
        assert change.status_code == 200 and 'name="addon_id" value="seats-pack"' in change.text
        wanted = {"addon_id": "seats-pack", "addon_quantity": "2"}
        preview = web.get(f"/console/subscriptions/{sub}/addons", params=wanted)
        assert preview.status_code == 200, preview.text
        by_api = shop.api.post(
            "/api/v1/subscriptions/preview",
            json={"customerId": "ops-addons", "planId": "basic", "addons": [{"id": "seats-pack", "quantity": 2}]},
        ).json()["data"]
        assert by_api["recurringInvoice"]["total"] == 20  # 10 for the plan, 2 x 5 for the packs
        shown = _text(preview)
        assert "Each period" in shown and "Total 20.00 USD" in shown
        assert f"Total {by_api['immediateInvoice']['total']:.2f} USD" in shown  # the prorated change, due now
        token = csrf_of(web, f"/console/subscriptions/{sub}/change")
        confirmed = web.post(f"/console/subscriptions/{sub}/addons", data={"csrf_token": token, **wanted})
        assert confirmed.status_code == 303 and confirmed.headers["location"] == "/console/customers/ops-addons"
        assert _subscription(shop, sub)["addons"] == [{"id": "seats-pack", "quantity": 2}]
        # Refused by the API's rule, with its message; nothing changes.
        too_many = {"csrf_token": token, "addon_id": "seats-pack", "addon_quantity": "4"}
        refused = web.post(f"/console/subscriptions/{sub}/addons", data=too_many)
        api_refusal = shop.api.patch(
            f"/api/v1/subscriptions/{sub}", json={"addons": [{"id": "seats-pack", "quantity": 4}]}
        )
        assert refused.status_code == api_refusal.status_code == 400
        assert api_refusal.json()["error"]["message"] in html.unescape(refused.text)
        unpaired = web.post(f"/console/subscriptions/{sub}/addons", data={"csrf_token": token, "addon_id": "x"})
        assert unpaired.status_code == 400 and "in pairs" in unpaired.text
        # Quantity 0 takes it off.
        removed = web.post(
            f"/console/subscriptions/{sub}/addons",
            data={"csrf_token": token, "addon_id": "seats-pack", "addon_quantity": "0"},
        )
        assert removed.status_code == 303
    assert _subscription(shop, sub)["addons"] == []


def test_a_plan_change_upgrades_now_and_a_downgrade_waits_until_its_scheduled_change_is_cancelled(
    shop: Shop,
) -> None:
    first = _subscribed(shop, "ops-plans")
    with signed_in(shop.server.base_url, shop.editor) as web:
        change = web.get(f"/console/subscriptions/{first}/change")
        assert '<option value="business">' in change.text and '<option value="basic">' not in change.text
        preview = web.get("/console/customers/ops-plans/provision", params={"plan": "business", "change_of": first})
        assert preview.status_code == 200 and "Confirm plan change" in preview.text
        assert "Total 30.00 USD" in _text(preview)
        token = csrf_of(web, "/console/customers/ops-plans")
        up = web.post("/console/customers/ops-plans/subscriptions", data={"csrf_token": token, "plan": "business"})
        assert up.status_code == 303
        assert _subscription(shop, first)["status"] == "CANCELED"
        listed = shop.api.get("/api/v1/subscriptions", params={"customerId": "ops-plans", "status": "ACTIVE"})
        (business,) = listed.json()["data"]
        assert business["planId"] == "business"
        # Back to basic: a downgrade, at the end of the period unless asked otherwise.
        later = {"plan": "basic", "change_of": business["id"], "schedule_strategy": "END_OF_BILLING_PERIOD"}
        preview = web.get("/console/customers/ops-plans/provision", params=later)
        assert 'data-testid="preview-scheduled"' in preview.text
        down = web.post(
            "/console/customers/ops-plans/subscriptions",
            data={"csrf_token": token, "plan": "basic", "schedule_strategy": "END_OF_BILLING_PERIOD"},
        )
        assert down.status_code == 303
        (scheduled,) = _subscription(shop, business["id"])["futureUpdates"]  # type: ignore[misc]
        assert scheduled["targetPackage"] == {"id": "basic"}
        page = web.get("/console/customers/ops-plans")
        assert f'data-testid="scheduled-{business["id"]}"' in page.text and "Cancel scheduled change" in page.text
        cancel = f"/console/subscriptions/{business['id']}/scheduled-update/cancel"
        back = "/console/customers/ops-plans"
        assert web.post(cancel, data={"csrf_token": token, "back": back}).headers["location"] == back
        assert _subscription(shop, business["id"])["futureUpdates"] == []
        again = web.post(cancel, data={"csrf_token": token})
        api_again = shop.api.delete(f"/api/v1/subscriptions/{business['id']}/future-update/schedule")
        assert again.status_code == api_again.status_code and 400 <= again.status_code < 500
        assert api_again.json()["error"]["message"] in html.unescape(again.text)


def test_a_trialing_subscriptions_period_switch_is_previewed_as_the_change_now_it_is(shop: Shop) -> None:
    """A subscription in its trial has no billing period to wait for: asked for the end of the period, the
    switch applies now (and the preview prices it as due now). The page said "from the end of the current
    billing period; nothing is due now" above a preview with an amount due now."""
    api = shop.api
    assert api.post("/api/v1/plans", json={"id": "ops-yearly", "displayName": "Y", "productId": "ops"}).is_success
    periods = [
        {"billingPeriod": period, "price": {"amount": amount, "currency": "usd"}}
        for period, amount in (("MONTHLY", 10), ("ANNUALLY", 100))
    ]
    charges = {"pricingType": "PAID", "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": periods}]}
    assert api.patch("/api/v1/plans/ops-yearly", json={"charges": charges}).is_success
    assert api.post("/api/v1/plans/ops-yearly/publish", json={"migrationType": "NEW_CUSTOMERS"}).is_success
    assert api.post("/api/v1/customers", json={"id": "ops-trial"}).status_code == 200
    trial = {"isTrial": True, "trialEndDate": (datetime.now(UTC) + timedelta(days=10)).isoformat()}
    body = {"customerId": "ops-trial", "planId": "ops-yearly", "billingPeriod": "MONTHLY"}
    made = shop.api.post("/api/v1/subscriptions", json={**body, "trialOverrideConfiguration": trial})
    assert made.status_code == 200, made.text
    sub = made.json()["data"]["id"]
    assert _subscription(shop, sub)["status"] == "IN_TRIAL"
    with signed_in(shop.server.base_url, shop.editor) as web:
        wanted = {"billing_period": "ANNUALLY", "schedule_strategy": "END_OF_BILLING_PERIOD"}
        preview = web.get(f"/console/subscriptions/{sub}/period", params=wanted)
        assert preview.status_code == 200, preview.text
        said = _text(preview)
        assert "from now on" in said and "nothing is due now" not in said, said
        token = csrf_of(web, "/console/customers/ops-trial")
        assert web.post(f"/console/subscriptions/{sub}/period", data={"csrf_token": token, **wanted}).status_code == 303
    switched = _subscription(shop, sub)
    assert (switched["billingPeriod"], switched["futureUpdates"]) == ("ANNUALLY", [])  # applied now, as previewed


def test_a_viewer_gets_no_change_controls_and_its_forged_changes_are_refused(shop: Shop) -> None:
    sub = _subscribed(shop, "ops-viewed")
    with signed_in(shop.server.base_url, shop.viewer) as web:
        page = web.get("/console/customers/ops-viewed")
        assert page.status_code == 200 and "/change" not in page.text
        change = web.get(f"/console/subscriptions/{sub}/change")
        assert change.status_code == 200  # reading is allowed; confirming is not offered
        preview = web.get(
            f"/console/subscriptions/{sub}/addons", params={"addon_id": "seats-pack", "addon_quantity": "1"}
        )
        assert preview.status_code == 200 and "Confirm add-ons" not in preview.text
        token = csrf_of(web)
        for path, data in [
            (f"/console/subscriptions/{sub}/addons", {"addon_id": "seats-pack", "addon_quantity": "1"}),
            (f"/console/subscriptions/{sub}/scheduled-update/cancel", {}),
        ]:
            assert web.post(path, data={"csrf_token": token, **data}).status_code == 403
            assert web.post(path, data=data).status_code == 403  # and without the token
    assert _subscription(shop, sub)["addons"] == []


def test_a_subscription_address_leads_to_its_row_on_the_customer_page(shop: Shop) -> None:
    sub = _subscribed(shop, "ops/linked")
    with signed_in(shop.server.base_url, shop.viewer) as web:
        answer = web.get(f"/console/subscriptions/{sub}")
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/console/customers/ops%2Flinked#subscription-{sub}"
        assert f'id="subscription-{sub}"' in web.get("/console/customers/ops%2Flinked").text
        assert web.get("/console/subscriptions/missing").status_code == 404


def test_entity_urls_are_console_pages_under_the_public_url(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTITLE_PUBLIC_URL", "https://billing.example.com/entitle/")
    monkeypatch.setenv("ENTITLE_CONSOLE_URL", "https://former.example.com")
    public = load_settings().console_base_url
    assert public == "https://billing.example.com/entitle"
    assert console_page_url(public, "CUSTOMER", "a/b c") == f"{public}/console/customers/a%2Fb%20c"
    monkeypatch.delenv("ENTITLE_PUBLIC_URL")
    assert load_settings().console_base_url == "https://former.example.com"  # the former name still works
    sub = _subscribed(shop, "ops-url")
    served = {"CUSTOMER": "ops-url", "SUBSCRIPTION": sub, "PLAN": "basic"}
    with signed_in(shop.server.base_url, shop.viewer) as web:
        for kind, ref in served.items():
            path = console_page_url("", kind, ref)
            assert web.get(path).status_code in (200, 303), path


def _link(server: LiveServer, kind: str, entity_pk: int, state: str, billing_id: str, reason: str | None) -> None:
    with server.db.transaction() as s:
        integration = s.scalars(select(Integration)).one()
        billing_store.put_link(s, integration, kind, entity_pk, state, billing_id=billing_id, reason=reason)


def test_billing_ids_link_to_the_dashboard_and_subscriptions_filter_by_period_and_sync(
    server: LiveServer, api: httpx.Client
) -> None:
    assert api.post("/api/v1/products", json={"id": "ops", "displayName": "Ops"}).status_code == 200
    _published(api, "plans", "basic", 10)
    for customer in ("synced", "unsynced"):
        assert api.post("/api/v1/customers", json={"id": customer}).status_code == 200
        assert api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": "basic"}).status_code == 200
    env_id = environment_pk(server.db, "development")
    # Linked after the fact, as a sync would leave them: no provider is reached in this test.
    with server.db.transaction() as s:
        s.add(
            Integration(
                environment_id=env_id,
                ref_id="stripe-ops",
                vendor="STRIPE",
                secret_key_encrypted="-",
                secret_key_hint="sk_test_…0000",
                livemode=False,
            )
        )
        customer = s.scalars(select(Customer).where(Customer.ref_id == "synced")).one()
        sub = s.scalars(select(Subscription).where(Subscription.customer_pk == customer.pk)).one()
        customer_pk, sub_pk, sub_ref = customer.pk, sub.pk, sub.ref_id
    _link(server, "CUSTOMER", customer_pk, "SUCCESS", "cus_Ops1", None)
    _link(server, "SUBSCRIPTION", sub_pk, "ERROR", "sub_Ops1", "card declined")
    email = make_user(server.db, "ops-links@example.com", "viewer")
    with signed_in(server.base_url, email) as web:
        page = web.get("/console/customers/synced").text
        assert 'href="https://dashboard.stripe.com/test/customers/cus_Ops1"' in page
        assert 'href="https://dashboard.stripe.com/test/subscriptions/sub_Ops1"' in page and "card declined" in page

        def listed(**filters: str) -> set[str]:
            answer = web.get("/console/subscriptions", params=filters)
            assert answer.status_code == 200, answer.text
            return set(re.findall(r'data-testid="row-([^"]+)"', answer.text))

        everything = listed()
        assert len(everything) == 2 and sub_ref in everything
        assert listed(sync="ERROR") == {sub_ref}
        assert listed(sync="SUCCESS") == set()
        assert listed(billing_period="MONTHLY") == everything
        assert listed(billing_period="ANNUALLY") == set()
        assert listed(status="ACTIVE", plan="basic", sync="ERROR", billing_period="MONTHLY") == {sub_ref}
        assert listed(plan="other") == set()
        shown = web.get("/console/subscriptions", params={"sync": "ERROR"}).text
        assert 'href="https://dashboard.stripe.com/test/subscriptions/sub_Ops1"' in shown
        for bad in ({"sync": "BROKEN"}, {"billing_period": "WEEKLY"}, {"status": "GONE"}):
            refused = web.get("/console/subscriptions", params=bad)
            assert refused.status_code == 400 and "unknown value(s)" in html.unescape(refused.text), bad


@pytest.fixture
def hooks_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receivers on 127.0.0.1 over http (the local-development setting), and one key for the webhook
    secrets shared by the server and the worker draining in this process; set before `server` starts."""
    monkeypatch.setenv("ENTITLE_WEBHOOKS_ALLOW_PRIVATE", "true")
    monkeypatch.setenv(ENV_VAR, WEBHOOK_SECRETS_KEY)


def test_the_customer_page_lists_the_webhooks_sent_about_it_and_an_admin_redelivers_one(
    hooks_env: None,
    server: LiveServer,
    api: httpx.Client,
    receivers: Any,  # noqa: F811  (the fixture imported above)
    test_clock: TestClock,
) -> None:
    receiver = receivers([500])  # the first attempt (about "hooked", created first) fails
    made = api.post("/api/v1/webhooks", json={"url": receiver.url, "eventTypes": ["customer.created"]})
    assert made.status_code == 200, made.text
    hook = made.json()["data"]["id"]
    for ref in ("hooked", "other"):
        assert api.post("/api/v1/customers", json={"id": ref}).status_code == 200
    worker = Worker(server.db)
    assert worker.drain() == 1  # "other" waits behind the retry: one endpoint's events go in order
    test_clock.advance(timedelta(hours=1))
    assert worker.drain() == 2
    about = {e["id"]: e["data"]["customerId"] for e in receiver.events()}
    log = api.get(f"/api/v1/webhooks/{hook}/deliveries").json()["data"]
    hooked = [d for d in log if about[d["eventId"]] == "hooked"]
    assert [(d["attempt"], d["statusCode"]) for d in hooked] == [(1, 500), (2, 200)]

    def shown(web: httpx.Client) -> dict[str, str]:
        page = web.get("/console/customers/hooked")
        assert page.status_code == 200
        return dict(re.findall(r'<tr data-testid="delivery-(\d+)">(.*?)</tr>', page.text, re.S))

    admin = make_user(server.db, "hooks-admin@example.com", "admin")
    with signed_in(server.base_url, admin) as web:
        rows = shown(web)
        assert set(rows) == {str(d["id"]) for d in hooked}  # nothing about "other"
        first, second = (" ".join(_text_of(rows[str(d["id"])]).split()) for d in hooked)
        assert "customer.created" in first and "500 endpoint answered HTTP 500" in first
        assert "200 OK" in second and hook in second
        again = web.post(
            f"/console/webhooks/{hook}/deliveries/{hooked[-1]['id']}/redeliver",
            data={"csrf_token": csrf_of(web, "/console/customers/hooked"), "back": "/console/customers/hooked"},
        )
        assert again.status_code == 303 and again.headers["location"] == "/console/customers/hooked"
        assert worker.drain() == 1
        assert list(about.values()).count("hooked") == 1 and receiver.events()[-1]["id"] == hooked[0]["eventId"]
        assert len(shown(web)) == 3
    # The policy (docs/architecture.md, the console): every role reads the log, only admins redeliver.
    for role in ("viewer", "editor"):
        with signed_in(server.base_url, make_user(server.db, f"hooks-{role}@example.com", role)) as web:
            assert len(shown(web)) == 3
            assert "/redeliver" not in web.get("/console/customers/hooked").text
            forged = web.post(
                f"/console/webhooks/{hook}/deliveries/{hooked[-1]['id']}/redeliver", data={"csrf_token": csrf_of(web)}
            )
            assert forged.status_code == 403, role
    assert worker.drain() == 0


def test_an_admin_disables_and_enables_an_endpoint_where_a_refused_redelivery_says_to(
    hooks_env: None,
    server: LiveServer,
    api: httpx.Client,
    receivers: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    """A redelivery to a disabled endpoint is refused with "enable it, then redeliver", and the console had no
    way to enable (or disable) an endpoint: only the API or the command line could."""
    receiver = receivers()
    made = api.post("/api/v1/webhooks", json={"url": receiver.url, "eventTypes": ["customer.created"]})
    hook = made.json()["data"]["id"]
    assert api.post("/api/v1/customers", json={"id": "toggled"}).status_code == 200
    worker = Worker(server.db)
    assert worker.drain() == 1
    (delivery,) = api.get(f"/api/v1/webhooks/{hook}/deliveries").json()["data"]
    admin = make_user(server.db, "toggle-admin@example.com", "admin")
    with signed_in(server.base_url, admin) as web:
        token = csrf_of(web, f"/console/webhooks/{hook}")
        off = web.post(f"/console/webhooks/{hook}/enabled", data={"csrf_token": token, "enabled": "false"})
        assert off.status_code == 303 and api.get(f"/api/v1/webhooks/{hook}").json()["data"]["enabled"] is False
        assert "Disabled: nothing is sent" in web.get(f"/console/webhooks/{hook}").text
        redeliver = f"/console/webhooks/{hook}/deliveries/{delivery['id']}/redeliver"
        refused = web.post(redeliver, data={"csrf_token": token})
        assert refused.status_code == 409 and "enable it, then redeliver" in html.unescape(refused.text)
        on = web.post(f"/console/webhooks/{hook}/enabled", data={"csrf_token": token, "enabled": "true"})
        assert on.status_code == 303 and api.get(f"/api/v1/webhooks/{hook}").json()["data"]["enabled"] is True
        assert web.post(redeliver, data={"csrf_token": token}).status_code == 303
        assert worker.drain() == 1 and len(receiver.events()) == 2
    with signed_in(server.base_url, make_user(server.db, "toggle-editor@example.com", "editor")) as web:
        forged = web.post(f"/console/webhooks/{hook}/enabled", data={"csrf_token": csrf_of(web), "enabled": "false"})
        assert forged.status_code == 403
    assert api.get(f"/api/v1/webhooks/{hook}").json()["data"]["enabled"] is True


def _text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def test_the_overview_charts_usage_reports_and_events_per_day(server: LiveServer, api: httpx.Client) -> None:
    assert api.post("/api/v1/customers", json={"id": "metered"}).status_code == 200
    assert (
        api.post(
            "/api/v1/features",
            json={"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
        ).status_code
        == 200
    )
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    for key, at in (("e1", now), ("e2", now), ("e3", yesterday)):
        event = {"customerId": "metered", "eventName": "call", "idempotencyKey": key, "timestamp": at.isoformat()}
        assert api.post("/api/v1/events", json={"events": [event]}).status_code == 200
    report = {"usages": [{"customerId": "metered", "featureId": "calls", "value": 7}]}
    assert api.post("/api/v2/usage", json=report).status_code == 200
    email = make_user(server.db, "overview-usage@example.com", "viewer")
    with signed_in(server.base_url, email) as web:
        page = web.get("/console").text

    def per_day(testid: str) -> dict[str, int]:
        figure = page.split(f'data-testid="{testid}"', 1)[1].split("</figure>", 1)[0]
        return {day: int(n) for day, n in re.findall(r"<title>(\d{4}-\d{2}-\d{2}): (\d+)</title>", figure)}

    events = per_day("events-chart")
    assert len(events) == 30 and events[now.date().isoformat()] == 2 and events[yesterday.date().isoformat()] == 1
    assert sum(events.values()) == 3
    assert 'aria-label="Events ingested per day: 3 from' in page
    assert per_day("usage-reports-chart")[now.date().isoformat()] == 1  # one report (of 7), not the events
    assert 'data-testid="failed-payments">0<' in page and 'data-testid="sync-errors">0<' in page


def test_an_admin_disables_a_user_whose_sessions_end_and_sign_in_is_refused_but_never_the_last_admin(
    server: LiveServer,
) -> None:
    admin = make_user(server.db, "chief@example.com", "admin")
    other = make_user(server.db, "deputy@example.com", "admin")
    editor = make_user(server.db, "leaving@example.com", "editor")
    with signed_in(server.base_url, editor) as leaving, signed_in(server.base_url, admin) as web:
        assert leaving.get("/console").status_code == 200
        token = csrf_of(web, "/console/settings")
        # An editor may not disable anyone, even with its own valid token.
        assert (
            leaving.post(
                "/console/settings/users/disabled",
                data={"csrf_token": csrf_of(leaving), "email": admin, "disabled": "true"},
            ).status_code
            == 403
        )
        disable = {"csrf_token": token, "email": editor, "disabled": "true"}
        assert web.post("/console/settings/users/disabled", data=disable).status_code == 303
        assert leaving.get("/console").status_code == 303  # its session ended: back to sign-in
        assert 'data-testid="disabled"' in web.get("/console/settings").text
        with browser(server.base_url) as again:
            refused = sign_in(again, editor)
            assert refused.status_code == 403 and "disabled" in refused.text
            wrong = sign_in(again, editor, "not the password at all")
            assert wrong.status_code == 401 and "disabled" not in wrong.text  # nothing learnt without it
        # Nobody disables themselves; the last enabled admin stays.
        myself = web.post("/console/settings/users/disabled", data={**disable, "email": admin})
        assert myself.status_code == 409 and "yourself" in html.unescape(myself.text)
        assert web.post("/console/settings/users/disabled", data={**disable, "email": other}).status_code == 303
        demote = web.post("/console/settings/users/role", data={"csrf_token": token, "email": admin, "role": "viewer"})
        assert demote.status_code == 409 and "from yourself" in html.unescape(demote.text)
        with server.db.transaction() as s:
            chief = s.scalars(select(ConsoleUser).where(ConsoleUser.email == admin)).one()
        assert chief.disabled_at is None and chief.role == "admin"
        enable = {"csrf_token": token, "email": editor, "disabled": "false"}
        assert web.post("/console/settings/users/disabled", data=enable).status_code == 303
        assert web.post("/console/settings/users/disabled", data={**enable, "disabled": "maybe"}).status_code == 400
        unknown = web.post("/console/settings/users/disabled", data={**disable, "email": "nobody@example.com"})
        assert unknown.status_code == 404
    with signed_in(server.base_url, editor) as back:
        assert back.get("/console").status_code == 200
    # The last enabled admin, through the service itself (another admin's action or the CLI alike).
    for last_admin_goes in (
        lambda: accounts.set_disabled(server.db, admin, True),
        lambda: accounts.change_role(server.db, admin, "editor"),
    ):
        with pytest.raises(FailedPrecondition, match="last enabled admin"):
            last_admin_goes()


def test_every_new_form_needs_the_csrf_token(shop: Shop) -> None:
    sub = _subscribed(shop, "ops-csrf")
    with signed_in(shop.server.base_url, shop.editor) as web:
        for path, data in [
            (f"/console/subscriptions/{sub}/addons", {"addon_id": "seats-pack", "addon_quantity": "1"}),
            (f"/console/subscriptions/{sub}/scheduled-update/cancel", {}),
            ("/console/customers/ops-csrf/subscriptions", {"plan": "business"}),
            ("/console/settings/users/disabled", {"email": shop.viewer, "disabled": "true"}),
            ("/console/webhooks/any/deliveries/1/redeliver", {}),
        ]:
            for token in (None, "forged"):
                sent = data if token is None else {**data, "csrf_token": token}
                refused = web.post(path, data=sent)
                assert refused.status_code == 403 and "CSRF_TOKEN_INVALID" in refused.text, path
    view = _subscription(shop, sub)
    assert (view["status"], view["planId"], view["addons"]) == ("ACTIVE", "basic", [])


def test_migration_0024_fills_the_customer_of_logged_deliveries(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Attempts logged before 0024 get their customer from their delivery job's event (when stored)."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        admin = sa.create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS entitle_migration_0024 WITH (FORCE)"))
            conn.execute(sa.text("CREATE DATABASE entitle_migration_0024"))
        admin.dispose()
        url = cluster.url("entitle_migration_0024")
    upgrade(url, "0022_console_users_audit")
    engine = sa.create_engine(url)
    now = "CURRENT_TIMESTAMP"
    events = {
        "about-ada": {"event": {"id": "evt_1", "type": "customer.created", "data": {"customerId": "ada"}}},
        "about-nobody": {"event": {"id": "evt_2", "type": "customer.created", "data": {}}},
    }
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO environments (name, is_production, created_at, updated_at) "
                f"VALUES ('development', false, {now}, {now})"
            )
        )
        env = conn.execute(sa.text("SELECT pk FROM environments")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO webhook_endpoints (ref_id, url, secret_encrypted, event_types, enabled, environment_id, "
                f"created_at, updated_at) VALUES ('wh', 'https://x.test', 'x', '[]', true, :env, {now}, {now})"
            ),
            {"env": env},
        )
        endpoint = conn.execute(sa.text("SELECT pk FROM webhook_endpoints")).scalar_one()
        jobs = sa.table(
            "jobs",
            *(sa.column(c) for c in ("kind", "status", "attempts", "max_attempts", "environment_id")),
            sa.column("payload", JSONDoc()),
            *(sa.column(c, UTCDateTime()) for c in ("run_at", "created_at", "updated_at")),
        )
        at = datetime.now(UTC)
        for key, payload in events.items():
            conn.execute(
                jobs.insert().values(
                    kind=key, status="SUCCEEDED", attempts=1, max_attempts=12, environment_id=env,
                    payload=payload, run_at=at, created_at=at, updated_at=at,
                )
            )  # fmt: skip
        job_pks = dict(conn.execute(sa.text("SELECT kind, pk FROM jobs")).all())
        for event_id, job_pk in (("evt_1", job_pks["about-ada"]), ("evt_2", job_pks["about-nobody"]), ("evt_3", 999)):
            conn.execute(
                sa.text(
                    "INSERT INTO webhook_deliveries (endpoint_pk, job_pk, event_id, event_type, attempt, succeeded, "
                    f"latency_ms, environment_id, created_at, updated_at) VALUES (:endpoint, :job, :event, "
                    f"'customer.created', 1, true, 5, :env, {now}, {now})"
                ),
                {"endpoint": endpoint, "job": job_pk, "event": event_id, "env": env},
            )
    upgrade(url)
    with engine.connect() as conn:
        found = dict(conn.execute(sa.text("SELECT event_id, customer_ref FROM webhook_deliveries")).all())
    engine.dispose()
    # The job of evt_3 is gone: its attempt stays, about no known customer.
    assert found == {"evt_1": "ada", "evt_2": None, "evt_3": None}


def test_a_number_without_a_meter_shows_its_value_not_a_usage_bar(shop: Shop) -> None:
    """A NUMBER feature with no meter (a retention in days) counts no usage: the API answers it with no
    currentUsage and the widgets show no bar, but the customer page used to show "0 / 30" and an empty
    usage chart for it, as if 30 days were an allowance being used up."""
    api = shop.api
    features = [
        {"id": "ops-retention", "displayName": "Retention", "featureType": "NUMBER"},
        {"id": "ops-projects", "displayName": "Projects", "featureType": "NUMBER", "meterType": "FLUCTUATING"},
    ]
    for feature in features:
        assert api.post("/api/v1/features", json=feature).status_code == 200
    made = api.post("/api/v1/plans", json={"id": "ops-metered", "displayName": "Metered", "productId": "ops"})
    assert made.status_code == 200, made.text
    entitlements = [
        {"type": "FEATURE", "id": "ops-retention", "usageLimit": 30},
        {"type": "FEATURE", "id": "ops-projects", "usageLimit": 5},
    ]
    assert api.post("/api/v1/plans/ops-metered/entitlements", json={"entitlements": entitlements}).status_code == 200
    assert api.post("/api/v1/plans/ops-metered/publish", json={"migrationType": "NEW_CUSTOMERS"}).status_code == 200
    _subscribed(shop, "ops-retained", "ops-metered")
    report = {"usages": [{"customerId": "ops-retained", "featureId": "ops-projects", "value": 2}]}
    assert api.post("/api/v2/usage", json=report).status_code == 200
    checked = api.get("/api/v1/customers/ops-retained/entitlements/check", params={"featureId": "ops-retention"})
    assert checked.json()["data"]["currentUsage"] is None  # what the API says of it

    with signed_in(shop.server.base_url, shop.viewer) as web:
        page = web.get("/console/customers/ops-retained").text
    retention = page.split('data-testid="entitlement-ops-retention"', 1)[1].split("</tr>", 1)[0]
    assert "<progress" not in retention and "0 / 30" not in _text(httpx.Response(200, text=retention))
    assert '<span class="value">30</span>' in retention
    projects = page.split('data-testid="entitlement-ops-projects"', 1)[1].split("</tr>", 1)[0]
    assert "<progress" in projects and '<span class="usage">2 / 5</span>' in projects
    assert 'data-testid="usage-chart-ops-projects"' in page
    assert 'data-testid="usage-chart-ops-retention"' not in page


def test_an_add_on_preview_keeps_the_subscriptions_own_seats_and_coupon(shop: Shop) -> None:
    """Adding an add-on changes the subscription in place: its per-unit quantities and its coupon stay.
    The console's preview used to price the plan with one unit and no coupon: for a subscription paying
    4 seats at half price it showed money due back for adding an add-on, and a price it would not pay."""
    api = shop.api
    feature = {"id": "ops-seats", "displayName": "Seats", "featureType": "NUMBER", "meterType": "FLUCTUATING"}
    assert api.post("/api/v1/features", json=feature).status_code == 200
    coupon = {"id": "ops-half", "name": "Half", "description": None, "durationInMonths": None, "metadata": None}
    assert api.post("/api/v1/coupons", json={**coupon, "percentOff": 50, "amountsOff": None}).status_code == 200
    made = api.post("/api/v1/plans", json={"id": "ops-seated", "displayName": "Seated", "productId": "ops"})
    assert made.status_code == 200, made.text
    monthly = [{"billingPeriod": "MONTHLY", "price": {"amount": 10, "currency": "usd"}}]
    per_seat = [{"billingPeriod": "MONTHLY", "price": {"amount": 3, "currency": "usd"}}]
    charges = {
        "pricingType": "PAID",
        "pricingModels": [
            {"billingModel": "FLAT_FEE", "pricePeriods": monthly},
            {"billingModel": "PER_UNIT", "featureId": "ops-seats", "pricePeriods": per_seat},
        ],
    }
    patched = api.patch("/api/v1/plans/ops-seated", json={"charges": charges, "compatibleAddonIds": ["seats-pack"]})
    assert patched.status_code == 200, patched.text
    assert api.post("/api/v1/plans/ops-seated/publish", json={"migrationType": "NEW_CUSTOMERS"}).status_code == 200
    assert api.post("/api/v1/customers", json={"id": "ops-seated-co"}).status_code == 200
    terms = {
        "customerId": "ops-seated-co",
        "planId": "ops-seated",
        "charges": [{"id": "ops-seats", "quantity": 4, "type": "FEATURE"}],
        "appliedCoupon": {"couponId": "ops-half"},
    }
    made = api.post("/api/v1/subscriptions", json=terms)
    assert made.status_code == 200, made.text
    sub = made.json()["data"]["id"]

    by_api = api.post(
        "/api/v1/subscriptions/preview", json={**terms, "addons": [{"id": "seats-pack", "quantity": 1}]}
    ).json()["data"]
    assert by_api["recurringInvoice"]["total"] == 13.5  # (10 + 4 x 3 + 5) at half price
    assert by_api["immediateInvoice"]["total"] >= 0  # an add-on more costs, never pays back
    with signed_in(shop.server.base_url, shop.viewer) as web:
        preview = web.get(
            f"/console/subscriptions/{sub}/addons", params={"addon_id": "seats-pack", "addon_quantity": 1}
        )
    assert preview.status_code == 200, preview.text
    shown = _text(preview)
    assert "Each period" in shown and "Discount -13.50 USD Total 13.50 USD" in shown
    assert f"Total {by_api['immediateInvoice']['total']:.2f} USD" in shown
    assert "Seated (ops-seats) 4 " in shown


def test_an_add_on_preview_dates_the_subscriptions_own_period(shop: Shop) -> None:
    """An add-on is added in place: the subscription keeps its billing cycle. The preview used to date
    it as a new subscription starting now (a month from today) instead of the period it is in."""
    assert shop.api.post("/api/v1/customers", json={"id": "ops-mid-period"}).status_code == 200
    started = datetime.now(UTC) - timedelta(days=10)
    body = {"customerId": "ops-mid-period", "planId": "basic", "startDate": started.isoformat()}
    made = shop.api.post("/api/v1/subscriptions", json=body)
    assert made.status_code == 200, made.text
    sub = made.json()["data"]["subscription"]
    start, end = (datetime.fromisoformat(sub[k]) for k in ("currentBillingPeriodStart", "currentBillingPeriodEnd"))
    assert start < datetime.now(UTC) - timedelta(days=9)  # a period begun ten days ago
    with signed_in(shop.server.base_url, shop.viewer) as web:
        preview = web.get(
            f"/console/subscriptions/{sub['id']}/addons", params={"addon_id": "seats-pack", "addon_quantity": 1}
        )
    assert preview.status_code == 200, preview.text
    assert f"Period {start:%Y-%m-%d} to {end:%Y-%m-%d}" in _text(preview)
    db = shop.server.db
    view = subscription_service.get_subscription(db, environment_pk(db, "development"), sub["id"])
    wanted = [AddonQuantity(id="seats-pack", quantity=1)]
    dated = subscription_preview.preview_change(db, environment_pk(db, "development"), view, addons=wanted)
    assert dated.immediate_invoice.billing_period_range is not None
    assert dated.immediate_invoice.billing_period_range.end == end  # the rest of this period is due now
    assert dated.recurring_invoice is not None and dated.recurring_invoice.billing_period_range is not None
    assert dated.recurring_invoice.billing_period_range.start == end  # then the next one recurs


def test_the_promotion_form_offers_the_features_and_a_custom_end_date(shop: Shop) -> None:
    """The form offered five fixed periods and a blank feature id: a promotion until a date (period custom,
    which the API takes) could not be granted from the console, and a feature id had to be known by heart."""
    api = shop.api
    for ref, name in (("ops-sso", "Single sign-on"), ("ops-gone", "Gone")):
        made = api.post("/api/v1/features", json={"id": ref, "displayName": name, "featureType": "BOOLEAN"})
        assert made.status_code == 200, made.text
    assert api.post("/api/v1/features/ops-gone/archive").status_code == 200
    assert api.post("/api/v1/customers", json={"id": "ops-promoted"}).status_code == 200
    until = (datetime.now(UTC) + timedelta(days=40)).date()
    with signed_in(shop.server.base_url, shop.editor) as web:
        page = web.get("/console/customers/ops-promoted").text
        offered = page.split('<datalist id="promo-features">', 1)[1].split("</datalist>", 1)[0]
        assert '<option value="ops-sso">Single sign-on</option>' in offered
        assert "ops-gone" not in offered  # archived: not offered
        assert "<option>custom</option>" in page and 'name="custom_end_date" type="date"' in page
        form = {"feature_id": "ops-sso", "period": "custom", "custom_end_date": until.isoformat()}
        granted = web.post("/console/customers/ops-promoted/promotions", data={**form, "csrf_token": csrf_of(web)})
        assert granted.status_code == 303, granted.text
        # A custom period without its date is refused, and nothing is granted.
        refused = web.post(
            "/console/customers/ops-promoted/promotions",
            data={"feature_id": "ops-sso", "period": "custom", "csrf_token": csrf_of(web)},
        )
        assert refused.status_code == 400 and "customEndDate" in refused.text
    promotions = api.get("/api/v1/customers/ops-promoted/promotional-entitlements").json()["data"]
    assert [(p["featureId"], p["period"], p["endDate"][:10]) for p in promotions] == [
        ("ops-sso", "custom", until.isoformat())
    ]
