"""The console's catalog editors (issue 14), server side, on SQLite and PostgreSQL: products (search,
create, edit, customer journey, archive, duplicate), add-ons and plans through the draft editor, what
pricing pages show, a draft beside the published version, publishing with the migration type, version
history, and coupons. Every write goes through the API's own service, so the API reads it back, and a
refusal carries the API's own message; a viewer gets no edit controls and its forged posts are refused.

One server per database for the module: each test makes its own entities under its own ids."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.console import csrf_of, make_user, signed_in


@pytest.fixture(scope="module")
def api(module_server: LiveServer) -> Iterator[httpx.Client]:
    with module_server.http() as client:
        yield client


@pytest.fixture(scope="module")
def editor(module_server: LiveServer) -> Iterator[httpx.Client]:
    email = make_user(module_server.db, "catalog-editor@example.com", "editor")
    with signed_in(module_server.base_url, email) as web:
        yield web


@pytest.fixture(scope="module")
def token(editor: httpx.Client) -> str:
    return csrf_of(editor)


def text_of(page: httpx.Response) -> str:
    """A page's words as a person reads them: no tags, one space between words."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def ok(answer: httpx.Response) -> httpx.Response:
    assert answer.status_code == 200, answer.text
    return answer


def post(web: httpx.Client, path: str, token: str, data: dict[str, Any] | None = None) -> httpx.Response:
    return web.post(path, data={"csrf_token": token, **(data or {})})


def done(web: httpx.Client, path: str, token: str, data: dict[str, Any] | None = None) -> None:
    answer = post(web, path, token, data)
    assert answer.status_code == 303, answer.text


def refused_like_the_api(console: httpx.Response, by_api: httpx.Response) -> None:
    assert console.status_code == by_api.status_code and 400 <= by_api.status_code < 500, (console.text, by_api.text)
    assert console.headers["content-type"].startswith("text/html")
    assert by_api.json()["error"]["message"] in html.unescape(console.text)


def feature(api: httpx.Client, ref: str, feature_type: str = "NUMBER", **extra: Any) -> None:
    body = {"id": ref, "displayName": ref.title(), "featureType": feature_type, **extra}
    if feature_type == "NUMBER":
        body.setdefault("meterType", "FLUCTUATING")
    ok(api.post("/api/v1/features", json=body))


def product(api: httpx.Client, ref: str) -> None:
    ok(api.post("/api/v1/products", json={"id": ref, "displayName": ref.title()}))


def free_plan(api: httpx.Client, ref: str, product_ref: str) -> None:
    ok(api.post("/api/v1/plans", json={"id": ref, "displayName": ref.title(), "productId": product_ref}))
    ok(api.post(f"/api/v1/plans/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"}))


