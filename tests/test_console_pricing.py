"""The console's remaining catalog editors (issue 14), on SQLite and PostgreSQL: the plan order of a
product's pricing pages (stored with the product, honoured by the paywall), one charge of a draft added,
edited or removed at a time, and product and coupon metadata. Every write goes through the API's own
service, so the API reads it back and the audit log names its author; a viewer's forged post is refused.

One server per database for the module: each test makes its own entities under its own ids."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import asdict, fields
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.catalog.packages.charge_rules import READ_BACK, charges_doc
from entitle.catalog.packages.pricing_rules import ChargeSpec, expand_charges
from entitle.catalog.packages.schemas import ChargesIn
from entitle.console.catalog_rules import metadata_of, moved
from entitle.console.rules import one_off_totals
from entitle.errors import InvalidArgument
from entitle.money import minor_unit_exponent
from entitle.paywall.rules import in_chosen_order
from tests.conftest import LiveServer
from tests.support.console import csrf_of, make_user, signed_in
from tests.test_console_catalog import feature, ok, post, product, refused_like_the_api, text_of

EDITOR = "pricing-editor@example.com"


@pytest.fixture(scope="module")
def api(module_server: LiveServer) -> Iterator[httpx.Client]:
    with module_server.http() as client:
        yield client


@pytest.fixture(scope="module")
def editor(module_server: LiveServer) -> Iterator[httpx.Client]:
    make_user(module_server.db, EDITOR, "editor")
    with signed_in(module_server.base_url, EDITOR) as web:
        yield web


@pytest.fixture(scope="module")
def token(editor: httpx.Client) -> str:
    return csrf_of(editor)


@pytest.fixture(scope="module")
def viewer(module_server: LiveServer) -> Iterator[httpx.Client]:
    email = make_user(module_server.db, "pricing-viewer@example.com", "viewer")
    with signed_in(module_server.base_url, email) as web:
        yield web


def published_plan(api: httpx.Client, ref: str, product_ref: str, monthly: int | None = None) -> None:
    ok(api.post("/api/v1/plans", json={"id": ref, "displayName": ref.title(), "productId": product_ref}))
    if monthly is not None:
        price = {"billingPeriod": "MONTHLY", "price": {"amount": monthly, "currency": "usd"}}
        model = {"billingModel": "FLAT_FEE", "pricePeriods": [price]}
        ok(api.patch(f"/api/v1/plans/{ref}", json={"charges": {"pricingType": "PAID", "pricingModels": [model]}}))
    ok(api.post(f"/api/v1/plans/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"}))


def paywall_order(api: httpx.Client, product_ref: str) -> list[str]:
    plans = ok(api.get("/api/v1/paywall", params={"productId": product_ref})).json()["data"]["plans"]
    by_order = [p["id"] for p in sorted(plans, key=lambda p: p["order"])]
    assert by_order == [p["id"] for p in plans]  # listed in their order too
    return by_order


def audited(api: httpx.Client, entity_id: str) -> list[dict[str, Any]]:
    return ok(api.get("/api/v1/audit-log", params={"entityId": entity_id})).json()["data"]


# -- plan order: the pure rules ----------------------------------------------------------------------------


@given(st.lists(st.integers(0, 30), unique=True), st.lists(st.integers(0, 40)))
def test_chosen_plans_come_first_in_the_chosen_order_and_the_others_keep_theirs(
    default: list[int], chosen: list[int]
) -> None:
    refs = [f"p{n}" for n in default]
    picks = [f"p{n}" for n in chosen]
    ordered = in_chosen_order(refs, picks)
    assert sorted(ordered) == sorted(refs)  # every listed plan once, nothing else
    first = [r for r in dict.fromkeys(picks) if r in refs]
    assert ordered[: len(first)] == first
    assert ordered[len(first) :] == [r for r in refs if r not in first]


@given(st.lists(st.integers(), min_size=1, unique=True), st.data())
def test_a_move_shifts_one_plan_and_keeps_the_others_in_order(order: list[int], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(order) - 1))
    offset = data.draw(st.sampled_from([-1, 1]))
    after = moved(order, index, offset)
    item = order[index]
    assert sorted(after) == sorted(order)
    assert after.index(item) == max(0, min(len(order) - 1, index + offset))
    assert [x for x in after if x != item] == [x for x in order if x != item]


# -- plan order: API and console --------------------------------------------------------------------------


def test_the_api_sets_a_products_plan_order_the_paywall_follows_it_and_refuses_foreign_plans(
    api: httpx.Client,
) -> None:
    product(api, "o-prod")
    product(api, "o-other")
    published_plan(api, "o-free", "o-prod")
    published_plan(api, "o-pro", "o-prod", monthly=50)
    published_plan(api, "o-basic", "o-prod", monthly=10)
    published_plan(api, "o-elsewhere", "o-other")
    assert paywall_order(api, "o-prod") == ["o-free", "o-basic", "o-pro"]  # by price, as before
    assert ok(api.get("/api/v1/products/o-prod")).json()["data"]["planOrder"] == []

    answer = ok(api.patch("/api/v1/products/o-prod", json={"planOrder": ["o-pro", "o-free"]}))
    assert answer.json()["data"]["planOrder"] == ["o-pro", "o-free"]
    assert paywall_order(api, "o-prod") == ["o-pro", "o-free", "o-basic"]  # the unlisted one follows
    # A draft-only plan may be listed: it takes its place once published.
    ok(api.post("/api/v1/plans", json={"id": "o-late", "displayName": "Late", "productId": "o-prod"}))
    ok(api.patch("/api/v1/products/o-prod", json={"planOrder": ["o-late", "o-pro", "o-free"]}))
    assert paywall_order(api, "o-prod") == ["o-pro", "o-free", "o-basic"]
    ok(api.post("/api/v1/plans/o-late/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    assert paywall_order(api, "o-prod") == ["o-late", "o-pro", "o-free", "o-basic"]

    for bad, words in (
        (["o-pro", "o-pro"], "each plan may appear once"),
        (["o-elsewhere"], "belongs to product 'o-other'"),
        (["o-nothing"], "'o-nothing' is not a plan"),
        ("o-pro", "planOrder"),
    ):
        refused = api.patch("/api/v1/products/o-prod", json={"planOrder": bad})
        assert refused.status_code == 400 and words in refused.json()["error"]["message"], refused.text
    assert ok(api.get("/api/v1/products/o-prod")).json()["data"]["planOrder"] == ["o-late", "o-pro", "o-free"]
    # Other fields leave the order alone; null clears it.
    ok(api.patch("/api/v1/products/o-prod", json={"description": "kept"}))
    assert paywall_order(api, "o-prod")[0] == "o-late"
    # A copy of the product orders the copies of its plans the same way.
    ok(api.post("/api/v1/products/o-prod/duplicate", json={"targetId": "o-copy"}))
    copied = ok(api.get("/api/v1/products/o-copy")).json()["data"]["planOrder"]
    assert copied == ["o-copy-o-late", "o-copy-o-pro", "o-copy-o-free"]
    ok(api.patch("/api/v1/products/o-prod", json={"planOrder": None}))
    assert paywall_order(api, "o-prod") == ["o-free", "o-late", "o-basic", "o-pro"]  # free ones first


def _console_order(editor: httpx.Client, product_ref: str) -> list[str]:
    page = ok(editor.get(f"/console/products/{product_ref}"))
    listed = re.search(r'data-testid="pricing-order">(.*?)</ol>', page.text, re.S)
    assert listed is not None
    return re.findall(r'class="muted mono">([^<]+)<', listed.group(1))


def _move_form(editor: httpx.Client, product_ref: str, button: str) -> list[str]:
    """The plan ids the move button's form sends, as the browser would."""
    page = ok(editor.get(f"/console/products/{product_ref}")).text
    at = page.index(f'data-testid="{button}"')
    form = page[page.rindex("<form", 0, at) : at]
    return re.findall(r'name="plan_ids" value="([^"]+)"', form)


