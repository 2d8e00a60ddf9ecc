"""The embeddable widgets (issue 15) in a real headless Chromium, on the `/demo` page, with Stripe.js from
the local emulator (never the internet): the pricing table's prices follow the period toggle and the
country; choosing Pro opens the checkout, a declined card shows an error and grants nothing, a test card
completes it (ACTIVE), and the portal shows the plan and moving usage bars; a scheduled downgrade is
cancelled from the portal; a widget given another customer's id with this customer's token shows its
error state and the server refuses it.

One SQLite-backed server for the module (the routes' rules run on both databases in test_widgets_api.py).
Each widget is photographed into test-output/screenshots/.
"""

from __future__ import annotations

import copy
import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from sqlalchemy import select

from entitle.billing.models import BillingLink
from entitle.billing.secrets import ENV_VAR
from entitle.catalog import demo as demo_catalog
from entitle.catalog.coupons.models import Coupon
from entitle.catalog.products import service as products
from entitle.catalog.products.schemas import ProductCreate
from entitle.db import Database
from entitle.environments.access import signing_secret
from entitle.environments.models import KeyKind
from entitle.environments.service import create_key, ensure_environment
from entitle.jobs.service import Worker
from entitle.sdk.tokens import customer_token
from entitle.secrets import secret_box
from entitle.widgets import demo as widgets_demo
from entitle.widgets.demo import DEMO_CUSTOMER
from tests.billing.conftest import SESSION_KEY, card_customer, connect_stripe
from tests.billing.test_stripe_coupon_sync import discount_coupon
from tests.support.http import SSL_CONTEXT
from tests.support.server import running_server
from tests.support.stripe_emulator import StripeEmulator

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
DECLINED = "4000000000000002"
VISA = "4242424242424242"


@dataclass
class Demo:
    base_url: str
    db: Database
    api: httpx.Client
    data_dir: Path
    emulator: StripeEmulator


_fresh = itertools.count()


def shoot(locator: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SCREENSHOTS / f"widget-{name}.png"))


def _seats(**price: Any) -> dict[str, Any]:
    return {"billingModel": "PER_UNIT", "featureId": "seats", "pricePeriods": [{"billingPeriod": "MONTHLY", **price}]}


# A second product, priced per seat: a flat per-unit price with a trial, and graduated tiers.
TEAM_PLANS: list[dict[str, Any]] = [
    {
        "create": {"id": "team", "displayName": "Team", "productId": "team-saas"},
        "entitlements": [{"type": "FEATURE", "id": "sso"}, {"type": "FEATURE", "id": "seats", "usageLimit": 500}],
        "update": {
            "charges": {"pricingType": "PAID", "pricingModels": [_seats(price={"amount": 8, "currency": "usd"})]},
            "defaultTrialConfig": {"duration": 7, "units": "DAY", "trialEndBehavior": "CONVERT_TO_PAID"},
        },
    },
    {
        "create": {"id": "scale", "displayName": "Scale", "productId": "team-saas"},
        "entitlements": [{"type": "FEATURE", "id": "sso"}, {"type": "FEATURE", "id": "seats", "usageLimit": 500}],
        "update": {
            "charges": {
                "pricingType": "PAID",
                "pricingModels": [
                    {
                        **_seats(
                            tiers=[
                                {"upTo": 10, "unitPrice": {"amount": 5, "currency": "usd"}},
                                {"unitPrice": {"amount": 4, "currency": "usd"}},
                            ]
                        ),
                        "tiersMode": "GRADUATED",
                    }
                ],
            }
        },
    },
]


def _catalog_without_trial() -> list[dict[str, Any]]:
    # The demo's Pro has a 14-day trial; bought here it must start paid (ACTIVE), so this copy has none.
    plans = copy.deepcopy(demo_catalog.PLANS)
    for plan in plans:
        plan["update"].pop("defaultTrialConfig", None)
    return plans


