"""The console's credit pages in a real headless Chromium: create a currency, grant a customer credits
through the form, watch API consumption move the balance and the chart, void the grant. Photographed into
test-output/screenshots/ (credits-currencies, customer-credits)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_console_browser import Console, customer, shoot
from tests.test_console_browser import console as console

pytestmark = pytest.mark.browser


def test_grant_credits_watch_them_drawn_then_void(console: Console, chromium: Any) -> None:
    customer(console, "credited")
    page = console.admin.new_page()
    try:
        page.goto(f"{console.base_url}/console")
        page.get_by_role("navigation", name="Console sections").get_by_role("link", name="Credits").click()
        page.wait_for_url(f"{console.base_url}/console/credits")
        page.get_by_label("Currency id").fill("ai-credits")
        page.get_by_label("Display name").fill("AI credits")
        page.get_by_label("Singular unit").fill("credit")
        page.get_by_label("Plural unit").fill("credits")
        page.get_by_role("button", name="Create currency").click()
        page.wait_for_url(f"{console.base_url}/console/credits/currencies/ai-credits")
        assert page.get_by_role("heading", level=1).inner_text() == "Currency ai-credits"
        page.goto(f"{console.base_url}/console/credits")
        shoot(page, "credits-currencies")

        page.goto(f"{console.base_url}/console/customers/credited")
        page.get_by_role("link", name="Credits: balances, grants and ledger").click()
        page.wait_for_url(f"{console.base_url}/console/customers/credited/credits")
        page.get_by_label("Grant currency").select_option("ai-credits")
        page.get_by_label("Grant amount").fill("500")
        page.get_by_label("Grant name").fill("Monthly allowance")
        page.get_by_label("Grant type").select_option("PAID")
        page.get_by_role("button", name="Grant credits").click()
        page.wait_for_url(f"{console.base_url}/console/customers/credited/credits?currency=ai-credits")
        for n, amount in enumerate((120, 80.5)):
            used = {"customerId": "credited", "currencyId": "ai-credits", "amount": amount, "idempotencyKey": f"u{n}"}
            assert console.api.post("/api/v1/credits/consumption", json=used).status_code == 200
        page.reload()
        assert page.get_by_test_id("balance-ai-credits").locator(".balance").inner_text() == "299.5"
        assert page.locator("svg.chart").count() == 1
        assert page.get_by_test_id("ledger").locator("tbody tr").count() == 3  # granted, consumed twice
        shoot(page, "customer-credits")

        page.get_by_role("button", name="Void Monthly allowance").click()
        page.wait_for_url(f"{console.base_url}/console/customers/credited/credits")
        assert page.get_by_test_id("ledger").get_by_text("CREDITS_VOIDED").count() == 1
        assert "VOIDED" in page.get_by_test_id("grants").locator(".status").first.inner_text()
    finally:
        page.close()