def test_the_product_page_moves_plans_up_and_down_audited_and_the_viewer_cannot(
    module_server: LiveServer, api: httpx.Client, editor: httpx.Client, token: str, viewer: httpx.Client
) -> None:
    product(api, "m-prod")
    for ref, price in (("m-free", None), ("m-basic", 10), ("m-pro", 50)):
        published_plan(api, ref, "m-prod", monthly=price)
    assert _console_order(editor, "m-prod") == ["m-free", "m-basic", "m-pro"]
    assert 'data-testid="up-m-free"' not in editor.get("/console/products/m-prod").text  # the first has no "up"

    sent = _move_form(editor, "m-prod", "up-m-pro")
    assert sent == ["m-free", "m-pro", "m-basic"]
    moved_up = post(editor, "/console/products/m-prod/plan-order", token, {"plan_ids": sent})
    assert moved_up.status_code == 303
    assert _console_order(editor, "m-prod") == paywall_order(api, "m-prod") == ["m-free", "m-pro", "m-basic"]
    assert ok(api.get("/api/v1/products/m-prod")).json()["data"]["planOrder"] == sent
    sent = _move_form(editor, "m-prod", "down-m-free")
    assert post(editor, "/console/products/m-prod/plan-order", token, {"plan_ids": sent}).status_code == 303
    assert paywall_order(api, "m-prod") == ["m-pro", "m-free", "m-basic"]

    change = next(e for e in audited(api, "m-prod") if "plan_order" in e["changes"])
    assert (change["actor"], change["actorType"], change["changes"]["plan_order"][1]) == (
        EDITOR,
        "USER",
        ["m-pro", "m-free", "m-basic"],
    )
    # A refusal carries the API's message; a viewer sees no buttons and its forged post is refused.
    product(api, "m-other")
    published_plan(api, "m-foreign", "m-other")
    foreign = post(editor, "/console/products/m-prod/plan-order", token, {"plan_ids": ["m-foreign"]})
    refused_like_the_api(foreign, api.patch("/api/v1/products/m-prod", json={"planOrder": ["m-foreign"]}))
    assert 'data-testid="up-' not in viewer.get("/console/products/m-prod").text
    forged = viewer.post(
        "/console/products/m-prod/plan-order", data={"csrf_token": csrf_of(viewer), "plan_ids": ["m-basic"]}
    )
    no_token = editor.post("/console/products/m-prod/plan-order", data={"plan_ids": ["m-basic"]})
    assert forged.status_code == no_token.status_code == 403
    # Back to the order by price.
    assert "Back to the order by price" in text_of(editor.get("/console/products/m-prod"))
    assert post(editor, "/console/products/m-prod/plan-order", token).status_code == 303
    assert paywall_order(api, "m-prod") == ["m-free", "m-basic", "m-pro"]