@pytest.fixture(scope="module")
def demo(
    chromium: Any,
    stripe_emulator_session: StripeEmulator,
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Demo]:
    stripe_emulator_session.reset()
    # The module's server outlives the per-test key (billing conftest's `secret_key`): the same key, held longer.
    environment = pytest.MonkeyPatch()
    environment.setenv(ENV_VAR, SESSION_KEY)
    data_dir = tmp_path_factory.mktemp("widgets-browser")
    shutil.copyfile(sqlite_template, data_dir / "entitle.db")
    with running_server(f"sqlite:///{data_dir / 'entitle.db'}", data_dir) as (base_url, db):
        key = create_key(db, "development", KeyKind.SERVER)
        with httpx.Client(base_url=base_url, headers={"X-API-KEY": key}, timeout=30, verify=SSL_CONTEXT) as api:
            connect_stripe(api, stripe_emulator_session)
            env_pk = ensure_environment(db, "development").pk
            with mock.patch.object(demo_catalog, "PLANS", _catalog_without_trial()):
                demo_catalog.load_catalog(db, env_pk)
            products.create_product(
                db, env_pk, ProductCreate.model_validate({"id": "team-saas", "displayName": "Team"})
            )
            for plan in TEAM_PLANS:
                demo_catalog._package(db, env_pk, "PLAN", plan)
            Worker(db).drain()  # the catalog reaches Stripe
            widgets_demo.prepare(db, secret_box(data_dir), data_dir, demo_catalog.PRODUCT_ID)  # `entitle demo`
            try:
                yield Demo(base_url, db, api, data_dir, stripe_emulator_session)
            finally:
                environment.undo()


@pytest.fixture
def page(demo: Demo, browser_page: Any) -> Any:
    browser_page.set_default_timeout(15_000)
    browser_page.on("console", lambda message: print("console:", message.text))
    browser_page.set_viewport_size({"width": 1200, "height": 900})
    browser_page.goto(f"{demo.base_url}/demo")
    browser_page.locator("entitle-pricing-table [part~=plan]").first.wait_for()
    return browser_page


def as_new_customer(demo: Demo, page: Any, selector: str) -> str:
    """Point a widget of the page at a new customer (on the Free start plan), with that customer's token."""
    ref = f"fresh-{next(_fresh)}"
    answer = demo.api.post("/api/v1/customers", json={"id": ref, "name": ref, "email": f"{ref}@example.com"})
    assert answer.status_code == 200, answer.text
    return point_at(demo, page, selector, ref)


def point_at(demo: Demo, page: Any, selector: str, ref: str) -> str:
    """Point a widget of the page at customer `ref`, with that customer's token."""
    token = customer_token(signing_secret(demo.db, secret_box(demo.data_dir), "development"), ref)
    page.evaluate(
        "([selector, ref, token]) => { const el = document.querySelector(selector);"
        " el.setAttribute('customer-token', token); el.setAttribute('customer-id', ref); }",
        [selector, ref, token],
    )
    settle(page, selector)
    return ref


def settle(page: Any, selector: str) -> None:
    """Wait until the widget shows what its attributes now say (it is `aria-busy` while it reloads)."""
    page.wait_for_function("(selector) => !document.querySelector(selector).hasAttribute('aria-busy')", arg=selector)


def plan_card(page: Any, plan: str) -> Any:
    return page.locator(f"entitle-pricing-table [data-plan-id={plan}]")


def test_pricing_table_prices_follow_the_period_toggle_and_the_country(demo: Demo, page: Any) -> None:
    as_new_customer(demo, page, "entitle-pricing-table")
    page.wait_for_function(
        "document.querySelector('entitle-pricing-table').shadowRoot.querySelector('[part~=current-badge]')"
    )
    table = page.locator("entitle-pricing-table")
    assert [c.get_attribute("data-plan-id") for c in table.locator("[part~=plan]").all()] == [
        "free",
        "pro",
        "enterprise",
    ]
    pro = plan_card(page, "pro")
    assert pro.locator("[data-testid=price]").inner_text() == "$29.00 / month"
    assert "Everything in Free, plus:" in pro.inner_text()
    # A limit's unit that names the feature stands alone; one that does not follows the feature's name.
    listed = pro.locator("li").all_inner_texts()
    assert "10 seats" in listed and "Data retention: 30 days" in listed, listed
    assert "5 extra seats ($15.00 / month)" in pro.inner_text()
    free = plan_card(page, "free")
    assert free.locator("[part~=current-badge]").inner_text() == "Current plan"
    assert free.locator("[part~=plan-button]").is_disabled()
    assert pro.locator("[part~=plan-button]").inner_text() == "Upgrade"
    enterprise = plan_card(page, "enterprise").locator("[part~=plan-button]")
    assert enterprise.inner_text() == "Contact sales"
    assert enterprise.get_attribute("data-intention") == "contact-sales"
    shoot(table, "pricing-table")

    table.locator("[data-period=ANNUALLY]").click()
    assert pro.locator("[data-testid=price]").inner_text() == "$290.00 / year"
    table.locator("[data-period=MONTHLY]").click()
    page.evaluate("document.querySelector('entitle-pricing-table').setAttribute('billing-country-code', 'DE')")
    page.wait_for_function(
        "document.querySelector('entitle-pricing-table').shadowRoot"
        ".querySelector('[data-plan-id=pro] [data-testid=price]')?.textContent.includes('€')"
    )
    assert pro.locator("[data-testid=price]").inner_text() == "€27.00 / month"


