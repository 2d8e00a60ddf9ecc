"""The console's credit pages on both databases: currencies (create, edit, archive), a customer's credits
(balances, grants, ledger, chart), grant and void forms for editors only, with CSRF, and the audit log
naming the console user."""

from __future__ import annotations

import html

import httpx

from entitle.credits.models import CreditGrant
from tests.conftest import LiveServer
from tests.support.console import csrf_of, make_user, signed_in
from tests.test_console import _count, _customer


def test_an_editor_manages_currencies_and_grants_a_viewer_only_reads(server: LiveServer, api: httpx.Client) -> None:
    _customer(api, "c-cred")
    editor = make_user(server.db, "cred-ed@example.com", "editor")
    viewer = make_user(server.db, "cred-view@example.com", "viewer")
    with signed_in(server.base_url, editor) as web:
        token = csrf_of(web)
        form = {"csrf_token": token, "currency_id": "ai", "display_name": "AI credits", "singular": "credit"}
        made = web.post("/console/credits/currencies", data={**form, "plural": "credits", "symbol": "◆"})
        assert (made.status_code, made.headers["location"]) == (303, "/console/credits/currencies/ai")
        # The API's own rule, worded as the API words it: units need both forms.
        half = web.post("/console/credits/currencies", data={**form, "currency_id": "half"})
        assert half.status_code == 400 and "plural" in html.unescape(half.text)
        edited = web.post(
            "/console/credits/currencies/ai",
            data={"csrf_token": token, "display_name": "AI tokens", "singular": "token", "plural": "tokens"},
        )
        assert edited.status_code == 303
        currency = api.get("/api/v1/credits/custom-currencies").json()["data"][0]
        assert (currency["displayName"], currency["symbol"], currency["units"]) == (
            "AI tokens",
            None,  # the emptied symbol field clears it
            {"singular": "token", "plural": "tokens"},
        )
        assert "AI tokens" in web.get("/console/credits").text

        grant = {"csrf_token": token, "currency_id": "ai", "amount": "120.5", "display_name": "Welcome"}
        granted = web.post("/console/customers/c-cred/credits/grants", data={**grant, "grant_type": "PROMOTIONAL"})
        assert granted.status_code == 303
        assert granted.headers["location"] == "/console/customers/c-cred/credits?currency=ai"
        too_precise = web.post(
            "/console/customers/c-cred/credits/grants", data={**grant, "amount": "1.1234567", "grant_type": "PAID"}
        )
        assert too_precise.status_code == 400  # refused as the API refuses it, never rounded
        consumed = {"customerId": "c-cred", "currencyId": "ai", "amount": 20, "idempotencyKey": "k1"}
        assert api.post("/api/v1/credits/consumption", json=consumed).status_code == 200

        page = web.get("/console/customers/c-cred/credits", params={"currency": "ai"})
        assert page.status_code == 200
        text = page.text
        assert 'data-testid="balance-ai"' in text and "100.5" in text  # 120.5 granted, 20 used
        assert "CREDITS_GRANTED" in text and "CREDITS_CONSUMED" in text
        assert '<svg class="chart"' in text and "ai balance" in text
        grant_id = api.get("/api/v1/credits/grants", params={"customerId": "c-cred"}).json()["data"][0]["id"]
        assert f'data-testid="grant-{grant_id}"' in text and "PROMOTIONAL" in text

        assert web.post(f"/console/customers/c-cred/credits/grants/{grant_id}/void", data={}).status_code == 403
        voided = web.post(f"/console/customers/c-cred/credits/grants/{grant_id}/void", data={"csrf_token": token})
        assert voided.status_code == 303
        assert _count(server, CreditGrant, status="VOIDED") == 1

        assert web.post("/console/credits/currencies/ai/archive", data={"csrf_token": token}).status_code == 303
        link = 'href="/console/credits/currencies/ai"'
        assert link not in web.get("/console/credits").text
        assert link in web.get("/console/credits", params={"status": "archived"}).text

    with signed_in(server.base_url, viewer) as reader:
        token = csrf_of(reader)
        page = reader.get("/console/customers/c-cred/credits")
        assert page.status_code == 200 and "Grant credits" not in page.text and ">Void<" not in page.text
        refused = reader.post(
            "/console/customers/c-cred/credits/grants",
            data={"csrf_token": token, "currency_id": "ai", "amount": "5", "display_name": "x", "grant_type": "PAID"},
        )
        assert refused.status_code == 403
    assert _count(server, CreditGrant) == 1

    audit = api.get("/api/v1/audit-log", params={"entityId": grant_id}).json()["data"]
    assert {(e["action"], e["actor"]) for e in audit} >= {("CREATE", editor), ("UPDATE", editor)}