# -- one charge at a time: the pure read-back ---------------------------------------------------------------

PERIODS = ("MONTHLY", "ANNUALLY")


def _price(amount: int) -> dict[str, Any]:
    return {"amount": Decimal(amount) / 100, "currency": "eur"}


@st.composite
def pricing(draw: st.DrawFn) -> dict[str, Any]:
    """A `charges` body with pricing models of each kind, per-country prices and overage models."""

    def periods(tiered: bool) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for period in draw(st.lists(st.sampled_from(PERIODS), min_size=1, max_size=2, unique=True)):
            for country in [None, *draw(st.lists(st.sampled_from(["DE", "FR"]), max_size=2, unique=True))]:
                pp: dict[str, Any] = {"billing_period": period, "billing_country_code": country}
                if tiered and draw(st.booleans()):
                    top = draw(st.integers(1, 50))
                    flat = draw(st.one_of(st.none(), st.integers(0, 900)))
                    pp["tiers"] = [
                        {"up_to": top, "unit_price": _price(draw(st.integers(0, 900)))},
                        {"unit_price": _price(draw(st.integers(0, 900))), "flat_price": _price(flat) if flat else None},
                    ]
                else:
                    pp["price"] = _price(draw(st.integers(0, 90_000)))
                if tiered and draw(st.booleans()):
                    pp["block_size"] = draw(st.integers(1, 10))
                found.append(pp)
        return found

    models: list[dict[str, Any]] = []
    if draw(st.booleans()):
        models.append({"billing_model": "FLAT_FEE", "price_periods": periods(False)})
    for feature_ref in draw(st.lists(st.sampled_from(["seats", "calls"]), max_size=2, unique=True)):
        model = draw(st.sampled_from(["PER_UNIT", "USAGE_BASED"]))
        m: dict[str, Any] = {
            "billing_model": model,
            "feature_id": feature_ref,
            "price_periods": periods(True),
            "tiers_mode": draw(st.sampled_from(["VOLUME", "GRADUATED"])),
        }
        if model == "PER_UNIT" and draw(st.booleans()):
            m["min_unit_quantity"], m["max_unit_quantity"] = 1, draw(st.integers(1, 100))
        models.append(m)
    overages = [
        {"feature_id": ref, "price_periods": periods(False)}
        for ref in draw(st.lists(st.sampled_from(["calls", "tokens"]), max_size=2, unique=True))
    ]
    return {"pricing_type": "PAID", "pricing_models": models, "overage_pricing_models": overages}


def _specs(req: ChargesIn) -> dict[Any, dict[str, Any]]:
    found = {}
    for spec in expand_charges(req):
        row = asdict(spec)
        if row["tiers_mode"] is None or not row["tiers"]:
            row["tiers_mode"] = None
        found[spec.key] = row
    return found


@given(pricing())
def test_a_drafts_charges_read_back_as_a_patch_expand_to_the_same_charges(body: dict[str, Any]) -> None:
    for m in body["pricing_models"]:
        if not any("tiers" in pp for pp in m["price_periods"]):
            m.pop("tiers_mode", None)
    req = ChargesIn.model_validate(body)
    stored = expand_charges(req)
    back = ChargesIn.model_validate(charges_doc(stored, "PAID", None, None))
    assert _specs(back) == _specs(req)


def test_every_charge_column_is_read_back() -> None:
    """A new ChargeSpec field must be read back, or a one-charge edit would drop it from the others."""
    assert {f.name for f in fields(ChargeSpec)} == READ_BACK


# -- one charge at a time: console and service --------------------------------------------------------------


def _charges(api: httpx.Client, plan: str) -> dict[str, dict[str, Any]]:
    """The draft's charges by what they price: `MODEL feature PERIOD [COUNTRY]` -> the charge."""
    found: dict[str, dict[str, Any]] = {}
    for overage in (False, True):
        path = f"/api/v1/plans/{plan}/{'overage-charges' if overage else 'charges'}"
        for c in ok(api.get(path)).json()["data"]:
            parts = ["overage" if overage else c["billingModel"], c.get("featureId") or "", c["billingPeriod"]]
            parts.append(c.get("billingCountryCode") or "")
            # The rows are written again on every pricing change: their times move, nothing else.
            found[" ".join(p for p in parts if p)] = {k: v for k, v in c.items() if k not in ("createdAt", "updatedAt")}
    return found