def test_per_unit_and_tiered_prices_are_explained_and_a_trial_is_offered(demo: Demo, page: Any) -> None:
    page.evaluate("document.querySelector('entitle-pricing-table').setAttribute('product-id', 'team-saas')")
    as_new_customer(demo, page, "entitle-pricing-table")
    team = plan_card(page, "team")
    team.wait_for()
    assert team.locator("[part~=trial-badge]").inner_text() == "7-day free trial"
    button = team.locator("[part~=plan-button]")
    assert (button.inner_text(), button.get_attribute("data-intention")) == ("Start free trial", "start-trial")
    assert team.locator("[part~=unit-price]").inner_text() == "$8.00 per seat / month"
    tiers = plan_card(page, "scale").locator("[part~=tiers]").inner_text()
    assert "seat pricing / month, each unit at its own tier" in tiers
    assert "1\u201310: $5.00 / seat" in tiers and "11+: $4.00 / seat" in tiers  # an en dash between bounds
    scale = plan_card(page, "scale").locator("[part~=plan-button]")
    assert (scale.inner_text(), scale.get_attribute("data-intention")) == ("Choose plan", "subscribe")
    shoot(page.locator("entitle-pricing-table"), "pricing-table-per-seat")

    # The checkout asks how many seats and prices them by the tiers: 10 x $5 + 2 x $4.
    as_new_customer(demo, page, "entitle-checkout")
    page.evaluate("document.querySelector('entitle-checkout').setAttribute('plan-id', 'scale')")
    checkout = page.locator("entitle-checkout")
    due = checkout.locator("[data-testid=due-today]")
    due.wait_for()
    assert due.inner_text() == "$5.00"
    checkout.locator("[data-charge=seats]").fill("12")
    page.wait_for_function(
        "document.querySelector('entitle-checkout').shadowRoot.querySelector('[data-testid=due-today]')"
        "?.textContent === '$58.00'"
    )

    # Team's trial needs no payment to start: the customer is told at once that it is subscribed.
    # The scale plan's card field goes at once, in the same task as the change, and the widget says it is
    # busy: the card to fill is the team plan's. Both are read in that task, since the reload that follows
    # can finish before a second round trip from the test would look.
    card_fields, busy = page.evaluate(
        "() => { const el = document.querySelector('entitle-checkout'); el.setAttribute('plan-id', 'team');"
        " return [document.querySelectorAll('entitle-checkout [data-entitle-card]').length,"
        " el.getAttribute('aria-busy')]; }"
    )
    assert (card_fields, busy) == (0, "true")
    page.locator("entitle-checkout [data-entitle-card] input[placeholder=number]").wait_for()
    assert "Team" in checkout.locator("[part~=title]").inner_text()
    _fill_card(page, VISA)
    checkout.locator("[data-action=pay]").click()
    completed = checkout.locator("[data-testid=completed]")
    completed.wait_for()
    assert (completed.get_attribute("data-status"), completed.inner_text()) == (
        "IN_TRIAL",
        "You are subscribed to Team.",
    )


def test_theming_through_custom_properties_parts_and_text_overrides(page: Any) -> None:
    page.add_style_tag(
        content="entitle-pricing-table { --entitle-accent: rgb(200, 0, 0); }"
        " entitle-pricing-table::part(plan-name) { text-transform: uppercase; }"
    )
    page.evaluate("document.querySelector('entitle-pricing-table').texts = {upgrade: 'Go Pro'}")
    button = plan_card(page, "pro").locator("[part~=plan-button]")
    page.wait_for_function(
        "document.querySelector('entitle-pricing-table').shadowRoot"
        ".querySelector('[data-plan-id=pro] [part~=plan-button]')?.textContent === 'Go Pro'"
    )
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(200, 0, 0)"
    name = plan_card(page, "pro").locator("[part~=plan-name]")
    assert name.evaluate("n => getComputedStyle(n).textTransform") == "uppercase"
    # The `texts` attribute (JSON) overrides too, below the property.
    page.evaluate(
        "document.querySelector('entitle-pricing-table')"
        ".setAttribute('texts', JSON.stringify({upgrade: 'Ignored', contactSales: 'Talk to us'}))"
    )
    page.wait_for_function(
        "document.querySelector('entitle-pricing-table').shadowRoot"
        ".querySelector('[data-plan-id=enterprise] [part~=plan-button]')?.textContent === 'Talk to us'"
    )
    assert button.inner_text() == "Go Pro"


