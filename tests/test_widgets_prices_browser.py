"""The widgets' prices as a customer reads them, in a real headless Chromium against a real server: a plan
whose price mixes a flat fee, a per-seat price, usage-based tiers with a rate below a cent and an overage
charge. The pricing table shows each rate exactly and says which charge is an overage; the checkout asks only
for the quantities a customer buys up front (seats, not tokens or calls) and subscribes.

One SQLite-backed server for the module, no Stripe: the checkout provisions without payment, as the API
does. The page embedding the widgets is served at the server's own origin (a routed document), so the
module loads as it does from an application's page. The widgets' other flows (Stripe, the portal) are in
billing/test_widgets_browser.py.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from entitle.environments.access import rotate_signing_secret
from entitle.environments.models import KeyKind
from entitle.environments.service import create_key
from entitle.secrets import secret_box
from tests.conftest import LiveServer
from tests.support.server import running_server
from tests.support.tokens import token_for

pytestmark = pytest.mark.browser

PRODUCT = "metered-saas"
PAGE = "/widget-test-page"
_buyers = itertools.count()


def _price(amount: str | None = None, **more: Any) -> dict[str, Any]:
    period: dict[str, Any] = {"billingPeriod": "MONTHLY"}
    if amount is not None:
        period["price"] = {"amount": amount, "currency": "usd"}
    period.update(more)
    return period


def _build_catalog(api: httpx.Client) -> None:
    def ok(answer: httpx.Response) -> None:
        assert answer.status_code == 200, answer.text

    ok(api.post("/api/v1/products", json={"id": PRODUCT, "displayName": "Metered"}))
    for ref, units, plural, meter in (
        ("m-seats", "seat", "seats", "FLUCTUATING"),
        ("m-tokens", "token", "tokens", "INCREMENTAL"),
        ("m-calls", "call", "calls", "INCREMENTAL"),
    ):
        body = {
            "id": ref,
            "displayName": ref,
            "featureType": "NUMBER",
            "meterType": meter,
            "featureUnits": units,
            "featureUnitsPlural": plural,
        }
        ok(api.post("/api/v1/features", json=body))
    ok(api.post("/api/v1/plans", json={"id": "metered", "displayName": "Metered", "productId": PRODUCT}))
    entitlements = [
        {"type": "FEATURE", "id": "m-seats", "usageLimit": 50},
        {"type": "FEATURE", "id": "m-calls", "usageLimit": 1000, "resetPeriod": "MONTH"},
        {"type": "FEATURE", "id": "m-tokens", "hasUnlimitedUsage": True, "resetPeriod": "MONTH"},
    ]
    ok(api.post("/api/v1/plans/metered/entitlements", json={"entitlements": entitlements}))
    tiers = [
        {"upTo": 1000, "unitPrice": {"amount": "0.01", "currency": "usd"}},
        {"unitPrice": {"amount": "0.005", "currency": "usd"}},
    ]
    charges = {
        "pricingType": "PAID",
        "pricingModels": [
            {"billingModel": "FLAT_FEE", "pricePeriods": [_price("19.99")]},
            {
                "billingModel": "PER_UNIT",
                "featureId": "m-seats",
                "minUnitQuantity": 2,
                "maxUnitQuantity": 20,
                "pricePeriods": [_price("12.50")],
            },
            {
                "billingModel": "USAGE_BASED",
                "featureId": "m-tokens",
                "tiersMode": "GRADUATED",
                "pricePeriods": [_price(tiers=tiers)],
            },
        ],
        "overagePricingModels": [{"featureId": "m-calls", "pricePeriods": [_price("0.002")]}],
    }
    ok(api.patch("/api/v1/plans/metered", json={"charges": charges}))
    # An add-on of the plan, sold up to 3 at a time.
    addon = {"id": "m-boost", "displayName": "Boost", "productId": PRODUCT, "maxQuantity": 3}
    ok(api.post("/api/v1/addons", json=addon))
    boost = {"pricingType": "PAID", "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": [_price("5")]}]}
    ok(api.patch("/api/v1/addons/m-boost", json={"charges": boost}))
    ok(api.post("/api/v1/addons/m-boost/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    ok(api.patch("/api/v1/plans/metered", json={"compatibleAddonIds": ["m-boost"]}))
    ok(api.post("/api/v1/plans/metered/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    # A plan tried for a month, as the console and the API set it.
    ok(api.post("/api/v1/plans", json={"id": "tried", "displayName": "Tried", "productId": PRODUCT}))
    annual = {"billingPeriod": "ANNUALLY", "price": {"amount": "490", "currency": "usd"}}
    flat = {
        "pricingType": "PAID",
        "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": [_price("49"), annual]}],
    }
    # A fee written to a tenth of a cent: charged rounded to the cent, as the preview and the invoice do.
    ok(api.post("/api/v1/plans", json={"id": "odd", "displayName": "Odd", "productId": PRODUCT}))
    odd = {"pricingType": "PAID", "pricingModels": [{"billingModel": "FLAT_FEE", "pricePeriods": [_price("9.999")]}]}
    ok(api.patch("/api/v1/plans/odd", json={"charges": odd}))
    ok(api.post("/api/v1/plans/odd/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    trial = {"duration": 1, "units": "MONTH"}
    ok(api.patch("/api/v1/plans/tried", json={"charges": flat, "defaultTrialConfig": trial}))
    ok(api.post("/api/v1/plans/tried/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    # A plan whose calls cost credits: 2 gems a call, besides its fee.
    ok(api.post("/api/v1/credits/custom-currencies", json={"id": "gems", "displayName": "Gems"}))
    ok(api.post("/api/v1/plans", json={"id": "credits", "displayName": "Credits", "productId": PRODUCT}))
    rate = {"billingPeriod": "MONTHLY", "creditRate": {"amount": 2, "currencyId": "gems"}}
    priced = {
        "pricingType": "PAID",
        "pricingModels": [
            {"billingModel": "FLAT_FEE", "pricePeriods": [_price("9")]},
            {"billingModel": "CREDIT_BASED", "featureId": "m-calls", "pricePeriods": [rate]},
        ],
    }
    ok(api.patch("/api/v1/plans/credits", json={"charges": priced}))
    ok(api.post("/api/v1/plans/credits/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    ok(api.post("/api/v1/plans", json={"id": "day", "displayName": "Day", "productId": PRODUCT}))
    day = {"duration": 1, "units": "DAY"}
    ok(api.patch("/api/v1/plans/day", json={"charges": flat, "defaultTrialConfig": day}))
    ok(api.post("/api/v1/plans/day/publish", json={"migrationType": "NEW_CUSTOMERS"}))


def _document(base_url: str, client_key: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8">
<script type="module" src="{base_url}/widgets/v1/entitle.js"></script></head><body>
<entitle-pricing-table product-id="{PRODUCT}" client-key="{client_key}" locale="en-US"></entitle-pricing-table>
<entitle-checkout product-id="{PRODUCT}" client-key="{client_key}" locale="en-US"></entitle-checkout>
</body></html>"""