def test_one_charge_of_a_draft_is_added_changed_and_removed_the_others_kept(
    api: httpx.Client, editor: httpx.Client, token: str, viewer: httpx.Client
) -> None:
    product(api, "c-prod")
    feature(api, "c-seats")
    feature(api, "c-calls", meterType="INCREMENTAL")
    path = "/console/plans/c-plan"
    assert (
        post(editor, "/console/plans", token, {"id": "c-plan", "display_name": "C", "product_id": "c-prod"}).status_code
        == 303
    )
    base = {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "20", "currency": "eur"}
    assert post(editor, f"{path}/charges", token, base).status_code == 303
    seats = {"billing_model": "PER_UNIT", "billing_period": "MONTHLY", "feature_id": "c-seats", "currency": "eur"}
    assert (
        post(editor, f"{path}/charges", token, {**seats, "tiers_mode": "VOLUME", "tiers": "5 12\n* 9"}).status_code
        == 303
    )
    german = {**base, "billing_country_code": "DE", "amount": "22"}
    assert post(editor, f"{path}/charges", token, german).status_code == 303
    overage = {
        "billing_model": "OVERAGE",
        "billing_period": "MONTHLY",
        "feature_id": "c-calls",
        "amount": "0.5",
        "currency": "eur",
    }
    assert post(editor, f"{path}/charges", token, overage).status_code == 303
    first = _charges(api, "c-plan")
    assert set(first) == {
        "FLAT_FEE MONTHLY",
        "PER_UNIT c-seats MONTHLY",
        "FLAT_FEE MONTHLY DE",
        "overage c-calls MONTHLY",
    }
    assert ok(api.get("/api/v1/plans/c-plan")).json()["data"]["pricingType"] == "PAID"

    # The editor opens with the charge's own values, and saving changes that charge only (its id kept).
    seats_id = first["PER_UNIT c-seats MONTHLY"]["id"]
    opened = ok(editor.get(path, params={"charge": seats_id})).text
    form = opened[opened.index('data-testid="one-charge"') :]
    form = form[: form.index("</form>")]
    assert (
        f"/charges/{seats_id}" in opened and "5 12\n* 9" in html.unescape(form) and 'value="PER_UNIT" selected' in form
    )
    changed = post(
        editor, f"{path}/charges/{seats_id}", token, {**seats, "tiers_mode": "GRADUATED", "tiers": "10 8\n* 6"}
    )
    assert changed.status_code == 303
    second = _charges(api, "c-plan")
    assert second["PER_UNIT c-seats MONTHLY"]["id"] == seats_id
    assert second["PER_UNIT c-seats MONTHLY"]["tiersMode"] == "GRADUATED"
    assert {k: v for k, v in second.items() if k != "PER_UNIT c-seats MONTHLY"} == {
        k: v for k, v in first.items() if k != "PER_UNIT c-seats MONTHLY"
    }
    # Removing one leaves the others; removing the default price under a country's price is refused
    # with the pricing rule's own words, and nothing changes.
    assert post(editor, f"{path}/charges/{first['overage c-calls MONTHLY']['id']}/remove", token).status_code == 303
    assert set(_charges(api, "c-plan")) == {"FLAT_FEE MONTHLY", "PER_UNIT c-seats MONTHLY", "FLAT_FEE MONTHLY DE"}
    refused = post(editor, f"{path}/charges/{first['FLAT_FEE MONTHLY']['id']}/remove", token)
    assert refused.status_code == 400 and "overrides a default MONTHLY price, which is missing" in html.unescape(
        refused.text
    )
    duplicate = post(editor, f"{path}/charges", token, {**base, "amount": "30"})
    assert duplicate.status_code == 400 and "two FLAT_FEE prices for MONTHLY" in html.unescape(duplicate.text)
    boolean = post(editor, f"{path}/charges", token, {**seats, "feature_id": "c-nothing", "amount": "1"})
    assert boolean.status_code == 404
    assert set(_charges(api, "c-plan")) == {"FLAT_FEE MONTHLY", "PER_UNIT c-seats MONTHLY", "FLAT_FEE MONTHLY DE"}
    missing = post(editor, f"{path}/charges/charge-gone/remove", token)
    assert missing.status_code == 404 and "charge 'charge-gone' was not found" in html.unescape(missing.text)

    changes = [e for e in ok(api.get("/api/v1/audit-log", params={"entityType": "package_charges"})).json()["data"]]
    assert changes and {e["actor"] for e in changes} == {EDITOR}
    # A published plan's charges change only on a draft, as through the API; a viewer changes nothing.
    assert post(editor, f"{path}/publish", token, {"migration_type": "NEW_CUSTOMERS"}).status_code == 303
    published = post(editor, f"{path}/charges", token, {**base, "billing_period": "ANNUALLY"})
    by_api = api.patch("/api/v1/plans/c-plan", json={"charges": {"pricingType": "FREE"}})
    refused_like_the_api(published, by_api)
    assert 'data-testid="remove-charge"' not in viewer.get(path).text
    forged = viewer.post(f"{path}/charges/{seats_id}/remove", data={"csrf_token": csrf_of(viewer)})
    assert forged.status_code == 403
    assert set(_charges(api, "c-plan")) == {"FLAT_FEE MONTHLY", "PER_UNIT c-seats MONTHLY", "FLAT_FEE MONTHLY DE"}


def _console_draft(api: httpx.Client, editor: httpx.Client, token: str, prefix: str, name: str) -> str:
    """Product `<prefix>-prod` and, made in the console, the draft plan `<prefix>-plan`; the draft's page."""
    product(api, f"{prefix}-prod")
    made = post(
        editor, "/console/plans", token, {"id": f"{prefix}-plan", "display_name": name, "product_id": f"{prefix}-prod"}
    )
    assert made.status_code == 303
    return f"/console/plans/{prefix}-plan"


