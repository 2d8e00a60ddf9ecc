"""The console in a real headless Chromium (issue 14): sign in; provision a plan after reading the price
preview; usage reported through the API moves the bar; cancel at period end; a viewer sees no edit
controls and its forged POST is refused; a POST without the CSRF token is refused; wrong passwords are
throttled; the audit log shows the changes with their author.

One SQLite-backed server and one signed-in admin context for the module (the server-side rules are
tested on both databases in test_console.py). Each page type is photographed into
test-output/screenshots/ for a person to look at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import stigg

from entitle.console import rules
from entitle.db import Database
from entitle.environments.models import KeyKind
from entitle.environments.service import create_key
from tests.support.console import PASSWORD, make_user
from tests.support.http import SSL_CONTEXT
from tests.support.server import running_server
from tests.test_core_path import build_catalog

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
ADMIN = "admin@example.com"
VIEWER = "viewer@example.com"


@dataclass
class Console:
    base_url: str
    db: Database
    api: httpx.Client
    admin: Any  # a signed-in Playwright BrowserContext


def shoot(page: Any, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def sign_in(page: Any, base_url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def console(chromium: Any, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir = tmp_path_factory.mktemp("console-browser")
    shutil.copyfile(sqlite_template, data_dir / "entitle.db")
    with running_server(f"sqlite:///{data_dir / 'entitle.db'}", data_dir) as (base_url, db):
        key = create_key(db, "development", KeyKind.SERVER)
        make_user(db, ADMIN, "admin")
        make_user(db, VIEWER, "viewer")
        sdk = stigg.Stigg(api_key=key, base_url=base_url, max_retries=0)
        build_catalog(sdk)
        with httpx.Client(base_url=base_url, headers={"X-API-KEY": key}, timeout=30, verify=SSL_CONTEXT) as api:
            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            sign_in(page, base_url, ADMIN)
            page.wait_for_url(f"{base_url}/console")
            page.close()
            try:
                yield Console(base_url, db, api, context)
            finally:
                context.close()


def customer(console: Console, ref: str) -> None:
    answer = console.api.post("/api/v1/customers", json={"id": ref, "name": f"{ref} Inc", "email": f"ops@{ref}.test"})
    assert answer.status_code == 200, answer.text


def test_sign_in_lands_on_the_overview_and_every_list_page_renders(console: Console, chromium: Any) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(console.base_url + "/")
        assert page.url == f"{console.base_url}/console/login"
        shoot(page, "login")
        sign_in(page, console.base_url, ADMIN)
        page.wait_for_url(f"{console.base_url}/console")
        assert page.get_by_role("heading", name="Overview").is_visible()
        assert page.get_by_test_id("environment").inner_text().strip() == "Environment: development"
        shoot(page, "overview")
        for path, heading, name in [
            ("/console/customers", "Customers", "customers"),
            ("/console/subscriptions", "Subscriptions", "subscriptions"),
            ("/console/plans", "Plans", "plans"),
            ("/console/products", "Products", "products"),
            ("/console/addons", "Add-ons", "addons"),
            ("/console/settings", "Settings", "settings"),
            ("/console/audit-log", "Audit log", "audit-log"),
            ("/console/integrations", "Integrations", "integrations"),
            ("/console/webhooks", "Webhooks", "webhooks"),
        ]:
            page.get_by_role("navigation", name="Console sections").get_by_role("link", name=heading).click()
            page.wait_for_url(console.base_url + path)
            assert page.get_by_role("heading", level=1, name=heading).is_visible()
            shoot(page, name)
        page.goto(console.base_url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title")  # rendered from our own assets
        shoot(page, "api-docs", full_page=False)  # its hundred operations make a very tall page
        # The phone layout: no horizontal scrolling of the page itself.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(console.base_url + "/console/customers")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        shoot(page, "customers-phone")
    finally:
        context.close()


def test_provision_after_the_preview_watch_usage_then_cancel_at_period_end(console: Console) -> None:
    customer(console, "acme")
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/customers")
        page.get_by_label("Search by id, name or email").fill("acme")
        page.get_by_label("Search by id, name or email").press("Enter")
        page.get_by_role("link", name="acme", exact=True).click()
        page.wait_for_url(f"{console.base_url}/console/customers/acme")
        page.get_by_label("Plan", exact=True).select_option("pro")
        page.get_by_label("Billing period").select_option("MONTHLY")
        page.get_by_role("button", name="Preview price…").click()
        preview = page.get_by_test_id("preview")
        assert "Pro" in preview.inner_text()
        assert page.get_by_test_id("total-2").inner_text() == "10.00 USD"  # each period
        shoot(page, "provision-preview")
        page.get_by_role("button", name="Confirm subscription").click()
        page.wait_for_url(f"{console.base_url}/console/customers/acme")
        row = page.locator("tr[data-testid^='subscription-']").filter(has_text="pro")
        assert row.locator(".status").inner_text() == "ACTIVE"

        bar = page.get_by_test_id("entitlement-api-calls")
        assert bar.locator(".usage").inner_text() == "0 / 1000"
        reported = console.api.post(
            "/api/v2/usage", json={"usages": [{"customerId": "acme", "featureId": "api-calls", "value": 250}]}
        )
        assert reported.status_code == 200, reported.text
        page.reload()
        assert bar.locator(".usage").inner_text() == "250 / 1000"
        assert bar.locator("progress").get_attribute("value") == "25"
        assert bar.locator("progress").get_attribute("aria-label") == "API calls usage: 250 of 1000"
        chart = page.get_by_test_id("usage-chart-api-calls").locator("svg")
        assert "API calls usage: 1 reports from" in (chart.get_attribute("aria-label") or "")
        assert "now 250" in (chart.get_attribute("aria-label") or "")

        row.get_by_label(re.compile("How to cancel")).select_option("END_OF_BILLING_PERIOD")
        row.get_by_role("button", name="Cancel").click()
        page.wait_for_url(f"{console.base_url}/console/customers/acme")
        row = page.locator("tr[data-testid^='subscription-']").filter(has_text="pro")
        assert row.locator(".status").inner_text() == "ACTIVE"  # until the period ends
        assert row.locator(".ends").inner_text().startswith("cancels ")
        shoot(page, "customer")
        sub_id = row.get_attribute("data-testid").removeprefix("subscription-")
        api_view = console.api.get(f"/api/v1/subscriptions/{sub_id}").json()["data"]
        assert api_view["cancellationDate"] == api_view["currentBillingPeriodEnd"]
    finally:
        page.close()


def test_a_viewer_sees_no_edit_controls_and_the_server_refuses_its_forged_post(console: Console, chromium: Any) -> None:
    customer(console, "viewed")
    context = chromium.new_context()
    try:
        page = context.new_page()
        sign_in(page, console.base_url, VIEWER)
        page.wait_for_url(f"{console.base_url}/console")
        page.goto(f"{console.base_url}/console/customers/viewed")
        assert page.get_by_role("heading", name="Customer viewed").is_visible()
        for name in ("Archive viewed", "Preview price…", "Grant", "Cancel"):
            assert page.get_by_role("button", name=name).count() == 0
        assert page.get_by_role("link", name="Settings").count() == 0
        shoot(page, "customer-viewer")
        # The viewer's own session and CSRF token, a form it was never shown: the role alone refuses.
        token = page.locator("input[name=csrf_token]").first.input_value()
        forged = context.request.post(
            f"{console.base_url}/console/customers/viewed/archive", form={"csrf_token": token}
        )
        assert forged.status == 403
        assert "may not do this" in forged.text()
        assert console.api.get("/api/v1/customers/viewed").json()["data"].get("archivedAt") is None
    finally:
        context.close()


def test_a_post_without_the_csrf_token_is_refused(console: Console) -> None:
    customer(console, "no-csrf")
    refused = console.admin.request.post(f"{console.base_url}/console/customers/no-csrf/archive", form={})
    assert refused.status == 403 and "CSRF_TOKEN_INVALID" in refused.text()
    assert console.api.get("/api/v1/customers/no-csrf").json()["data"].get("archivedAt") is None


def test_wrong_passwords_are_throttled(console: Console, chromium: Any) -> None:
    # A user of this test only: the shared admin is never locked.
    email = make_user(console.db, "forgetful@example.com", "editor")
    context = chromium.new_context()
    try:
        page = context.new_page()
        for _ in range(rules.MAX_FAILURES):
            sign_in(page, console.base_url, email, "wrong password!")
            assert page.get_by_test_id("login-error").inner_text() == "wrong email or password"
        sign_in(page, console.base_url, email, PASSWORD)
        assert "too many failed sign-ins" in page.get_by_test_id("login-error").inner_text()
        assert page.url == f"{console.base_url}/console/login"
        shoot(page, "login-throttled")
    finally:
        context.close()


def test_the_audit_log_shows_the_changes_with_their_author(console: Console) -> None:
    customer(console, "audited")
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/customers/audited")
        page.get_by_label("Promoted feature id").fill("sso")
        page.get_by_label("Promotion period").select_option("1 month")
        page.get_by_role("button", name="Grant").click()
        page.wait_for_url(f"{console.base_url}/console/customers/audited")
        page.get_by_role("navigation", name="Console sections").get_by_role("link", name="Audit log").click()
        rows = page.locator("table.audit tbody tr")
        promoted = rows.filter(has_text="promotional_entitlements").first
        assert promoted.locator(".actor").inner_text() == ADMIN
        assert "feature_ref: sso" in promoted.inner_text()
        created = rows.filter(has_text="customers").filter(has_text="audited").first
        assert created.locator(".actor").inner_text().startswith("server-development-")
        shoot(page, "audit-log-entries")
    finally:
        page.close()


def test_create_a_metered_feature_with_the_meter_editor(console: Console) -> None:
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/features")
        page.get_by_label("Feature id").fill("ai-credits")
        page.get_by_label("Display name").fill("AI credits")
        page.get_by_label("Feature type").select_option("NUMBER")
        page.get_by_label("Meter type").select_option("INCREMENTAL")
        page.get_by_label("Aggregation").select_option("SUM")
        page.get_by_label("Of the event field").fill("credits")
        page.get_by_label("Condition 1 field").fill("eventName")
        page.get_by_label("Condition 1 operation").select_option("EQUALS")
        page.get_by_label("Condition 1 value").fill("generation")
        page.get_by_role("button", name="Create feature").click()
        page.wait_for_url(f"{console.base_url}/console/features")
        row = page.get_by_test_id("feature-ai-credits")
        assert "SUM(credits) where eventName EQUALS generation" in row.inner_text()
        shoot(page, "features")
        meter = console.api.get("/api/v1/features/ai-credits").json()["data"]["meter"]
        assert meter["aggregation"] == {"function": "SUM", "field": "credits"}
    finally:
        page.close()


def test_create_a_plan_with_a_tiered_monthly_price_and_a_trial_and_publish_it(console: Console) -> None:
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/plans")
        page.get_by_label("Plan id").fill("scale")
        page.get_by_label("Plan name").fill("Scale")
        page.get_by_label("Product", exact=True).select_option("main")
        page.get_by_role("button", name="Create plan").click()
        page.wait_for_url(f"{console.base_url}/console/plans/scale")
        page.get_by_label("Entitled feature").select_option("api-calls")
        page.get_by_label("Usage limit").fill("5000")
        page.get_by_label("Resets every").select_option("MONTH")
        page.get_by_role("button", name="Add entitlement").click()
        page.get_by_label("Billing model").select_option("PER_UNIT")
        page.get_by_label("Billing period").select_option("MONTHLY")
        page.get_by_label("Priced feature (per unit, usage)").select_option("seats")
        page.get_by_label("Tiers mode").select_option("VOLUME")
        page.get_by_label(re.compile("^Tiers, one a line")).fill("5 12\n* 9")
        page.get_by_label("Free trial (days)").fill("7")
        page.get_by_role("button", name="Set price").click()
        page.wait_for_url(f"{console.base_url}/console/plans/scale")
        assert "volume tiers: up to 5 at 12 USD; beyond at 9 USD" in " ".join(
            page.get_by_test_id("charge").inner_text().split()
        )
        shoot(page, "plan-draft")
        page.get_by_label("Existing subscriptions").select_option("NEW_CUSTOMERS")
        page.get_by_role("button", name="Publish version 1").click()
        page.wait_for_url(f"{console.base_url}/console/plans/scale")
        assert page.get_by_test_id("plan-status").inner_text() == "PUBLISHED"
        shoot(page, "plan")
        plan = console.api.get("/api/v1/plans/scale").json()["data"]
        assert (plan["status"], plan["defaultTrialConfig"]["duration"]) == ("PUBLISHED", 7)
    finally:
        page.close()


def test_a_product_gets_an_add_on_with_a_per_unit_price_and_a_coupon_is_made(console: Console) -> None:
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/products")
        page.get_by_label("Product id").fill("team")
        page.get_by_label("Product name").fill("Team workspace")
        page.get_by_role("button", name="Create product").click()
        page.wait_for_url(f"{console.base_url}/console/products/team")
        page.get_by_label("New add-on id").fill("extra-seats")
        page.get_by_label("New add-on name").fill("Extra seats")
        page.get_by_role("button", name="Create add-on draft").click()
        page.wait_for_url(f"{console.base_url}/console/addons/extra-seats")
        page.get_by_label("Entitled feature").select_option("seats")
        page.get_by_label("Usage limit").fill("1")
        page.get_by_role("button", name="Add entitlement").click()
        page.get_by_label("Billing model").select_option("PER_UNIT")
        page.get_by_label("Priced feature (per unit, usage)").select_option("seats")
        page.get_by_label("Amount", exact=True).fill("4")
        page.get_by_role("button", name="Set price").click()
        page.get_by_label("Maximum quantity per subscription").fill("10")
        page.get_by_role("button", name="Save quantity and dependencies").click()
        page.wait_for_url(f"{console.base_url}/console/addons/extra-seats")
        price, amount = page.get_by_test_id("charge").locator("td").all_inner_texts()[:2]
        assert (price.split(), amount.split()) == (["PER_UNIT", "seats", "MONTHLY"], ["4", "USD"])
        page.get_by_role("button", name="Publish version 1").click()
        page.wait_for_url(f"{console.base_url}/console/addons/extra-seats")
        assert page.get_by_test_id("addon-status").inner_text() == "PUBLISHED"
        shoot(page, "addon")
        page.get_by_role("link", name="team", exact=True).click()
        page.wait_for_url(f"{console.base_url}/console/products/team")
        assert "Extra seats" in page.get_by_test_id("product-addons").inner_text()
        shoot(page, "product")
        addon = console.api.get("/api/v1/addons/extra-seats").json()["data"]
        assert (addon["status"], addon["maxQuantity"], addon["pricingType"]) == ("PUBLISHED", 10, "PAID")

        page.get_by_role("navigation", name="Console sections").get_by_role("link", name="Coupons").click()
        page.wait_for_url(f"{console.base_url}/console/coupons")
        page.get_by_label("Coupon id").fill("launch")
        page.get_by_label("Coupon name").fill("Launch offer")
        page.get_by_label("Fixed amounts").check()
        page.get_by_label("Amounts off, one per currency").fill("10 usd\n9 eur")
        page.get_by_label("Lasts (months; blank for ever)").fill("3")
        page.get_by_role("button", name="Create coupon").click()
        page.wait_for_url(f"{console.base_url}/console/coupons")
        row = page.get_by_test_id("coupon-launch")
        assert row.locator(".discount").inner_text() == "10 USD or 9 EUR off"
        shoot(page, "coupons")
        row.get_by_role("button", name="Archive coupon launch").click()
        page.wait_for_url(f"{console.base_url}/console/coupons")
        assert page.get_by_test_id("coupon-launch").locator(".status").inner_text() == "ARCHIVED"
        assert console.api.get("/api/v1/coupons/launch").json()["data"]["amountsOff"] == [
            {"amount": 10, "currency": "usd"},
            {"amount": 9, "currency": "eur"},
        ]
    finally:
        page.close()


def test_a_draft_beside_its_published_version_then_its_version_history(console: Console) -> None:
    made = console.api.post("/api/v1/plans", json={"id": "growth", "displayName": "Growth", "productId": "main"})
    assert made.status_code == 200, made.text
    body = {"entitlements": [{"type": "FEATURE", "id": "api-calls", "usageLimit": 2000, "resetPeriod": "MONTH"}]}
    assert console.api.post("/api/v1/plans/growth/entitlements", json=body).status_code == 200
    assert console.api.post("/api/v1/plans/growth/publish", json={"migrationType": "NEW_CUSTOMERS"}).status_code == 200
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/plans/growth")
        page.get_by_role("button", name="Edit a new draft (version 2)").click()
        page.wait_for_url(f"{console.base_url}/console/plans/growth")
        # The entitlement's editor, by keyboard: its summary opens with Enter.
        page.get_by_text("Change api-calls", exact=True).focus()
        page.keyboard.press("Enter")
        page.get_by_label("Limit of api-calls").fill("3000")
        page.get_by_label("Name shown for api-calls").fill("Requests")
        page.get_by_role("button", name="Save api-calls").click()
        page.wait_for_url(f"{console.base_url}/console/plans/growth#entitlement-api-calls")
        changed = page.get_by_test_id("diff-entitlements-api-calls")
        assert changed.locator(".change").inner_text() == "changed"
        assert 'up to 3000; resets every month; shown as "Requests"' in changed.inner_text()
        shoot(page, "plan-draft-diff")
        page.get_by_label("Existing subscriptions").select_option("ALL_CUSTOMERS")
        page.get_by_role("button", name="Publish version 2").click()
        page.wait_for_url(f"{console.base_url}/console/plans/growth")
        history = page.get_by_test_id("versions")
        assert "moved to it" in history.locator("tr").filter(has_text="Version 2").inner_text()
        history.get_by_role("link", name="Version 1").click()
        page.wait_for_url(f"{console.base_url}/console/plans/growth/versions/1")
        assert "up to 2000; resets every month" in page.get_by_test_id("version-entitlements").inner_text()
        shoot(page, "plan-version")
        # The editor on a phone: wide tables scroll inside their cards, the page itself does not.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{console.base_url}/console/plans/growth")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        shoot(page, "plan-phone")
    finally:
        page.close()


def test_change_plan_after_the_preview_then_cancel_the_scheduled_downgrade(console: Console) -> None:
    customer(console, "changer")
    made = console.api.post("/api/v1/subscriptions", json={"customerId": "changer", "planId": "pro"})
    assert made.status_code == 200, made.text
    sub = made.json()["data"]["id"]
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/customers/changer")
        page.get_by_role("link", name=f"Change plan or add-ons of {sub}").click()
        page.wait_for_url(f"{console.base_url}/console/subscriptions/{sub}/change")
        page.get_by_label("New plan").select_option("free")
        page.get_by_label("A downgrade takes effect").select_option("END_OF_BILLING_PERIOD")
        shoot(page, "subscription-change")
        page.get_by_role("button", name="Preview plan change…").click()
        assert page.get_by_role("heading", level=1).inner_text() == f"Change {sub} of changer to free"
        assert page.get_by_test_id("preview-scheduled").is_visible()  # a downgrade waits for the period end
        shoot(page, "plan-change-preview")
        page.get_by_role("button", name="Confirm plan change").click()
        page.wait_for_url(f"{console.base_url}/console/customers/changer")
        scheduled = page.get_by_test_id(f"scheduled-{sub}")
        assert scheduled.inner_text().startswith("downgrade to free on ")
        shoot(page, "customer-scheduled-change")
        page.get_by_role("button", name=f"Cancel the scheduled change of {sub}").click()
        page.wait_for_url(f"{console.base_url}/console/customers/changer")
        assert page.get_by_test_id(f"scheduled-{sub}").count() == 0
        assert console.api.get(f"/api/v1/subscriptions/{sub}").json()["data"]["futureUpdates"] == []
    finally:
        page.close()


def test_an_admin_disables_a_user_and_its_open_session_ends(console: Console, chromium: Any) -> None:
    email = make_user(console.db, "departing@example.com", "editor")
    context = chromium.new_context()
    try:
        theirs = context.new_page()
        sign_in(theirs, console.base_url, email)
        theirs.wait_for_url(f"{console.base_url}/console")
        page = console.admin.new_page()
        try:
            page.goto(f"{console.base_url}/console/settings")
            page.get_by_role("button", name=f"Disable {email}").click()
            page.wait_for_url(f"{console.base_url}/console/settings")
            assert page.get_by_test_id(f"user-{email}").get_by_test_id("disabled").is_visible()
            assert page.get_by_role("button", name=f"Disable {ADMIN}").count() == 0  # never oneself
            shoot(page, "settings-users")
        finally:
            page.close()
        theirs.reload()
        assert theirs.url == f"{console.base_url}/console/login"
        sign_in(theirs, console.base_url, email)
        assert "disabled" in theirs.get_by_test_id("login-error").inner_text()
    finally:
        context.close()


def _published_plan(console: Console, ref: str, product_ref: str, periods: dict[str, int]) -> None:
    api = console.api
    assert api.post("/api/v1/plans", json={"id": ref, "displayName": ref.title(), "productId": product_ref}).is_success
    if periods:
        prices = [{"billingPeriod": p, "price": {"amount": a, "currency": "usd"}} for p, a in periods.items()]
        model = {"billingModel": "FLAT_FEE", "pricePeriods": prices}
        body = {"charges": {"pricingType": "PAID", "pricingModels": [model]}}
        assert api.patch(f"/api/v1/plans/{ref}", json=body).is_success
    assert api.post(f"/api/v1/plans/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"}).is_success


def test_plan_order_metadata_and_one_charge_at_a_time(console: Console) -> None:
    api = console.api
    assert api.post("/api/v1/products", json={"id": "shop", "displayName": "Shop"}).is_success
    _published_plan(console, "solo", "shop", {})
    _published_plan(console, "duo", "shop", {"MONTHLY": 10, "ANNUALLY": 100})
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/products/shop")
        order = page.get_by_test_id("pricing-order")
        assert [li.split()[0] for li in order.locator("li").all_inner_texts()] == ["Solo", "Duo"]
        page.get_by_role("button", name="Move up Duo").click()
        page.wait_for_url(f"{console.base_url}/console/products/shop#pw-h")
        assert [li.split()[0] for li in order.locator("li").all_inner_texts()] == ["Duo", "Solo"]
        paywall = api.get("/api/v1/paywall", params={"productId": "shop"}).json()["data"]["plans"]
        assert [p["id"] for p in paywall] == ["duo", "solo"]
        page.get_by_label("Metadata key 1").fill("segment")
        page.get_by_label("Metadata value 1").fill("smb")
        page.get_by_role("button", name="Save metadata").click()
        page.wait_for_url(f"{console.base_url}/console/products/shop#md-h")
        assert api.get("/api/v1/products/shop").json()["data"]["metadata"] == {"segment": "smb"}
        shoot(page, "product-plan-order-and-metadata")

        # One charge of a draft: the annual price changes, the monthly one stays.
        assert api.post("/api/v1/plans/duo/draft").is_success
        page.goto(f"{console.base_url}/console/plans/duo")
        page.get_by_role("link", name="Edit FLAT_FEE ANNUALLY").click()
        assert page.get_by_label("Charge amount").input_value() == "100"
        page.get_by_label("Charge amount").fill("90")
        page.get_by_role("button", name="Save this charge").click()
        page.wait_for_url(f"{console.base_url}/console/plans/duo#pc-h")
        lines = [" ".join(t.split()) for t in page.get_by_test_id("charge").all_inner_texts()]
        assert any(line.startswith("FLAT_FEE ANNUALLY 90 USD") for line in lines), lines
        assert any(line.startswith("FLAT_FEE MONTHLY 10 USD") for line in lines), lines
        page.get_by_label("Charge type").select_option("PER_UNIT")
        page.get_by_label("Charged feature").select_option("seats")
        page.get_by_label("Charge amount").fill("3")
        page.get_by_role("button", name="Add charge").click()
        page.wait_for_url(f"{console.base_url}/console/plans/duo#pc-h")
        assert page.get_by_test_id("charge").count() == 3
        shoot(page, "plan-one-charge")
        page.get_by_role("button", name="Remove PER_UNIT seats MONTHLY").click()
        page.wait_for_url(f"{console.base_url}/console/plans/duo#pc-h")
        assert page.get_by_test_id("charge").count() == 2
        assert api.post("/api/v1/plans/duo/publish", json={"migrationType": "NEW_CUSTOMERS"}).is_success

        body = {"id": "welcome", "name": "Welcome", "percentOff": 10, "metadata": {"campaign": "spring"}}
        assert api.post("/api/v1/coupons", json=body).is_success
        page.goto(f"{console.base_url}/console/coupons")
        page.get_by_role("link", name="Welcome").click()
        page.wait_for_url(f"{console.base_url}/console/coupons/welcome")
        page.get_by_label("Metadata value 1").fill("summer")
        page.get_by_role("button", name="Save metadata").click()
        page.wait_for_url(f"{console.base_url}/console/coupons/welcome#md-h")
        coupon = next(c for c in api.get("/api/v1/coupons").json()["data"] if c["id"] == "welcome")
        assert coupon["metadata"] == {"campaign": "summer"}
        shoot(page, "coupon")
    finally:
        page.close()


def test_switch_the_billing_period_after_the_preview_and_see_one_off_charges_apart(console: Console) -> None:
    api = console.api
    if not api.get("/api/v1/products/shop").is_success:
        assert api.post("/api/v1/products", json={"id": "shop", "displayName": "Shop"}).is_success
    if not api.get("/api/v1/plans/yearly-or-not").is_success:
        _published_plan(console, "yearly-or-not", "shop", {"MONTHLY": 10, "ANNUALLY": 100})
    customer(console, "switcher")
    body = {"customerId": "switcher", "planId": "yearly-or-not", "billingPeriod": "MONTHLY"}
    made = api.post("/api/v1/subscriptions", json=body)
    assert made.status_code == 200, made.text
    sub = made.json()["data"]["id"]
    assert api.post("/api/v1/credits/custom-currencies", json={"id": "gems", "displayName": "Gems"}).is_success
    grant = {"customerId": "switcher", "currencyId": "gems", "amount": 500, "displayName": "Gem pack"}
    grant |= {"grantType": "PAID", "cost": {"amount": 49, "currency": "usd"}}
    assert api.post("/api/v1/credits/grants", json=grant).is_success
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/subscriptions/{sub}/change")
        page.get_by_label("Bill it").select_option("ANNUALLY")
        page.get_by_label("The new period starts").select_option("IMMEDIATE")
        page.get_by_role("button", name="Preview billing period change…").click()
        assert "billed annually instead of monthly, from now on" in page.get_by_test_id("period-change").inner_text()
        assert "100.00 USD" in page.get_by_test_id("preview").inner_text()
        shoot(page, "subscription-period-preview")
        page.get_by_role("button", name="Confirm billing period change").click()
        page.wait_for_url(f"{console.base_url}/console/customers/switcher")
        assert api.get(f"/api/v1/subscriptions/{sub}").json()["data"]["billingPeriod"] == "ANNUALLY"
        page.goto(f"{console.base_url}/console")
        assert "49.00 USD" in page.get_by_test_id("one-off").inner_text()
        shoot(page, "overview-not-in-mrr")
    finally:
        page.close()


def test_a_refused_form_comes_back_as_it_was_filled_in(console: Console) -> None:
    """The refusal page's "Go back" used to load the form's page afresh: a support agent who typed a
    grant's amount, name and comment lost them all to one refused digit."""
    customer(console, "refused-grant")
    made = console.api.post("/api/v1/credits/custom-currencies", json={"id": "refused-tokens", "displayName": "Tok"})
    assert made.status_code == 200, made.text
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console/customers/refused-grant/credits")
        page.get_by_label("Grant amount").fill("12.1234567")  # more decimal places than credits have
        page.get_by_label("Grant name").fill("Goodwill for outage 4411")
        page.get_by_label("Comment").fill("Promised on the phone")
        page.get_by_role("button", name="Grant credits").click()
        assert "at most 6 decimal places" in page.get_by_test_id("error-message").inner_text()
        page.get_by_role("link", name="Go back").click()
        page.wait_for_url(f"{console.base_url}/console/customers/refused-grant/credits")
        assert page.get_by_label("Grant amount").input_value() == "12.1234567"
        assert page.get_by_label("Grant name").input_value() == "Goodwill for outage 4411"
        assert page.get_by_label("Comment").input_value() == "Promised on the phone"
        listed = console.api.get("/api/v1/credits/grants", params={"customerId": "refused-grant"}).json()["data"]
        assert listed == []
    finally:
        page.close()