@pytest.fixture(scope="module")
def shop(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    data_dir = tmp_path_factory.mktemp("widget-prices")
    shutil.copyfile(sqlite_template, data_dir / "entitle.db")
    with running_server(f"sqlite:///{data_dir / 'entitle.db'}", data_dir) as (base_url, db):
        server = LiveServer(base_url, db, create_key(db, "development", KeyKind.SERVER), data_dir)
        with server.http() as api:
            _build_catalog(api)
        yield server, server.key("development", KeyKind.CLIENT)


@pytest.fixture
def page(shop: tuple[LiveServer, str], browser_page: Any) -> Any:
    server, client_key = shop
    browser_page.set_default_timeout(15_000)
    browser_page.on("console", lambda message: print("console:", message.text))
    document = _document(server.base_url, client_key)
    browser_page.route(f"{server.base_url}{PAGE}", lambda route: route.fulfill(body=document, content_type="text/html"))
    browser_page.goto(f"{server.base_url}{PAGE}")
    browser_page.locator("entitle-pricing-table [data-plan-id=metered]").wait_for()
    return browser_page


def _new_customer(server: LiveServer) -> str:
    ref = f"buyer-{next(_buyers)}"
    with server.http() as api:
        answer = api.post("/api/v1/customers", json={"id": ref, "name": ref, "email": f"{ref}@example.com"})
        assert answer.status_code == 200, answer.text
    return ref


def _checkout(page: Any, server: LiveServer, customer: str, plan: str) -> None:
    """The page's checkout opened for `customer` (with a token of its own) on `plan`."""
    page.evaluate(
        "([id, token, plan]) => { const el = document.querySelector('entitle-checkout');"
        " el.setAttribute('customer-token', token); el.setAttribute('customer-id', id);"
        " el.setAttribute('plan-id', plan); }",
        [customer, token_for(server, customer), plan],
    )


def test_checkout_asks_only_for_seats_and_subscribes_to_a_plan_with_usage_and_overage_charges(
    shop: tuple[LiveServer, str], page: Any
) -> None:
    server, _ = shop
    customer = _new_customer(server)
    _checkout(page, server, customer, "metered")
    checkout = page.locator("entitle-checkout")
    checkout.locator("[data-testid=due-today]").wait_for()
    # Tokens and calls are billed as they are used: a customer chooses only how many seats it buys.
    assert checkout.locator("[data-charge]").evaluate_all("inputs => inputs.map(i => i.dataset.charge)") == ["m-seats"]
    checkout.locator("[data-charge=m-seats]").fill("3")
    page.wait_for_function(
        "document.querySelector('entitle-checkout').shadowRoot.querySelector('[data-testid=due-today]')"
        "?.textContent === '$57.49'"  # 19.99 + 3 x 12.50
    )
    checkout.locator("[data-action=pay]").click()
    completed = checkout.locator("[data-testid=completed]")
    completed.wait_for()
    assert completed.inner_text() == "You are subscribed to Metered."
    with server.http() as api:
        subscriptions = api.get("/api/v1/subscriptions", params={"customerId": customer}).json()["data"]
    bought = [s for s in subscriptions if s["planId"] == "metered"]
    assert [s["status"] for s in bought] == ["ACTIVE"], subscriptions


def test_the_pricing_table_shows_rates_below_a_cent_exactly(page: Any) -> None:
    card = page.locator("entitle-pricing-table [data-plan-id=metered]")
    assert card.locator("[data-testid=price]").inner_text() == "$19.99 / month"
    tiers = card.locator("[part~=tiers]").inner_text()
    # $0.005 a token is not "$0.01": a rate is shown to its last digit, an amount in cents as usual.
    assert "1\u20131,000: $0.01 / token" in tiers and "1,001+: $0.005 / token" in tiers, tiers
    assert "$12.50 per seat / month" in card.locator("[part~=unit-price]").all_inner_texts()
    # A fee is what a period costs: in cents, as the checkout charges it ($9.999 is charged $10.00).
    fee = page.locator("entitle-pricing-table [data-plan-id=odd] [data-testid=price]")
    assert fee.inner_text() == "$10.00 / month"


def test_the_pricing_table_says_an_overage_is_charged_beyond_the_limit(page: Any) -> None:
    card = page.locator("entitle-pricing-table [data-plan-id=metered]")
    rates = card.locator("[part~=unit-price]").all_inner_texts()
    # The plan's 1,000 calls a month are included: its $0.002 a call is for the calls beyond them.
    assert "$0.002 per call beyond the limit" in rates, rates
    assert "1,000 calls / month" in card.locator("[part~=entitlements] li").all_inner_texts()


def test_a_trial_of_a_month_is_offered_as_a_month(page: Any) -> None:
    card = page.locator("entitle-pricing-table [data-plan-id=tried]")
    # Not "30-day": a month's trial ends on the same day of the next month, 28 to 31 days on.
    assert card.locator("[part~=trial-badge]").inner_text() == "1-month free trial"
    assert card.locator("[part~=plan-button]").get_attribute("data-intention") == "start-trial"


def test_a_token_refused_while_paying_shows_the_error_state_and_tells_the_page(
    shop: tuple[LiveServer, str], page: Any
) -> None:
    """docs/widgets.md: a refused token shows the widget's error state and fires `entitle:error`, so the page
    hands it a new token. Here the token stops being valid after the checkout loaded (the signing secret
    rotated without grace): paying is refused, nothing is bought, and the page hears of it."""
    server, _ = shop
    customer = _new_customer(server)
    page.evaluate(
        "() => { window.entitleErrors = [];"
        " document.addEventListener('entitle:error', (e) => window.entitleErrors.push(e.detail)); }"
    )
    _checkout(page, server, customer, "metered")
    checkout = page.locator("entitle-checkout")
    checkout.locator("[data-testid=due-today]").wait_for()
    rotate_signing_secret(server.db, secret_box(server.data_dir), "development", timedelta(0))
    checkout.locator("[data-action=pay]").click()
    error = checkout.locator("[part~=error][data-code=UNAUTHENTICATED]")
    error.wait_for()
    assert "session has expired" in error.inner_text()
    assert page.evaluate("window.entitleErrors.map((d) => d.code)") == ["UNAUTHENTICATED"]
    with server.http() as api:
        subscriptions = api.get("/api/v1/subscriptions", params={"customerId": customer}).json()["data"]
    assert [s["planId"] for s in subscriptions if s["status"] in ("ACTIVE", "IN_TRIAL")] == []
    # A new token, and the checkout works again.
    page.evaluate(
        "(token) => document.querySelector('entitle-checkout').setAttribute('customer-token', token)",
        token_for(server, customer),
    )
    checkout.locator("[data-testid=due-today]").wait_for()


def test_the_checkout_asks_for_seats_within_the_prices_range(shop: tuple[LiveServer, str], page: Any) -> None:
    """Seats are sold from 2 to 20 (the price's minUnitQuantity and maxUnitQuantity): the checkout starts at 2,
    not at a quantity provisioning refuses, and says the range instead of paying for 21."""
    server, _ = shop
    customer = _new_customer(server)
    _checkout(page, server, customer, "metered")
    checkout = page.locator("entitle-checkout")
    seats = checkout.locator("[data-charge=m-seats]")
    page.wait_for_function(
        "document.querySelector('entitle-checkout').shadowRoot.querySelector('[data-testid=due-today]')"
        "?.textContent === '$44.99'"  # 19.99 + 2 x 12.50
    )
    assert (seats.input_value(), seats.get_attribute("min"), seats.get_attribute("max")) == ("2", "2", "20")
    seats.fill("21")
    checkout.locator("[data-action=pay]").click()
    refused = checkout.locator("[data-testid=payment-error]")
    refused.wait_for()
    assert refused.inner_text() == "Choose from 2 to 20 seats."
    assert seats.get_attribute("aria-invalid") == "true"
    # An add-on beyond its maximum is said the same way, by its name (not "add-on 'm-boost' allows at most 3").
    seats.fill("20")
    boost = checkout.locator("[data-addon=m-boost]")
    boost.fill("4")
    checkout.locator("[data-action=pay]").click()
    page.wait_for_function(
        "document.querySelector('entitle-checkout').shadowRoot.querySelector('[data-testid=payment-error]')"
        "?.textContent === 'Choose from 0 to 3 of Boost.'"
    )
    assert boost.get_attribute("aria-invalid") == "true"
    boost.fill("0")
    with server.http() as api:
        assert api.get("/api/v1/subscriptions", params={"customerId": customer}).json()["data"] == []
    seats.fill("20")
    checkout.locator("[data-action=pay]").click()
    checkout.locator("[data-testid=completed]").wait_for()
    with server.http() as api:
        bought = api.get("/api/v1/subscriptions", params={"customerId": customer}).json()["data"]
    assert [(s["planId"], s["status"]) for s in bought] == [("metered", "ACTIVE")]


def test_the_pricing_table_and_the_checkout_work_from_the_keyboard(shop: tuple[LiveServer, str], page: Any) -> None:
    """The period toggle is a named group; choosing a period with the keyboard keeps the focus on it (the
    table is drawn again); each plan's button is described by its plan's name; the checkout's summary is
    announced as it changes, and its period select keeps the focus too."""
    toggle = page.get_by_role("group", name="Billing period")
    annually = toggle.get_by_role("button", name="Annually")
    annually.focus()
    page.keyboard.press("Enter")
    tried = page.locator("entitle-pricing-table [data-plan-id=tried]")
    page.wait_for_function(
        "document.querySelector('entitle-pricing-table').shadowRoot"
        ".querySelector('[data-plan-id=tried] [data-testid=price]')?.textContent.includes('490')"
    )
    assert annually.get_attribute("aria-pressed") == "true"
    focused = "(selector) => document.querySelector(selector).shadowRoot.activeElement?.outerHTML || ''"
    assert 'data-period="ANNUALLY"' in page.evaluate(focused, "entitle-pricing-table")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # back to monthly, from the keyboard alone
    page.wait_for_function(
        "document.querySelector('entitle-pricing-table').shadowRoot"
        ".querySelector('[data-plan-id=tried] [data-testid=price]')?.textContent.includes('49.00 / month')"
    )
    expect(tried.locator("[part~=plan-button]")).to_have_accessible_description("Tried")

    server, _ = shop
    customer = _new_customer(server)
    _checkout(page, server, customer, "tried")
    checkout = page.locator("entitle-checkout")
    assert checkout.locator("[data-testid=summary]").get_attribute("aria-live") == "polite"
    period = checkout.locator("[data-field=period]")
    period.focus()
    period.select_option("ANNUALLY")
    page.wait_for_function(
        "document.querySelector('entitle-checkout').shadowRoot.querySelector('[data-testid=due-today]')"
        "?.textContent === '$490.00' || document.querySelector('entitle-checkout').shadowRoot"
        ".querySelector('[data-testid=summary]')?.textContent.includes('$490.00')"
    )
    assert 'data-field="period"' in page.evaluate(focused, "entitle-checkout")


def _portal_of(server: LiveServer, client_key: str, page: Any, customer: str) -> None:
    page.evaluate(
        "([key, id, token]) => { const el = document.createElement('entitle-customer-portal');"
        " el.setAttribute('client-key', key); el.setAttribute('locale', 'en-US');"
        " el.setAttribute('customer-token', token); el.setAttribute('customer-id', id);"
        " document.body.appendChild(el); }",
        [client_key, customer, token_for(server, customer)],
    )


def test_the_portal_counts_down_the_last_day_of_a_trial_in_the_singular(
    shop: tuple[LiveServer, str], page: Any
) -> None:
    server, client_key = shop
    customer = _new_customer(server)
    with server.http() as api:
        answer = api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": "day"})
        assert answer.status_code == 200 and answer.json()["data"]["subscription"]["status"] == "IN_TRIAL", answer.text
    _portal_of(server, client_key, page, customer)
    countdown = page.locator("entitle-customer-portal [data-testid=trial-countdown]")
    assert countdown.inner_text() == "Trial ends in 1 day"  # not "1 days"


def test_a_price_in_credits_says_what_a_unit_costs_in_credits(page: Any) -> None:
    card = page.locator("entitle-pricing-table [data-plan-id=credits]")
    assert card.locator("[data-testid=price]").inner_text() == "$9.00 / month"
    # Not " per call / month" (a price with no amount): the credits each call costs.
    assert card.locator("[part~=unit-price]").all_inner_texts() == ["2 gems per call"]


def test_the_portal_shows_no_empty_price_for_a_plans_credit_rate(shop: tuple[LiveServer, str], page: Any) -> None:
    server, client_key = shop
    customer = _new_customer(server)
    with server.http() as api:
        answer = api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": "credits"})
        assert answer.status_code == 200, answer.text
    _portal_of(server, client_key, page, customer)
    subscription = page.locator("entitle-customer-portal [data-testid=subscription][data-plan-id=credits]")
    assert subscription.locator("[data-testid=subscription-price]").inner_text() == "$9.00 / month"
    assert "per call" not in subscription.inner_text()  # was " per call / month": a price with no amount