def test_a_currency_typed_as_the_console_shows_it_prices_the_draft(
    api: httpx.Client, editor: httpx.Client, token: str
) -> None:
    """The console writes currencies upper case ("29 USD"); typed so (or with spaces) in either price editor,
    it is the API's lower-case code, not a refusal listing every code."""
    path = _console_draft(api, editor, token, "cur", "Cur")
    feature(api, "cur-calls", meterType="INCREMENTAL")
    whole = {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "currency": "EUR", "amount": "20"}
    whole |= {"billing_country_code": "CH", "country_amount": "21", "overage_feature_id": "cur-calls"}
    answer = post(editor, f"{path}/price", token, whole | {"overage_amount": "0.5"})
    assert answer.status_code == 303, text_of(answer)
    tiered = {
        "billing_model": "USAGE_BASED",
        "billing_period": "ANNUALLY",
        "feature_id": "cur-calls",
        "tiers_mode": "VOLUME",
    }
    answer = post(editor, f"{path}/charges", token, tiered | {"currency": " Eur ", "tiers": "100 0.5\n* 0.25 1"})
    assert answer.status_code == 303, text_of(answer)
    charges = _charges(api, "cur-plan")
    assert {k: c["price"]["currency"] for k, c in charges.items() if c.get("price")} == {
        "FLAT_FEE MONTHLY": "eur",
        "FLAT_FEE MONTHLY CH": "eur",
        "overage cur-calls MONTHLY": "eur",
    }
    tiers = charges["USAGE_BASED cur-calls ANNUALLY"]["tiers"]
    assert [t["unitPrice"]["currency"] for t in tiers] == ["eur", "eur"] and tiers[1]["flatPrice"]["currency"] == "eur"


def test_the_audit_log_names_a_price_by_its_id_through_every_rewrite_of_the_draft(
    api: httpx.Client, editor: httpx.Client, token: str
) -> None:
    product(api, "au-prod")
    path = "/console/plans/au-plan"
    assert (
        post(
            editor, "/console/plans", token, {"id": "au-plan", "display_name": "Au", "product_id": "au-prod"}
        ).status_code
        == 303
    )
    flat = {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "10", "currency": "usd"}
    assert post(editor, f"{path}/charges", token, flat).status_code == 303
    monthly = _charges(api, "au-plan")["FLAT_FEE MONTHLY"]["id"]
    # Adding another price writes the draft's pricing again: the monthly price keeps its id, and its entries too.
    assert (
        post(editor, f"{path}/charges", token, {**flat, "billing_period": "ANNUALLY", "amount": "100"}).status_code
        == 303
    )
    assert _charges(api, "au-plan")["FLAT_FEE MONTHLY"]["id"] == monthly
    entries = ok(api.get("/api/v1/audit-log", params={"entityType": "package_charges", "entityId": monthly})).json()
    assert [e["action"] for e in reversed(entries["data"])] == ["CREATE", "DELETE", "CREATE"], entries
    assert {e["actor"] for e in entries["data"]} == {EDITOR}
    assert entries["data"][0]["changes"]["price_amount"] == "10"  # as it was typed: not "1E+1"


def test_a_drafts_trial_is_set_changed_and_removed_on_its_own_its_charges_kept(
    api: httpx.Client, editor: httpx.Client, token: str, viewer: httpx.Client
) -> None:
    path = _console_draft(api, editor, token, "tr", "Tr")
    flat = {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "10", "currency": "usd"}
    assert post(editor, f"{path}/charges", token, flat).status_code == 303
    assert (
        post(editor, f"{path}/charges", token, {**flat, "billing_period": "ANNUALLY", "amount": "100"}).status_code
        == 303
    )
    charges = _charges(api, "tr-plan")

    def trial() -> Any:
        return ok(api.get("/api/v1/plans/tr-plan")).json()["data"]["defaultTrialConfig"]

    month = {"duration": "1", "units": "MONTH", "trial_end_behavior": "CANCEL_SUBSCRIPTION"}
    assert post(editor, f"{path}/trial", token, month).status_code == 303
    assert trial() == {"duration": 1, "units": "MONTH", "budget": None, "trialEndBehavior": "CANCEL_SUBSCRIPTION"}
    assert _charges(api, "tr-plan") == charges  # a trial is not a price: both prices stay
    page = ok(editor.get(path)).text
    form = page[page.index('data-testid="trial-form"') :]
    form = form[: form.index("</form>")]
    assert 'value="1"' in form and 'value="MONTH" selected' in form and 'value="CANCEL_SUBSCRIPTION" selected' in form
    refused = post(editor, f"{path}/trial", token, {"duration": "2.5", "units": "DAY"})
    assert refused.status_code == 400 and "whole number of days or months" in html.unescape(refused.text)
    assert post(viewer, f"{path}/trial", csrf_of(viewer), {"duration": "3", "units": "DAY"}).status_code == 403
    assert trial()["duration"] == 1
    # A blank length removes the trial (the price editor's blank trial field keeps it).
    assert post(editor, f"{path}/trial", token, {"duration": "", "units": "DAY"}).status_code == 303
    assert trial() is None and _charges(api, "tr-plan") == charges
    entries = ok(api.get("/api/v1/audit-log", params={"entityType": "packages", "entityId": "tr-plan"})).json()
    removed = next(
        e["changes"]["default_trial_config"] for e in entries["data"] if "default_trial_config" in e["changes"]
    )
    assert removed[1] is None  # the newest change of the trial: to none