def _fill_card(page: Any, number: str) -> None:
    card = page.locator("entitle-checkout [data-entitle-card]")
    card.locator("input[placeholder=number]").fill(number)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("40")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("10115")


def _subscriptions(demo: Demo, status: str = "ACTIVE,IN_TRIAL") -> list[dict[str, Any]]:
    answer = demo.api.get("/api/v1/subscriptions", params={"customerId": DEMO_CUSTOMER, "status": status})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def test_checkout_declined_then_paid_portal_shows_plan_usage_and_cancels_a_scheduled_downgrade(
    demo: Demo, page: Any
) -> None:
    assert page.get_by_test_id("demo-note").count() == 0  # the emulator runs: no note about starting it
    page.evaluate("document.addEventListener('entitle:checkout-completed', e => { window.completed = e.detail; })")
    page.evaluate("document.addEventListener('entitle:plan-selected', e => { window.selected = e.detail; })")
    plan_card(page, "pro").locator("[part~=plan-button]").click()
    selected = page.evaluate("({...window.selected, plan: window.selected.plan.id})")
    assert selected == {"planId": "pro", "plan": "pro", "billingPeriod": "MONTHLY", "intention": "upgrade"}
    checkout = page.locator("entitle-checkout")
    checkout.locator("[part~=title]").wait_for()
    assert checkout.locator("[part~=title]").inner_text() == "Subscribe to Pro"
    # The card field is Stripe's (the emulator's Stripe.js), in the light DOM: outside every shadow root.
    card_input = page.locator("entitle-checkout [data-entitle-card] input[placeholder=number]")
    card_input.wait_for()
    assert page.evaluate(
        "document.querySelector('entitle-checkout > [data-entitle-card] input').getRootNode() === document"
    )
    scripts = page.evaluate("[...document.scripts].map(s => s.src).filter(Boolean)")
    assert any(src.endswith("/js.stripe.com/v3/") and src.startswith("http://127.0.0.1") for src in scripts)
    checkout.locator("[data-addon=extra-seats]").fill("2")
    page.wait_for_function(
        "document.querySelector('entitle-checkout').shadowRoot.querySelector('[data-testid=due-today]')"
        "?.textContent === '$59.00'"
    )

    _fill_card(page, DECLINED)
    checkout.locator("[data-action=pay]").click()
    error = checkout.locator("[data-testid=payment-error]")
    error.wait_for()
    assert "declined" in error.inner_text().lower()
    assert [s["planId"] for s in _subscriptions(demo)] == ["free"]  # nothing granted
    shoot(checkout, "checkout-declined")

    _fill_card(page, VISA)
    checkout.locator("[data-action=pay]").click()
    page.wait_for_function("window.completed !== undefined")
    detail = page.evaluate("window.completed")
    assert detail["planId"] == "pro"
    (sub,) = _subscriptions(demo, "PAYMENT_PENDING")  # activated once Stripe has charged the card
    completed = checkout.locator("[data-testid=completed]")
    assert (completed.get_attribute("data-status"), completed.inner_text()) == (
        "PAYMENT_PENDING",
        "Your payment is being confirmed: Pro starts once it is paid.",
    )
    assert [s["planId"] for s in _subscriptions(demo)] == ["free"]  # Free is kept until Pro is paid for
    shoot(checkout, "checkout-completed")
    portal = page.locator("entitle-customer-portal")  # refreshed by the demo page on checkout-completed
    pending = portal.locator("[data-testid=subscription][data-plan-id=pro] [data-testid=payment-pending]")
    pending.wait_for()
    assert portal.locator("[data-testid=subscription][data-plan-id=free]").get_attribute("data-status") == "ACTIVE"
    Worker(demo.db).drain()  # the card and the subscription reach Stripe, which charges the card
    (sub,) = _subscriptions(demo)  # Free ended when Pro activated
    assert (sub["planId"], sub["status"]) == ("pro", "ACTIVE")
    assert sub["addons"] == [{"id": "extra-seats", "quantity": 2}]
    invoices = demo.api.get(f"/api/v1/customers/{DEMO_CUSTOMER}/invoices").json()["data"]
    assert [(i["state"], i["total"]) for i in invoices] == [("PAID", 59)]
    page.evaluate("document.querySelector('entitle-customer-portal').refresh()")
    portal.locator("[data-testid=subscription][data-plan-id=pro][data-status=ACTIVE]").wait_for()
    portal.locator("[data-testid=subscription][data-plan-id=free]").wait_for(state="detached")
    assert "$29.00" in portal.locator("[data-testid=subscription]").inner_text()
    assert "Add-ons: 5 extra seats \u00d7 2" in portal.locator("[data-testid=subscription]").inner_text()
    next_billing = portal.locator("[data-testid=subscription] [part~=next-billing]").inner_text()
    assert next_billing.startswith("Next billing date: ") and sub["currentBillingPeriodEnd"][:4] in next_billing
    assert portal.locator("[data-testid=payment-method]").inner_text().startswith("VISA •••• 4242 expires 12/2040")
    # Changing plan later pays with the card on file: no card field unless the customer asks for another.
    page.evaluate("document.querySelector('entitle-checkout').setAttribute('billing-period', 'ANNUALLY')")
    checkout.locator("[data-testid=saved-card]").wait_for()
    assert checkout.locator("[data-testid=saved-card]").inner_text() == "Card: VISA •••• 4242"
    # Monthly to annual is a change at the period's end: nothing due today, then the annual price.
    page.wait_for_function(
        "document.querySelector('entitle-checkout').shadowRoot.querySelector('[part~=summary]')"
        "?.textContent.includes('Then $290.00 / year')"
    )
    assert checkout.locator("[data-testid=due-today]").inner_text() == "$0.00"
    assert checkout.locator("[data-testid=scheduled-note]").inner_text() == (
        f"Nothing is due today: the change takes effect on {next_billing.removeprefix('Next billing date: ')},"
        " at the end of the current billing period."
    )
    assert page.locator("entitle-checkout [data-entitle-card]").count() == 0
    checkout.locator("[data-action=other-card]").click()
    card_input.wait_for()
    bar = portal.locator("[data-testid=usage][data-feature-id=api-calls]")
    assert bar.get_attribute("data-used") == "0"
    answer = demo.api.post(
        "/api/v2/usage", json={"usages": [{"customerId": DEMO_CUSTOMER, "featureId": "api-calls", "value": 250}]}
    )
    assert answer.status_code == 200, answer.text
    page.evaluate("document.querySelector('entitle-customer-portal').refresh()")
    page.wait_for_function(
        "document.querySelector('entitle-customer-portal').shadowRoot"
        ".querySelector('[data-feature-id=api-calls]')?.dataset.used === '250'"
    )
    assert "250 / 100,000 calls · resets " in bar.inner_text()

    # A downgrade to Free is scheduled for the period's end; the customer withdraws it from the portal.
    answer = demo.api.post("/api/v1/subscriptions", json={"customerId": DEMO_CUSTOMER, "planId": "free"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["isScheduled"] is True
    page.evaluate("document.querySelector('entitle-customer-portal').refresh()")
    change = portal.locator("[data-testid=scheduled-change]")
    change.wait_for()
    assert change.inner_text().startswith("Changes to Free on")
    shoot(portal, "customer-portal")
    page.evaluate("document.querySelector('entitle-pricing-table').refresh()")
    page.wait_for_function(
        "document.querySelector('entitle-pricing-table').shadowRoot"
        ".querySelector('[data-plan-id=free] [part~=plan-button]')?.dataset.intention === 'scheduled'"
    )
    assert plan_card(page, "free").locator("[part~=plan-button]").inner_text() == "Change scheduled"
    change.locator("[data-action=cancel-scheduled]").click()
    change.wait_for(state="detached")
    assert _subscriptions(demo)[0]["futureUpdates"] == []
    page.evaluate("document.querySelector('entitle-pricing-table').refresh()")
    page.wait_for_function(
        "document.querySelector('entitle-pricing-table').shadowRoot"
        ".querySelector('[data-plan-id=free] [part~=plan-button]')?.dataset.intention === 'downgrade'"
    )
    assert plan_card(page, "free").locator("[part~=plan-button]").inner_text() == "Downgrade"

    # Cancel at the period's end, after a confirmation ("Keep my plan" first changes nothing).
    subscription = portal.locator("[data-testid=subscription][data-plan-id=pro]")
    subscription.locator("[data-action=cancel]").click()
    subscription.locator("[data-action=keep]").click()
    assert subscription.locator("[data-action=confirm-cancel]").is_hidden()
    subscription.locator("[data-action=cancel]").click()
    subscription.locator("[data-action=confirm-cancel]").click()
    portal.locator("text=Ends on").wait_for()
    (sub,) = _subscriptions(demo)
    assert sub["status"] == "ACTIVE" and sub["cancellationDate"] == sub["currentBillingPeriodEnd"]


def test_the_portal_prices_a_subscription_with_its_add_ons_and_a_trialed_plan_offers_no_trial(
    demo: Demo, page: Any
) -> None:
    customer = f"fresh-{next(_fresh)}"
    card_customer(demo.api, demo.emulator, customer)
    for body in (
        {"planId": "pro", "addons": [{"id": "extra-seats", "quantity": 1}]},  # $29 + $15 a month
        {"planId": "team", "unitQuantity": 3},  # a 7-day trial, then 3 seats x $8
    ):
        answer = demo.api.post("/api/v1/subscriptions", json={"customerId": customer, **body})
        assert answer.status_code == 200, answer.text
    Worker(demo.db).drain()
    point_at(demo, page, "entitle-customer-portal", customer)
    portal = page.locator("entitle-customer-portal")
    pro = portal.locator("[data-testid=subscription][data-plan-id=pro]")
    pro.wait_for()
    assert pro.locator("[data-testid=subscription-price]").inner_text() == "$44.00 / month"
    assert pro.locator("[part~=plan-price]").inner_text() == "Pro: $29.00 / month"  # the plan's own, beside
    team = portal.locator("[data-testid=subscription][data-plan-id=team]")
    assert team.locator("[data-testid=subscription-price]").inner_text() == "$24.00 / month"

    # Team is being trialed: the pricing table says it is the current plan and offers no trial of it.
    page.evaluate("document.querySelector('entitle-pricing-table').setAttribute('product-id', 'team-saas')")
    point_at(demo, page, "entitle-pricing-table", customer)
    card = plan_card(page, "team")
    card.locator("[part~=current-badge]").wait_for()
    assert card.locator("[part~=trial-badge]").count() == 0
    assert card.locator("[part~=plan-button]").get_attribute("data-intention") == "current"


def test_another_customers_id_with_this_token_shows_the_error_state_and_is_refused(demo: Demo, page: Any) -> None:
    page.evaluate("document.querySelector('entitle-customer-portal').setAttribute('customer-id', 'someone-else')")
    error = page.locator("entitle-customer-portal [part~=error]").first
    error.wait_for()
    assert "session has expired or is not valid" in error.inner_text()
    assert error.get_attribute("data-code") == "UNAUTHENTICATED"
    shoot(page.locator("entitle-customer-portal"), "customer-portal-error")
    # The server refuses the same request made outside the widget.
    portal = page.locator("entitle-customer-portal")
    key, token = portal.get_attribute("client-key"), portal.get_attribute("customer-token")
    answer = httpx.get(
        f"{demo.base_url}/api/v1/widgets/customers/someone-else/subscriptions",
        headers={"X-API-KEY": key, "X-CUSTOMER-TOKEN": token},
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHENTICATED"


def test_unknown_product_and_unreachable_server_show_error_states_with_retry(demo: Demo, page: Any) -> None:
    page.evaluate("document.querySelector('entitle-pricing-table').setAttribute('product-id', 'no-such-product')")
    settle(page, "entitle-pricing-table")
    error = page.locator("entitle-pricing-table [part~=error]")
    error.wait_for()
    assert error.get_attribute("data-code") == "NOT_FOUND"
    assert "Product 'no-such-product' was not found." in error.inner_text()
    shoot(page.locator("entitle-pricing-table"), "pricing-table-error")

    # A custom-priced plan is sold by the sales team: the checkout shows why instead of a card field.
    page.evaluate("document.querySelector('entitle-checkout').setAttribute('plan-id', 'enterprise')")
    settle(page, "entitle-checkout")
    custom = page.locator("entitle-checkout [part~=error]")
    custom.wait_for()
    assert custom.get_attribute("data-code") == "CUSTOM_PRICED_PLAN"
    assert "contact sales" in custom.inner_text()
    assert page.locator("entitle-checkout [data-entitle-card]").count() == 0

    page.evaluate("document.querySelector('entitle-checkout').setAttribute('api-url', 'http://127.0.0.1:9')")
    page.evaluate("document.querySelector('entitle-checkout').setAttribute('plan-id', 'pro')")
    # The enterprise error stays on screen (busy) until the reload replaces it: waiting for "an error"
    # alone could read that one.
    settle(page, "entitle-checkout")
    unreachable = page.locator("entitle-checkout [part~=error]")
    unreachable.wait_for()
    assert unreachable.get_attribute("data-code") == "UNREACHABLE"
    assert "cannot be reached" in unreachable.inner_text()
    assert unreachable.locator("[part~=retry-button]").is_visible()


def test_hosted_checkout_redirects_to_stripe_checkout_for_the_chosen_plan(demo: Demo, page: Any) -> None:
    customer = as_new_customer(demo, page, "entitle-checkout")
    page.evaluate(
        "const c = document.querySelector('entitle-checkout');"
        " c.setAttribute('payment', 'hosted'); c.setAttribute('success-url', location.href);"
        " c.setAttribute('plan-id', 'pro');"
    )
    checkout = page.locator("entitle-checkout")
    checkout.locator("[data-testid=due-today]").wait_for()
    assert page.locator("entitle-checkout [data-entitle-card]").count() == 0  # no card field: Stripe's page takes it
    checkout.locator("[data-action=pay]").click()
    page.wait_for_url(f"{demo.emulator.api_base}/emulated/checkout/**")
    answer = demo.api.get("/api/v1/subscriptions", params={"customerId": customer, "status": "PAYMENT_PENDING"})
    assert [s["planId"] for s in answer.json()["data"]] == ["pro"]  # active once Stripe reports the payment


def _promotion_code(demo: Demo, coupon: str, code: str) -> str:
    """An Entitle coupon, synced to Stripe, and a Stripe promotion code for it."""
    answer = demo.api.post("/api/v1/coupons", json={"id": coupon, "name": coupon, "percentOff": 20})
    assert answer.status_code == 200, answer.text
    Worker(demo.db).drain()
    with demo.db.read() as s:
        billing_id = s.scalars(
            select(BillingLink.billing_id)
            .join(Coupon, Coupon.pk == BillingLink.entity_pk)
            .where(BillingLink.entity_kind == "COUPON", Coupon.ref_id == coupon)
        ).one()
    params: Any = {"promotion": {"type": "coupon", "coupon": billing_id}, "code": code}
    demo.emulator.client().v1.promotion_codes.create(params=params)
    return str(billing_id)


def test_a_promotion_code_discounts_the_live_summary_and_a_bad_one_can_be_corrected(demo: Demo, page: Any) -> None:
    coupon_billing_id = _promotion_code(demo, "spring-20", "SPRING")
    customer = as_new_customer(demo, page, "entitle-checkout")
    page.evaluate("document.querySelector('entitle-checkout').setAttribute('plan-id', 'pro')")
    checkout = page.locator("entitle-checkout")
    due = checkout.locator("[data-testid=due-today]")
    due.wait_for()
    assert due.inner_text() == "$29.00"

    code = checkout.locator("[data-field=promotionCode]")
    code.fill("NOPE")
    checkout.locator("[data-action=apply-code]").click()
    error = checkout.locator("[data-testid=promotion-error]")
    error.wait_for()
    assert "does not exist" in error.inner_text()
    assert code.get_attribute("aria-invalid") == "true"
    assert due.inner_text() == "$29.00" and checkout.locator("[data-testid=discount]").count() == 0
    checkout.locator("[data-action=pay]").click()  # refused here, before any card is taken
    assert checkout.locator("[data-testid=payment-error]").inner_text() == "Correct or remove the promotion code first."
    shoot(checkout, "checkout-promotion-refused")

    code.fill("SPRING")
    checkout.locator("[data-action=apply-code]").click()
    checkout.locator("[data-testid=discount]").wait_for()
    assert error.is_hidden() and checkout.locator("[data-testid=payment-error]").is_hidden()
    assert checkout.locator("[data-testid=subtotal]").inner_text() == "$29.00"
    assert checkout.locator("[data-testid=discount]").inner_text() == "\u2212$5.80"
    assert due.inner_text() == "$23.20"
    shoot(checkout, "checkout-promotion")

    _fill_card(page, VISA)
    checkout.locator("[data-action=pay]").click()
    checkout.locator("[data-testid=completed]").wait_for()
    Worker(demo.db).drain()
    answer = demo.api.get("/api/v1/subscriptions", params={"customerId": customer, "status": "ACTIVE"})
    (sub,) = answer.json()["data"]
    assert (sub["planId"], [c["id"] for c in sub["coupons"]]) == ("pro", ["spring-20"])
    # The code itself reached Stripe, on the subscription (the emulator's invoices leave discounts out).
    assert discount_coupon(demo.emulator, sub["billingId"]) == coupon_billing_id


def test_the_portal_counts_down_a_trial_links_invoice_pdfs_and_updates_the_card_at_stripe(
    demo: Demo, page: Any
) -> None:
    customer = f"fresh-{next(_fresh)}"
    card_customer(demo.api, demo.emulator, customer)  # a card on file: Stripe charges it for Pro
    point_at(demo, page, "entitle-customer-portal", customer)
    for body in ({"planId": "pro"}, {"planId": "team", "unitQuantity": 3}):  # Pro is paid, Team starts a trial
        answer = demo.api.post("/api/v1/subscriptions", json={"customerId": customer, **body})
        assert answer.status_code == 200, answer.text
    Worker(demo.db).drain()  # Stripe charges the card on file for Pro: a paid invoice
    page.evaluate("document.querySelector('entitle-customer-portal').refresh()")
    portal = page.locator("entitle-customer-portal")

    trial = portal.locator("[data-testid=subscription][data-plan-id=team] [data-testid=trial-countdown]")
    trial.wait_for()
    assert trial.inner_text() == "Trial ends in 7 days"
    assert portal.locator("[data-testid=subscription][data-plan-id=pro]").get_attribute("data-status") == "ACTIVE"
    # Team is another product than the portal's paywall (`product-id`): it is still named and priced.
    team = portal.locator("[data-testid=subscription][data-plan-id=team]")
    assert team.locator("[part~=plan-name]").inner_text() == "Team"
    assert team.locator("[part~=unit-price]").inner_text() == "3 seats \u00d7 $8.00 / month"  # its seats
    pro = portal.locator("[data-testid=subscription][data-plan-id=pro]")
    assert (pro.locator("[part~=plan-name]").inner_text(), pro.locator("[part~=price]").inner_text()) == (
        "Pro",
        "$29.00 / month",
    )

    # The invoice's PDF link is the provider's (the emulator serves one), and opens a PDF.
    link = portal.locator("[part~=invoice-link]")
    link.wait_for()
    with httpx.Client(base_url=demo.base_url, headers={"X-API-KEY": portal.get_attribute("client-key") or ""}) as c:
        c.headers["X-CUSTOMER-TOKEN"] = portal.get_attribute("customer-token") or ""
        (invoice,) = c.get(f"/api/v1/widgets/customers/{customer}/invoices").json()["data"]
    href = link.get_attribute("href")
    assert href == invoice["pdfUrl"] and href.startswith(f"{demo.emulator.api_base}/emulated/invoices/")
    assert link.inner_text() == "PDF" and link.get_attribute("target") == "_blank"
    pdf = httpx.get(href)
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    shoot(portal, "customer-portal-trial-invoices")

    # Adding to a paid plan mid-period: the checkout's summary credits the unused time of what is paid.
    point_at(demo, page, "entitle-checkout", customer)
    page.evaluate("document.querySelector('entitle-checkout').setAttribute('plan-id', 'pro')")
    settle(page, "entitle-checkout")
    checkout = page.locator("entitle-checkout")
    checkout.locator("[data-addon=extra-seats]").fill("2")
    page.wait_for_function(
        "document.querySelector('entitle-checkout').shadowRoot.querySelector('[part~=summary]')"
        "?.textContent.includes('Then $59.00 / month')"
    )
    summary = checkout.locator("[part~=summary]").inner_text()
    # About a whole month is left: the credit for Pro and both prices, each for the time that remains.
    assert "Unused time on Pro\t-$" in summary and "Remaining time on 5 extra seats \u00d7 2\t$" in summary

    # A portal whose paywall is another product's (Team's) still names the plan a scheduled change of Pro
    # moves to: the server names it from the catalog.
    answer = demo.api.post("/api/v1/subscriptions", json={"customerId": customer, "planId": "free"})
    assert answer.status_code == 200 and answer.json()["data"]["isScheduled"] is True, answer.text
    page.evaluate("document.querySelector('entitle-customer-portal').setAttribute('product-id', 'team-saas')")
    change = pro.locator("[data-testid=scheduled-change]")
    change.wait_for()
    assert change.inner_text().startswith("Changes to Free on")

    # "Update" opens a Stripe billing-portal session for this customer, which returns to the page.
    back = page.url
    portal.locator("[data-action=update-payment]").click()
    page.wait_for_url(f"{demo.emulator.api_base}/emulated/portal/**")
    assert page.locator("h1").inner_text() == "Billing portal (Stripe emulator)"
    stripe_customer = demo.api.get(f"/api/v1/customers/{customer}").json()["data"]["billingId"]
    assert stripe_customer and stripe_customer in page.locator("body").inner_text()
    assert page.get_by_role("link", name="Return").get_attribute("href") == back