def test_products_are_searched_created_edited_journeyed_archived_and_duplicated(
    editor: httpx.Client, token: str, api: httpx.Client
) -> None:
    made = post(editor, "/console/products", token, {"id": "p-shop", "display_name": "Web Shop", "description": "x"})
    assert made.status_code == 303 and made.headers["location"] == "/console/products/p-shop"
    product(api, "p-other")
    found = editor.get("/console/products", params={"q": "web sh"}).text
    assert 'data-testid="product-p-shop"' in found and 'data-testid="product-p-other"' not in found
    assert 'data-testid="product-p-other"' in editor.get("/console/products", params={"q": "P-OTH"}).text
    # A search for a LIKE wildcard is a search for the character itself.
    assert 'data-testid="product-' not in editor.get("/console/products", params={"q": "%"}).text

    edited = post(editor, "/console/products/p-shop", token, {"display_name": "Shop", "multiple_subscriptions": "1"})
    assert edited.status_code == 303
    shown = ok(api.get("/api/v1/products/p-shop")).json()["data"]
    # The emptied description is cleared, not left as it was.
    assert (shown["displayName"], shown["description"], shown["multipleSubscriptions"]) == ("Shop", None, True)

    journey = {
        "subscription_cancellation_time": "IMMEDIATE",
        "subscription_end_setup": "DOWNGRADE_TO_FREE",
        "subscription_start_setup": "PLAN_SELECTION",
    }
    refused = post(editor, "/console/products/p-shop/journey", token, journey)
    by_api = api.patch(
        "/api/v1/products/p-shop",
        json={
            "productSettings": {
                "subscriptionCancellationTime": "IMMEDIATE",
                "subscriptionEndSetup": "DOWNGRADE_TO_FREE",
                "subscriptionStartSetup": "PLAN_SELECTION",
            }
        },
    )
    refused_like_the_api(refused, by_api)
    free_plan(api, "p-shop-free", "p-shop")
    assert (
        post(
            editor, "/console/products/p-shop/journey", token, {**journey, "downgrade_plan_id": "p-shop-free"}
        ).status_code
        == 303
    )
    settings = ok(api.get("/api/v1/products/p-shop")).json()["data"]["productSettings"]
    assert settings["subscriptionEndSetup"] == "DOWNGRADE_TO_FREE" and settings["downgradePlanId"] == "p-shop-free"
    assert settings["subscriptionCancellationTime"] == "IMMEDIATE"
    page = text_of(editor.get("/console/products/p-shop"))
    assert "When a subscription ends downgrade to free to p-shop-free" in page

    audited = ok(api.get("/api/v1/audit-log", params={"entityId": "p-shop", "entityType": "products"})).json()["data"]
    assert {(e["action"], e["actor"]) for e in audited} >= {
        ("CREATE", "catalog-editor@example.com"),
        ("UPDATE", "catalog-editor@example.com"),
    }

    copied = post(editor, "/console/products/p-shop/duplicate", token, {"target_id": "p-shop-2"})
    assert copied.status_code == 303 and copied.headers["location"] == "/console/products/p-shop-2"
    plans = ok(api.get("/api/v1/plans", params={"productId": "p-shop-2"})).json()["data"]
    assert [(p["id"], p["status"]) for p in plans] == [("p-shop-2-p-shop-free", "DRAFT")]
    assert "p-shop-2-p-shop-free" in editor.get("/console/products/p-shop-2").text

    assert post(editor, "/console/products/p-shop/archive", token).status_code == 303
    assert ok(api.get("/api/v1/products/p-shop")).json()["data"]["status"] == "ARCHIVED"
    archived_page = editor.get("/console/products/p-shop").text
    assert "Unarchive product p-shop" in archived_page and "Save product" not in archived_page
    refused_like_the_api(
        post(editor, "/console/products/p-shop", token, {"display_name": "Again"}),
        api.patch("/api/v1/products/p-shop", json={"displayName": "Again"}),
    )
    assert post(editor, "/console/products/p-shop/unarchive", token).status_code == 303
    assert ok(api.get("/api/v1/products/p-shop")).json()["data"]["status"] == "PUBLISHED"
    archived = editor.get("/console/products", params={"status": "ARCHIVED"}).text
    assert 'data-testid="product-p-shop"' not in archived and "No products" in archived