def test_a_price_per_block_of_units_is_added_and_edited_in_the_charge_editor(
    api: httpx.Client, editor: httpx.Client, token: str
) -> None:
    path = _console_draft(api, editor, token, "bl", "Bl")
    feature(api, "bl-calls", meterType="INCREMENTAL")
    blocks = {"billing_model": "USAGE_BASED", "billing_period": "MONTHLY", "feature_id": "bl-calls", "currency": "usd"}
    assert post(editor, f"{path}/charges", token, {**blocks, "amount": "10", "block_size": "1000"}).status_code == 303
    charge = _charges(api, "bl-plan")["USAGE_BASED bl-calls MONTHLY"]
    assert (charge["price"], charge["blockSize"]) == ({"amount": 10, "currency": "usd"}, 1000)
    page = text_of(editor.get(path))
    assert "USAGE_BASED bl-calls MONTHLY 10 USD per block of 1000" in page
    opened = ok(editor.get(path, params={"charge": charge["id"]})).text
    assert 'name="block_size" inputmode="decimal" size="6" value="1000"' in opened
    # A flat fee has no blocks: the pricing rule's own words, and nothing written.
    flat = {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "5", "block_size": "10"}
    refused = post(editor, f"{path}/charges", token, flat)
    assert refused.status_code == 400 and "FLAT_FEE takes no tiers or blockSize" in html.unescape(refused.text)
    assert list(_charges(api, "bl-plan")) == ["USAGE_BASED bl-calls MONTHLY"]


def test_a_credit_price_reads_as_credits_and_the_one_charge_editor_leaves_it_alone(
    api: httpx.Client, editor: httpx.Client, token: str
) -> None:
    """The one-charge editor has no credit fields: it offered to edit a credit price as a flat fee (saving
    it would have replaced the rate), and the price list said "no price" of 2 credits a call."""
    product(api, "cp-prod")
    feature(api, "cp-calls", meterType="INCREMENTAL")
    ok(api.post("/api/v1/credits/custom-currencies", json={"id": "cp-gems", "displayName": "Gems"}))
    ok(api.post("/api/v1/plans", json={"id": "cp-plan", "displayName": "Cp", "productId": "cp-prod"}))
    fee = {"billingPeriod": "MONTHLY", "price": {"amount": 5, "currency": "usd"}}
    rate = {"billingPeriod": "MONTHLY", "creditRate": {"amount": 2, "currencyId": "cp-gems"}}
    prices = [
        {"billingModel": "FLAT_FEE", "pricePeriods": [fee]},
        {"billingModel": "CREDIT_BASED", "featureId": "cp-calls", "pricePeriods": [rate]},
    ]
    ok(api.patch("/api/v1/plans/cp-plan", json={"charges": {"pricingType": "PAID", "pricingModels": prices}}))
    before = _charges(api, "cp-plan")
    credit_id = before["CREDIT_BASED cp-calls MONTHLY"]["id"]
    path = "/console/plans/cp-plan"
    page = editor.get(path).text
    assert "CREDIT_BASED cp-calls MONTHLY 2 cp-gems credit(s) a unit of usage" in text_of(editor.get(path))
    assert f"?charge={credit_id}" not in page and 'data-testid="edit-through-api"' in page
    assert 'aria-label="Edit FLAT_FEE MONTHLY"' in page  # the flat fee is still edited here
    # Opening the editor on it by address opens a new charge instead; a forged save is refused.
    assert f'action="{path}/charges/{credit_id}"' not in ok(editor.get(path, params={"charge": credit_id})).text
    flat = {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "amount": "3", "currency": "usd"}
    refused = post(editor, f"{path}/charges/{credit_id}", token, flat)
    assert refused.status_code == 400 and "change it through the API" in html.unescape(refused.text)
    assert _charges(api, "cp-plan") == before


def test_the_whole_price_editor_prices_another_country_in_its_own_currency(
    api: httpx.Client, editor: httpx.Client, token: str
) -> None:
    """ "Another price in country" took the default price's currency: 27 for Germany beside $29 became
    $27, with no way to say euros there."""
    _console_draft(api, editor, token, "cc", "Cc")
    price = {"billing_model": "FLAT_FEE", "billing_period": "MONTHLY", "currency": "usd", "amount": "29"}
    german = {"billing_country_code": "DE", "country_amount": "27", "country_currency": "EUR"}
    assert post(editor, "/console/plans/cc-plan/price", token, price | german).status_code == 303
    charges = _charges(api, "cc-plan")
    assert charges["FLAT_FEE MONTHLY"]["price"] == {"amount": 29, "currency": "usd"}
    assert charges["FLAT_FEE MONTHLY DE"]["price"] == {"amount": 27, "currency": "eur"}
    # Left blank, the country's price is in the default price's currency, as before.
    blank = german | {"billing_country_code": "CH", "country_currency": ""}
    assert post(editor, "/console/plans/cc-plan/price", token, price | blank).status_code == 303
    assert _charges(api, "cc-plan")["FLAT_FEE MONTHLY CH"]["price"] == {"amount": 27, "currency": "usd"}


# -- metadata ----------------------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)), max_size=6))
def test_metadata_rows_become_the_apis_metadata_or_are_refused(rows: list[tuple[str, str]]) -> None:
    keys, values = [k for k, _ in rows], [v for _, v in rows]
    stripped = [(k.strip(), v.strip()) for k, v in rows]
    kept = [(k, v) for k, v in stripped if k]
    try:
        found = metadata_of(keys, values)
    except InvalidArgument as exc:
        lonely = any(not k and v for k, v in stripped)
        twice = len({k for k, _ in kept}) != len(kept)
        assert lonely or twice, exc.message
        return
    assert found == dict(kept) and len(found) == len(kept)


@pytest.mark.parametrize("kind", ["products", "coupons"])
def test_metadata_of_products_and_coupons_is_edited_row_by_row_with_the_apis_validation(
    kind: str, api: httpx.Client, editor: httpx.Client, token: str, viewer: httpx.Client
) -> None:
    ref = f"md-{kind}"
    if kind == "products":
        ok(
            api.post(
                "/api/v1/products", json={"id": ref, "displayName": "Md", "metadata": {"tier": "gold", "old": "x"}}
            )
        )
    else:
        body = {"id": ref, "name": "Md", "percentOff": 10, "metadata": {"tier": "gold", "old": "x"}}
        ok(api.post("/api/v1/coupons", json=body))
    path = f"/console/{kind}/{ref}"
    page = ok(editor.get(path)).text
    assert 'name="meta_key" value="old"' in page and 'name="meta_key" value="tier"' in page

    def stored() -> dict[str, str]:
        if kind == "products":
            return ok(api.get(f"/api/v1/products/{ref}")).json()["data"]["metadata"]
        return next(c for c in ok(api.get("/api/v1/coupons")).json()["data"] if c["id"] == ref)["metadata"]

    # Rows as the page sends them: "old" emptied (removed), "tier" changed, one blank row filled, two blank.
    rows = {"meta_key": ["", "tier", "region", "", ""], "meta_value": ["x", "platinum", " eu ", "", ""]}
    refused = post(editor, f"{path}/metadata", token, rows)
    assert refused.status_code == 400 and "the value 'x' needs a key" in html.unescape(refused.text)
    assert stored() == {"tier": "gold", "old": "x"}
    rows["meta_value"][0] = ""
    assert post(editor, f"{path}/metadata", token, rows).status_code == 303
    assert stored() == {"tier": "platinum", "region": "eu"}
    too_long = post(editor, f"{path}/metadata", token, {"meta_key": ["k" * 256], "meta_value": ["v"]})
    by_api = api.patch(f"/api/v1/{kind}/{ref}", json={"metadata": {"k" * 256: "v"}})
    assert too_long.status_code == by_api.status_code == 400 and "metadata" in html.unescape(too_long.text)
    twice = post(editor, f"{path}/metadata", token, {"meta_key": ["a", "a "], "meta_value": ["1", "2"]})
    assert twice.status_code == 400 and "appears twice" in html.unescape(twice.text)
    entry = next(e for e in audited(api, ref) if "metadata_" in e["changes"] and e["action"] == "UPDATE")
    assert entry["actor"] == EDITOR and entry["changes"]["metadata_"][1] == {"tier": "platinum", "region": "eu"}
    # A viewer reads the metadata without a form, and its forged post changes nothing.
    seen = viewer.get(path).text
    assert 'data-testid="metadata-editor"' not in seen and "platinum" in seen
    forged = viewer.post(f"{path}/metadata", data={"csrf_token": csrf_of(viewer), "meta_key": [], "meta_value": []})
    assert forged.status_code == 403 and stored() == {"tier": "platinum", "region": "eu"}
    # All rows emptied: no metadata left.
    assert post(editor, f"{path}/metadata", token, {"meta_key": ["", ""], "meta_value": ["", ""]}).status_code == 303
    assert stored() == {}


# -- billing period switch on the same plan -----------------------------------------------------------------