def test_an_addon_draft_gets_entitlements_a_tiered_per_unit_price_quantity_and_dependencies(
    editor: httpx.Client, token: str, api: httpx.Client
) -> None:
    product(api, "a-prod")
    feature(api, "a-seats")
    base = {"id": "a-base", "display_name": "Base pack", "product_id": "a-prod"}
    assert post(editor, "/console/addons", token, base).status_code == 303
    ok(api.post("/api/v1/addons/a-base/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    made = post(editor, "/console/addons", token, {"id": "a-seats", "display_name": "Seats", "product_id": "a-prod"})
    assert made.status_code == 303 and made.headers["location"] == "/console/addons/a-seats"
    path = "/console/addons/a-seats"
    assert (
        post(editor, f"{path}/entitlements", token, {"feature_id": "a-seats", "usage_limit": "10"}).status_code == 303
    )
    priced = post(
        editor,
        f"{path}/price",
        token,
        {
            "billing_model": "PER_UNIT",
            "billing_period": "MONTHLY",
            "feature_id": "a-seats",
            "currency": "eur",
            "tiers_mode": "GRADUATED",
            "tiers": "10 3\n* 2.5",
            "max_unit_quantity": "50",
        },
    )
    assert priced.status_code == 303, priced.text
    # An add-on has no trial of its own: refused, not dropped.
    trial = post(
        editor,
        f"{path}/price",
        token,
        {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "5", "trial_days": "7"},
    )
    assert trial.status_code == 400 and "no trial of its own" in trial.text
    settings = post(editor, f"{path}/settings", token, {"max_quantity": "4", "dependencies": ["a-base"]})
    assert settings.status_code == 303, settings.text
    self_dependent = post(editor, f"{path}/settings", token, {"max_quantity": "4", "dependencies": ["a-seats"]})
    refused_like_the_api(self_dependent, api.patch("/api/v1/addons/a-seats", json={"dependencies": ["a-seats"]}))
    page = text_of(editor.get(path))
    assert "graduated tiers: up to 10 at 3 EUR; beyond at 2.5 EUR (quantity 0 to 50)" in page
    assert "At most 4 per subscription · needs first: a-base" in page
    assert post(editor, f"{path}/publish", token, {"migration_type": "NEW_CUSTOMERS"}).status_code == 303

    addon = ok(api.get("/api/v1/addons/a-seats")).json()["data"]
    assert (addon["status"], addon["maxQuantity"], addon["dependencies"], addon["pricingType"]) == (
        "PUBLISHED",
        4,
        ["a-base"],
        "PAID",
    )
    [charge] = ok(api.get("/api/v1/addons/a-seats/charges")).json()["data"]
    assert (charge["billingModel"], charge["tiersMode"], charge["maxUnitQuantity"]) == ("PER_UNIT", "GRADUATED", 50)
    assert [(t["upTo"], t["unitPrice"]) for t in charge["tiers"]] == [
        (10, {"amount": 3, "currency": "eur"}),
        (None, {"amount": 2.5, "currency": "eur"}),
    ]
    ok(api.post("/api/v1/plans", json={"id": "a-plan", "displayName": "Plan", "productId": "a-prod"}))
    compatible = post(editor, "/console/plans/a-plan/settings", token, {"compatible_addon_ids": ["a-base", "a-seats"]})
    assert compatible.status_code == 303, compatible.text
    assert ok(api.get("/api/v1/plans/a-plan")).json()["data"]["compatibleAddonIds"] == ["a-base", "a-seats"]
    refused_like_the_api(
        post(editor, "/console/plans/a-plan/settings", token, {"parent_plan_id": "nope"}),
        api.patch("/api/v1/plans/a-plan", json={"parentPlanId": "nope"}),
    )
    by_country = {
        "billing_model": "FLAT_FEE",
        "billing_period": "MONTHLY",
        "amount": "20",
        "billing_country_code": "DE",
        "country_amount": "18",
    }
    assert post(editor, "/console/plans/a-plan/price", token, by_country).status_code == 303
    prices = ok(api.get("/api/v1/plans/a-plan/charges")).json()["data"]
    assert sorted((c["billingCountryCode"] or "", c["price"]["amount"]) for c in prices) == [("", 20), ("DE", 18)]
    custom = post(editor, "/console/plans/a-plan/free", token, {"pricing_type": "CUSTOM"})
    assert custom.status_code == 303
    assert ok(api.get("/api/v1/plans/a-plan")).json()["data"]["pricingType"] == "CUSTOM"
    assert ok(api.get("/api/v1/plans/a-plan/charges")).json()["data"] == []
    plans = editor.get("/console/plans", params={"product": "a-prod", "status": "DRAFT"}).text
    assert ">a-plan<" in plans and ">w-pro<" not in plans
    listed = editor.get("/console/addons", params={"product": "a-prod", "status": "PUBLISHED"}).text
    assert 'data-testid="addon-a-seats"' in listed and 'data-testid="addon-a-base"' in listed
    assert 'data-testid="product-addons"' in editor.get("/console/products/a-prod").text


def test_what_pricing_pages_show_is_edited_on_the_draft_and_served_by_the_paywall(
    editor: httpx.Client, token: str, api: httpx.Client
) -> None:
    product(api, "w-prod")
    feature(api, "w-seats")
    feature(api, "w-sso", "BOOLEAN")
    feature(
        api,
        "w-tier",
        "ENUM",
        enumConfiguration=[{"value": "a", "displayName": "A"}, {"value": "b", "displayName": "B"}],
    )
    free_plan(api, "w-free", "w-prod")
    assert (
        post(
            editor, "/console/plans", token, {"id": "w-pro", "display_name": "Pro", "product_id": "w-prod"}
        ).status_code
        == 303
    )
    path = "/console/plans/w-pro"
    for ref, limit in (("w-seats", "5"), ("w-sso", ""), ("w-tier", "")):
        data = {"feature_id": ref, "usage_limit": limit, **({"enum_values": "a"} if ref == "w-tier" else {})}
        assert post(editor, f"{path}/entitlements", token, data).status_code == 303
    shown = {
        "usage_limit": "5",
        "display_name_override": "Team members",
        "description": "People who sign in",
        "order": "2",
        "hidden_from_widgets": ["CHECKOUT"],
    }
    assert post(editor, f"{path}/entitlements/w-seats", token, shown).status_code == 303
    hidden = {
        "display_name_override": "Single sign-on",
        "order": "1",
        "hidden_from_widgets": ["PAYWALL", "CUSTOMER_PORTAL"],
    }
    assert post(editor, f"{path}/entitlements/w-sso", token, hidden).status_code == 303
    assert post(editor, f"{path}/entitlements/w-tier", token, {"enum_values": "a, b"}).status_code == 303
    bad_enum = post(editor, f"{path}/entitlements/w-tier", token, {"enum_values": "c"})
    by_api = api.patch("/api/v1/plans/w-pro/entitlements/w-tier", json={"type": "FEATURE", "enumValues": ["c"]})
    refused_like_the_api(bad_enum, by_api)
    rows = {e["id"]: e for e in ok(api.get("/api/v1/plans/w-pro/entitlements")).json()["data"]}
    assert (rows["w-seats"]["displayNameOverride"], rows["w-seats"]["order"], rows["w-seats"]["hiddenFromWidgets"]) == (
        "Team members",
        2,
        ["CHECKOUT"],
    )
    assert rows["w-sso"]["hiddenFromWidgets"] == ["PAYWALL", "CUSTOMER_PORTAL"]
    assert rows["w-sso"]["hasSoftLimit"] is None  # a boolean's editor sends no limit fields to set
    assert sorted(rows["w-tier"]["enumValues"]) == ["a", "b"]
    assert "Not on pricing pages until it is published" in editor.get(path).text
    assert (
        post(
            editor, f"{path}/price", token, {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "20"}
        ).status_code
        == 303
    )
    assert post(editor, f"{path}/publish", token, {"migration_type": "NEW_CUSTOMERS"}).status_code == 303

    paywall = ok(api.get("/api/v1/paywall", params={"productId": "w-prod"})).json()["data"]
    pro = next(p for p in paywall["plans"] if p["id"] == "w-pro")
    assert [e["featureId"] for e in pro["entitlements"]] == ["w-seats", "w-tier"]  # SSO hidden from the paywall
    page = editor.get(path)
    listed = re.search(r'data-testid="pricing-entitlements">(.*?)</ul>', page.text, re.S)
    assert listed and "Team members: 5" in listed.group(1) and "Single sign-on" not in listed.group(1)
    order = re.search(r'data-testid="pricing-order">(.*?)</ol>', page.text, re.S)
    assert order is not None
    assert (
        re.findall(r'class="muted mono">([^<]+)<', order.group(1))
        == [p["id"] for p in sorted(paywall["plans"], key=lambda p: p["order"])]
        == ["w-free", "w-pro"]
    )
    # A blank field clears what it showed.
    assert post(editor, f"{path}/draft", token).status_code == 303
    assert post(editor, f"{path}/entitlements/w-seats", token, {"usage_limit": "5"}).status_code == 303
    cleared = next(e for e in ok(api.get("/api/v1/plans/w-pro/entitlements")).json()["data"] if e["id"] == "w-seats")
    assert (cleared["displayNameOverride"], cleared["order"], cleared["hiddenFromWidgets"]) == (None, None, [])


def test_the_draft_is_shown_beside_the_published_version_published_with_its_migration_type_and_kept_in_history(
    editor: httpx.Client, token: str, api: httpx.Client
) -> None:
    product(api, "v-prod")
    feature(api, "v-calls", meterType="INCREMENTAL")
    feature(api, "v-sso", "BOOLEAN")
    assert (
        post(
            editor, "/console/plans", token, {"id": "v-plan", "display_name": "Plan", "product_id": "v-prod"}
        ).status_code
        == 303
    )
    path = "/console/plans/v-plan"
    done(
        editor, f"{path}/entitlements", token, {"feature_id": "v-calls", "usage_limit": "100", "reset_period": "MONTH"}
    )
    done(editor, f"{path}/price", token, {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "10"})
    assert post(editor, f"{path}/publish", token, {"migration_type": "NEW_CUSTOMERS"}).status_code == 303
    assert 'data-testid="diff"' not in editor.get(path).text  # nothing to compare without a draft
    # Names change in place on the published version; emptying the description clears it.
    done(editor, f"{path}/details", token, {"display_name": "Plan Plus", "description": ""})
    renamed = ok(api.get("/api/v1/plans/v-plan")).json()["data"]
    assert (renamed["displayName"], renamed["description"], renamed["versionNumber"]) == ("Plan Plus", None, 1)

    assert post(editor, f"{path}/draft", token).status_code == 303
    unchanged = editor.get(path).text
    assert (
        "This draft beside published version 1" in unchanged and "No change to entitlements or prices yet" in unchanged
    )
    done(editor, f"{path}/entitlements/v-calls", token, {"usage_limit": "200", "reset_period": "MONTH"})
    done(editor, f"{path}/entitlements", token, {"feature_id": "v-sso"})
    annual = {"billing_model": "FLAT_FEE", "billing_period": "ANNUALLY", "amount": "100"}
    refused_like_the_api(
        post(editor, f"{path}/price", token, {**annual, "overage_feature_id": "v-sso", "overage_amount": "1"}),
        api.patch(
            "/api/v1/plans/v-plan",
            json={
                "charges": {
                    "pricingType": "PAID",
                    "pricingModels": [
                        {
                            "billingModel": "FLAT_FEE",
                            "pricePeriods": [{"billingPeriod": "ANNUALLY", "price": {"amount": 100}}],
                        }
                    ],
                    "overagePricingModels": [
                        {"featureId": "v-sso", "pricePeriods": [{"billingPeriod": "ANNUALLY", "price": {"amount": 1}}]}
                    ],
                }
            },
        ),
    )
    done(editor, f"{path}/price", token, {**annual, "overage_feature_id": "v-calls", "overage_amount": "0.05"})
    page = editor.get(path).text

    def row(testid: str) -> str:
        found = re.search(rf'<tr class="change-(\w+)" data-testid="{re.escape(testid)}">(.*?)</tr>', page, re.S)
        assert found, testid
        return found.group(1) + ": " + re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(2))).strip()

    assert row("diff-entitlements-v-calls") == (
        "changed: v-calls up to 100; resets every month up to 200; resets every month changed"
    )
    assert row("diff-entitlements-v-sso") == "added: v-sso — granted added"
    assert row("diff-charges-FLAT_FEE MONTHLY") == "removed: FLAT_FEE MONTHLY 10 USD — removed"
    assert row("diff-charges-FLAT_FEE ANNUALLY") == "added: FLAT_FEE ANNUALLY — 100 USD added"
    assert row("diff-charges-overage v-calls ANNUALLY") == "added: overage v-calls ANNUALLY — 0.05 USD added"

    assert post(editor, f"{path}/publish", token, {"migration_type": "ALL_CUSTOMERS"}).status_code == 303
    versions = ok(api.get("/api/v1/plans/v-plan")).json()["data"]
    assert (versions["versionNumber"], versions["status"]) == (2, "PUBLISHED")
    history = re.search(r'data-testid="versions">(.*?)</table>', editor.get(path).text, re.S)
    assert history
    history_text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", history.group(1)))
    assert re.search(r"Version 2 PUBLISHED \(what new customers get\) \S+ \S+ UTC moved to it", history_text)
    assert re.search(r"Version 1 PUBLISHED \S+ \S+ UTC stayed on theirs", history_text)

    first = editor.get(f"{path}/versions/1")
    assert first.status_code == 200
    first_text = text_of(first)
    assert "version 1" in first_text and "10 USD" in first_text and "up to 100; resets every month" in first_text
    assert "v-sso" not in first_text
    assert editor.get(f"{path}/versions/9").status_code == 404
    # A draft discarded leaves the published version as it was.
    done(editor, f"{path}/draft", token)
    done(editor, f"{path}/entitlements/v-calls/remove", token)
    assert post(editor, f"{path}/draft/discard", token).status_code == 303
    assert [e["id"] for e in ok(api.get("/api/v1/plans/v-plan")).json()["data"]["entitlements"]] == ["v-calls", "v-sso"]
    # The API's rule, the API's words: nothing to publish without a draft.
    refused_like_the_api(
        post(editor, f"{path}/publish", token, {"migration_type": "NEW_CUSTOMERS"}),
        api.post("/api/v1/plans/v-plan/publish", json={"migrationType": "NEW_CUSTOMERS"}),
    )


def test_coupons_are_listed_created_as_percentages_or_amounts_per_currency_and_archived(
    editor: httpx.Client, token: str, api: httpx.Client
) -> None:
    percent = {"id": "c-half", "name": "Half", "discount": "PERCENTAGE", "percent_off": "50", "duration_in_months": "3"}
    assert post(editor, "/console/coupons", token, percent).status_code == 303
    fixed = {"id": "c-ten", "name": "Ten off", "discount": "FIXED", "amounts_off": "10 usd\n9.5 EUR"}
    assert post(editor, "/console/coupons", token, fixed).status_code == 303
    half = ok(api.get("/api/v1/coupons/c-half")).json()["data"]
    assert (half["type"], half["percentOff"], half["durationInMonths"]) == ("PERCENTAGE", 50, 3)
    ten = ok(api.get("/api/v1/coupons/c-ten")).json()["data"]
    assert (ten["type"], ten["amountsOff"], ten["durationInMonths"]) == (
        "FIXED",
        [{"amount": 10, "currency": "usd"}, {"amount": 9.5, "currency": "eur"}],
        None,
    )
    refused_like_the_api(
        post(editor, "/console/coupons", token, {**percent, "id": "c-bad", "percent_off": "150"}),
        api.post("/api/v1/coupons", json={"id": "c-bad", "name": "Bad", "percentOff": 150}),
    )
    refused_like_the_api(
        post(editor, "/console/coupons", token, {**fixed, "id": "c-bad", "amounts_off": "1.005 usd"}),
        api.post(
            "/api/v1/coupons", json={"id": "c-bad", "name": "Bad", "amountsOff": [{"amount": 1.005, "currency": "usd"}]}
        ),
    )
    empty = post(editor, "/console/coupons", token, {**fixed, "id": "c-bad", "amounts_off": ""})
    assert empty.status_code == 400 and "amountsOff needs at least one amount" in empty.text
    assert api.get("/api/v1/coupons/c-bad").status_code == 404

    page = text_of(editor.get("/console/coupons"))
    assert (
        "Half c-half 50% off 3 month(s) ACTIVE" in page
        and "Ten off c-ten 10 USD or 9.5 EUR off for ever ACTIVE" in page
    )
    assert post(editor, "/console/coupons/c-half/archive", token).status_code == 303
    assert ok(api.get("/api/v1/coupons/c-half")).json()["data"]["status"] == "ARCHIVED"
    archived = editor.get("/console/coupons", params={"status": "ARCHIVED"}).text
    assert 'data-testid="coupon-c-half"' in archived and 'data-testid="coupon-c-ten"' not in archived
    assert 'aria-label="Archive coupon c-half"' not in archived
    fixed_only = editor.get("/console/coupons", params={"type": "FIXED"}).text
    assert 'data-testid="coupon-c-ten"' in fixed_only and 'data-testid="coupon-c-half"' not in fixed_only
    for params in ({"type": "HALF"}, {"status": "GONE"}):
        unknown = editor.get("/console/coupons", params=params)
        assert unknown.status_code == 400 and "expected" in unknown.text
    assert editor.get("/console/products", params={"status": "GONE"}).status_code == 400