def test_the_billing_period_switches_on_the_same_plan_after_the_preview_now_or_at_period_end(
    api: httpx.Client, editor: httpx.Client, token: str, viewer: httpx.Client
) -> None:
    product(api, "pd-prod")
    ok(api.post("/api/v1/plans", json={"id": "pd-plan", "displayName": "Pd", "productId": "pd-prod"}))
    periods = [
        {"billingPeriod": "MONTHLY", "price": {"amount": 10, "currency": "usd"}},
        {"billingPeriod": "ANNUALLY", "price": {"amount": 100, "currency": "usd"}},
    ]
    model = {"billingModel": "FLAT_FEE", "pricePeriods": periods}
    ok(api.patch("/api/v1/plans/pd-plan", json={"charges": {"pricingType": "PAID", "pricingModels": [model]}}))
    ok(api.post("/api/v1/plans/pd-plan/publish", json={"migrationType": "NEW_CUSTOMERS"}))
    published_plan(api, "pd-monthly-only", "pd-prod", monthly=5)
    ok(api.post("/api/v1/customers", json={"id": "pd-cust"}))
    ok(api.post("/api/v1/customers", json={"id": "pd-other"}))
    body = {"customerId": "pd-cust", "planId": "pd-plan", "billingPeriod": "MONTHLY"}
    sub = ok(api.post("/api/v1/subscriptions", json=body)).json()["data"]["id"]
    path = f"/console/subscriptions/{sub}"

    change = ok(editor.get(f"{path}/change")).text
    assert 'data-testid="period-form"' in change and '<option value="ANNUALLY">' in change
    wanted = {"billing_period": "ANNUALLY", "schedule_strategy": "IMMEDIATE"}
    preview = ok(editor.get(f"{path}/period", params=wanted))
    by_api = ok(
        api.post(
            "/api/v1/subscriptions/preview",
            json={**body, "billingPeriod": "ANNUALLY", "scheduleStrategy": "IMMEDIATE"},
        )
    ).json()["data"]
    shown = text_of(preview)
    assert by_api["recurringInvoice"]["total"] == 100
    assert "Plan pd-plan stays; it is billed annually instead of monthly, from now on" in shown
    assert "Total 100.00 USD" in shown and "Confirm billing period change" in shown
    assert "Confirm billing period change" not in text_of(viewer.get(f"{path}/period", params=wanted))
    forged = viewer.post(f"{path}/period", data={"csrf_token": csrf_of(viewer), **wanted})
    assert forged.status_code == 403

    assert post(editor, f"{path}/period", token, wanted).status_code == 303
    now = ok(api.get(f"/api/v1/subscriptions/{sub}")).json()["data"]
    assert (now["billingPeriod"], now["futureUpdates"]) == ("ANNUALLY", [])
    entry = next(e for e in audited(api, sub) if "billing_period" in e["changes"])
    assert (entry["actor"], entry["changes"]["billing_period"]) == (EDITOR, ["MONTHLY", "ANNUALLY"])
    # Back to monthly at the end of the (new, annual) period: scheduled, nothing changes yet.
    later = {"billing_period": "MONTHLY", "schedule_strategy": "END_OF_BILLING_PERIOD"}
    deferred = text_of(editor.get(f"{path}/period", params=later))
    assert "from the end of the current billing period" in deferred and "nothing is due now" in deferred
    assert "Due now" not in deferred and "Each period" in deferred
    assert post(editor, f"{path}/period", token, later).status_code == 303
    scheduled = ok(api.get(f"/api/v1/subscriptions/{sub}")).json()["data"]
    assert scheduled["billingPeriod"] == "ANNUALLY" and len(scheduled["futureUpdates"]) == 1

    # A plan with no price for the period: refused with the API's words.
    other = ok(
        api.post(
            "/api/v1/subscriptions",
            json={"customerId": "pd-other", "planId": "pd-monthly-only", "billingPeriod": "MONTHLY"},
        )
    ).json()["data"]["id"]
    refused = post(editor, f"/console/subscriptions/{other}/period", token, wanted)
    by_api_refusal = api.patch(f"/api/v1/subscriptions/{other}", json={"billingPeriod": "ANNUALLY"})
    refused_like_the_api(refused, by_api_refusal)
    bad = post(editor, f"{path}/period", token, {"billing_period": "WEEKLY"})
    assert bad.status_code == 400 and "billing_period" in html.unescape(bad.text)


# -- the overview: one-off charges apart from MRR -----------------------------------------------------------


@given(st.lists(st.tuples(st.sampled_from(["usd", "EUR", "jpy"]), st.decimals(0, 10_000, places=4))))
def test_one_off_totals_are_each_currencys_exact_sum_rounded_once(charges: list[tuple[str, Decimal]]) -> None:
    totals = one_off_totals(charges)
    for currency in {c.lower() for c, amount in charges if amount > 0}:
        exact = sum((a for c, a in charges if c.lower() == currency), Decimal(0))
        assert abs(totals[currency] - exact) <= Decimal("0.5") * Decimal(1).scaleb(-minor_unit_exponent(currency))
    assert set(totals) == {c.lower() for c, amount in charges if amount > 0}


def test_the_overview_shows_one_off_charges_per_currency_apart_from_mrr(
    api: httpx.Client, viewer: httpx.Client
) -> None:
    ok(api.post("/api/v1/credits/custom-currencies", json={"id": "oo-gems", "displayName": "Gems"}))
    ok(api.post("/api/v1/customers", json={"id": "oo-cust"}))

    def grant(kind: str, cost: dict[str, Any] | None) -> str:
        body = {"customerId": "oo-cust", "currencyId": "oo-gems", "amount": 100, "displayName": "Pack"}
        body |= {"grantType": kind} | ({"cost": cost} if cost else {})
        return str(ok(api.post("/api/v1/credits/grants", json=body)).json()["data"]["id"])

    grant("PAID", {"amount": 19.99, "currency": "usd"})
    grant("PAID", {"amount": 0.01, "currency": "usd"})
    grant("PAID", {"amount": 5, "currency": "eur"})
    grant("PAID", {"amount": 0, "currency": "eur"})  # given away: no charge
    grant("PROMOTIONAL", None)
    voided = grant("PAID", {"amount": 50, "currency": "eur"})
    ok(api.post(f"/api/v1/credits/grants/{voided}/void"))
    page = ok(viewer.get("/console")).text
    tile = page[page.index('data-testid="not-in-mrr"') :]
    tile = text_of_html(tile[: tile.index("</section>")])
    assert "One-off charges, last 30 days 5.00 EUR 20.00 USD 3 paid credit grant(s)" in tile
    mrr = page[page.index("Monthly recurring revenue") :]
    assert "EUR" not in text_of_html(mrr[: mrr.index("</section>")])  # nothing of the one-off in MRR


def text_of_html(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()