def test_a_viewer_sees_no_catalog_edit_controls_and_its_forged_posts_are_refused(
    module_server: LiveServer, api: httpx.Client
) -> None:
    product(api, "r-prod")
    feature(api, "r-seats")
    ok(api.post("/api/v1/plans", json={"id": "r-plan", "displayName": "Plan", "productId": "r-prod"}))
    ok(api.post("/api/v1/addons", json={"id": "r-addon", "displayName": "Addon", "productId": "r-prod"}))
    ok(api.post("/api/v1/coupons", json={"id": "r-coupon", "name": "C", "percentOff": 5}))
    email = make_user(module_server.db, "catalog-viewer@example.com", "viewer")
    with signed_in(module_server.base_url, email) as web:
        for path in (
            "/console/products",
            "/console/products/r-prod",
            "/console/plans/r-plan",
            "/console/addons",
            "/console/addons/r-addon",
            "/console/plans/r-plan/versions/1",
            "/console/coupons",
        ):
            page = ok(web.get(path))
            actions = re.findall(r'<form method="post" action="([^"]+)"', page.text)
            assert actions == ["/console/environment", "/console/logout"], (path, actions)
        token = csrf_of(web)  # its own valid token: the role alone refuses
        forged = [
            ("/console/products", {"id": "r-new", "display_name": "New"}),
            ("/console/products/r-prod", {"display_name": "Renamed"}),
            ("/console/products/r-prod/archive", {}),
            ("/console/products/r-prod/duplicate", {"target_id": "r-copy"}),
            ("/console/addons", {"id": "r-new", "display_name": "New", "product_id": "r-prod"}),
            ("/console/plans/r-plan/entitlements", {"feature_id": "r-seats", "usage_limit": "1"}),
            (
                "/console/addons/r-addon/price",
                {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "1"},
            ),
            ("/console/addons/r-addon/settings", {"max_quantity": "2"}),
            ("/console/plans/r-plan/publish", {"migration_type": "NEW_CUSTOMERS"}),
            ("/console/coupons", {"id": "r-new", "name": "N", "discount": "PERCENTAGE", "percent_off": "5"}),
            ("/console/coupons/r-coupon/archive", {}),
        ]
        for path, data in forged:
            refused = post(web, path, token, data)
            assert refused.status_code == 403 and "may not do this" in refused.text, (path, refused.text)
    assert ok(api.get("/api/v1/products/r-prod")).json()["data"]["displayName"] == "R-Prod"
    assert ok(api.get("/api/v1/plans/r-plan")).json()["data"]["status"] == "DRAFT"
    assert ok(api.get("/api/v1/plans/r-plan")).json()["data"]["entitlements"] == []
    assert ok(api.get("/api/v1/coupons/r-coupon")).json()["data"]["status"] == "ACTIVE"
    assert api.get("/api/v1/products/r-new").status_code == 404


def test_catalog_forms_without_the_csrf_token_are_refused(editor: httpx.Client, api: httpx.Client) -> None:
    product(api, "x-prod")
    for path, data in (
        ("/console/products/x-prod/archive", {}),
        ("/console/coupons", {"id": "x-c", "name": "X", "discount": "PERCENTAGE", "percent_off": "5"}),
    ):
        refused = editor.post(path, data=data)
        assert refused.status_code == 403 and "CSRF_TOKEN_INVALID" in refused.text
    assert ok(api.get("/api/v1/products/x-prod")).json()["data"]["status"] == "PUBLISHED"
    assert api.get("/api/v1/coupons/x-c").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/console/products?q=%00",
        "/console/products/a%00b",
        "/console/plans/a%00b",
        "/console/addons/a%00b/versions/1",
        "/console/plans?product=a%00b",
        "/console/plans/nope/versions/-1",
    ],
)
def test_hostile_catalog_reads_are_refused_or_not_found_never_errors(editor: httpx.Client, path: str) -> None:
    answer = editor.get(path)
    assert answer.status_code in (200, 400, 404), answer.text
    assert answer.headers["content-type"].startswith("text/html")


def test_an_archived_feature_is_unarchived_from_the_features_page(
    editor: httpx.Client, token: str, api: httpx.Client
) -> None:
    feature(api, "u-flag", "BOOLEAN")
    assert post(editor, "/console/features/u-flag/archive", token).status_code == 303
    assert ok(api.get("/api/v1/features/u-flag")).json()["data"]["archivedAt"] is not None
    # Gone from the live list (as from the API's), found among the archived ones with the way back.
    assert 'data-testid="feature-u-flag"' not in editor.get("/console/features").text
    row = editor.get("/console/features", params={"archived": "true"}).text
    row = row[row.index('data-testid="feature-u-flag"') :]
    row = row[: row.index("</tr>")]
    assert 'aria-label="Unarchive feature u-flag"' in row and 'aria-label="Archive feature u-flag"' not in row
    assert post(editor, "/console/features/u-flag/unarchive", token).status_code == 303
    assert ok(api.get("/api/v1/features/u-flag")).json()["data"]["archivedAt"] is None
    assert 'data-testid="feature-u-flag"' in editor.get("/console/features").text
    refused_like_the_api(
        post(editor, "/console/features/u-none/unarchive", token), api.post("/api/v1/features/u-none/unarchive")
    )
    entries = ok(api.get("/api/v1/audit-log", params={"entityType": "features", "entityId": "u-flag"})).json()["data"]
    assert entries[0]["actor"] == "catalog-editor@example.com" and entries[0]["changes"]["archived_at"][1] is None


def test_what_pricing_pages_show_names_an_enums_values_and_when_a_limit_resets(
    editor: httpx.Client, token: str, api: httpx.Client
) -> None:
    """The plan page's "lists" are what the pricing table says of the plan: an enum's values (the table
    lists "Support: email, phone"), and a limit that resets with its period ("1000 calls / month")."""
    product(api, "l-prod")
    feature(api, "l-calls", meterType="INCREMENTAL", featureUnitsPlural="calls")
    feature(api, "l-support", "ENUM", enumConfiguration=[{"value": v, "displayName": v} for v in ("email", "phone")])
    ok(api.post("/api/v1/plans", json={"id": "l-plan", "displayName": "L", "productId": "l-prod"}))
    entitlements = [
        {"type": "FEATURE", "id": "l-calls", "usageLimit": 1000, "resetPeriod": "MONTH"},
        {"type": "FEATURE", "id": "l-support", "enumValues": ["email", "phone"]},
    ]
    ok(api.post("/api/v1/plans/l-plan/entitlements", json={"entitlements": entitlements}))
    ok(api.post("/api/v1/plans/l-plan/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    listed = re.search(r'data-testid="pricing-entitlements">(.*?)</ul>', editor.get("/console/plans/l-plan").text, re.S)
    assert listed is not None
    assert re.findall(r"<li>\s*(.*?)\s*</li>", listed.group(1), re.S) == [
        "L-Calls: 1000 calls / month",
        "L-Support: email, phone",
    ]


def test_a_draft_that_changes_only_a_plans_add_ons_base_plan_or_trial_says_so(
    editor: httpx.Client, token: str, api: httpx.Client
) -> None:
    """The draft beside the published version lists what it changes besides entitlements and prices: it
    said "No change to entitlements or prices yet" for a draft that offers a new add-on."""
    product(api, "s-prod")
    free_plan(api, "s-base", "s-prod")
    ok(api.post("/api/v1/addons", json={"id": "s-extra", "displayName": "Extra", "productId": "s-prod"}))
    ok(api.post("/api/v1/addons/s-extra/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    path = "/console/plans/s-plan"
    done(editor, "/console/plans", token, {"id": "s-plan", "display_name": "S", "product_id": "s-prod"})
    done(editor, f"{path}/price", token, {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "10"})
    done(editor, f"{path}/publish", token, {"migration_type": "NEW_CUSTOMERS"})
    done(editor, f"{path}/draft", token)
    assert 'data-testid="diff-settings-trial"' in editor.get(path).text
    done(editor, f"{path}/settings", token, {"parent_plan_id": "s-base", "compatible_addon_ids": ["s-extra"]})
    done(editor, f"{path}/trial", token, {"duration": "14", "units": "DAY"})
    page = editor.get(path).text
    assert "No change to entitlements or prices yet" not in page
    rows = {
        key: (change, cells)
        for change, key, cells in re.findall(
            r'<tr class="change-(\w+)" data-testid="diff-settings-([^"]+)">(.*?)</tr>', page, re.S
        )
    }
    assert rows["compatible add-ons"][0] == "changed" and "none</td><td>s-extra" in rows["compatible add-ons"][1]
    assert rows["base plan"][0] == "changed" and "none</td><td>s-base" in rows["base plan"][1]
    assert rows["trial"][0] == "changed" and "14 day(s), then paid" in rows["trial"][1]
    assert rows["pricing"][0] == "unchanged"
