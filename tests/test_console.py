"""The admin console, server side (issue 14), on SQLite and PostgreSQL: served at /, assets and /docs
offline, sign-in with throttling, signed HttpOnly session cookies, logout, CSRF on every form, roles,
and the audit log of writes made through the console and the API."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import httpx
import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import func, select, update

from entitle.audit.models import AuditEntry
from entitle.console import accounts, rules
from entitle.console.models import ConsoleUser
from entitle.console.routes import LOGIN_CSRF_COOKIE
from entitle.console.web import COOKIE
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.environments.models import KeyKind
from entitle.environments.service import environment_pk
from entitle.errors import Unauthenticated
from entitle.jobs.models import DEAD, Job
from entitle.jobs.service import enqueue
from entitle.subscriptions.models import Subscription
from tests.conftest import LiveServer
from tests.support.console import CHEAP_HASHER, PASSWORD, browser, csrf_of, make_user, sign_in, signed_in
from tests.test_core_path import build_catalog


def _customer(api: httpx.Client, ref: str) -> None:
    answer = api.post("/api/v1/customers", json={"id": ref, "name": f"Name of {ref}"})
    assert answer.status_code == 200, answer.text


def _plan(api: httpx.Client, ref: str = "basic") -> None:
    made = api.post("/api/v1/products", json={"id": f"prod-{ref}", "displayName": "Product"})
    assert made.status_code == 200, made.text
    body = {"id": ref, "displayName": ref.title(), "productId": f"prod-{ref}", "pricingType": "FREE"}
    assert api.post("/api/v1/plans", json=body).status_code == 200
    assert api.post(f"/api/v1/plans/{ref}/publish", json={"migrationType": "NEW_CUSTOMERS"}).status_code == 200


def _count(server: LiveServer, model: type, **where: object) -> int:
    with server.db.read() as s:
        stmt = select(func.count()).select_from(model)
        for column, value in where.items():
            stmt = stmt.where(getattr(model, column) == value)
        return int(s.scalar(stmt) or 0)


def test_root_redirects_to_the_console_and_every_asset_is_served_locally(server: LiveServer) -> None:
    with browser(server.base_url) as web:
        assert web.get("/").headers["location"] == "/console"
        assert web.get("/console").headers["location"] == "/console/login"
        login = web.get("/console/login")
        docs = web.get("/docs")
        for page in (login, docs):
            assert page.status_code == 200
            # Nothing is fetched from another host: every script, style and icon is ours.
            refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert refs and all(ref.startswith(("/", "#")) for ref in refs), refs
            for ref in refs:
                if ref.startswith("/console/static/"):
                    assert web.get(ref).status_code == 200, ref
        assert "/openapi.json" in docs.text and "swagger-ui-5.35.0/swagger-ui-bundle.js" in docs.text
        assert web.get("/redoc").status_code == 404


def test_sign_in_sets_a_signed_http_only_lax_cookie_and_logout_ends_the_session(server: LiveServer) -> None:
    email = make_user(server.db, "ops@example.com", "viewer")
    with browser(server.base_url) as web:
        answer = sign_in(web, email)
        assert answer.status_code == 303 and answer.headers["location"] == "/console"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
        assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Path=/console" in cookie and "Secure" not in cookie  # plain http here; https adds Secure
        value = web.cookies[COOKIE]
        assert web.get("/console").status_code == 200
        token = csrf_of(web)
        assert web.post("/console/logout", data={"csrf_token": token}).status_code == 303
        # The old cookie, replayed, opens nothing: the session row is gone.
        with browser(server.base_url) as replay:
            replay.cookies.set(COOKIE, value, path="/console")
            assert replay.get("/console").status_code == 303
        # A forged or tampered cookie is no session either.
        with browser(server.base_url) as forged:
            forged.cookies.set(COOKIE, value[:-4] + "AAAA", path="/console")
            assert forged.get("/console").status_code == 303


def test_the_sign_in_form_needs_the_token_it_was_shown(server: LiveServer) -> None:
    email = make_user(server.db, "login-csrf@example.com", "viewer")
    with browser(server.base_url) as web:
        # Posted from another site: no form token cookie, or a token that is not the cookie's.
        cold = web.post("/console/login", data={"email": email, "password": PASSWORD})
        assert cold.status_code == 403 and COOKIE not in web.cookies
        csrf_of(web, "/console/login")
        forged = web.post("/console/login", data={"email": email, "password": PASSWORD, "csrf_token": "guess"})
        assert forged.status_code == 403 and COOKIE not in web.cookies
        assert sign_in(web, email).status_code == 303 and COOKIE in web.cookies


def test_wrong_passwords_are_refused_then_throttled_even_with_the_right_one(server: LiveServer) -> None:
    email = make_user(server.db, "target@example.com", "admin")
    with browser(server.base_url) as web:
        for _ in range(rules.MAX_FAILURES):
            wrong = sign_in(web, email, "not the password")
            assert wrong.status_code == 401 and "wrong email or password" in wrong.text
        locked = sign_in(web, email)
        assert locked.status_code == 429 and "too many failed sign-ins" in locked.text
        assert COOKIE not in web.cookies
        # An email with no user is throttled alike, so the answers reveal no account.
        for _ in range(rules.MAX_FAILURES):
            assert sign_in(web, "nobody@example.com", "x").status_code == 401
        assert sign_in(web, "nobody@example.com", "x").status_code == 429


def test_a_post_without_the_csrf_token_is_refused_and_writes_nothing(server: LiveServer, api: httpx.Client) -> None:
    _customer(api, "c-csrf")
    email = make_user(server.db, "editor@example.com", "editor")
    with signed_in(server.base_url, email) as web:
        for token in (None, "", "forged-token"):
            data = {} if token is None else {"csrf_token": token}
            refused = web.post("/console/customers/c-csrf/archive", data=data)
            assert refused.status_code == 403 and "CSRF_TOKEN_INVALID" in refused.text
        assert _count(server, Customer, ref_id="c-csrf", archived_at=None) == 1
        # With the page's token the same form works.
        ok = web.post("/console/customers/c-csrf/archive", data={"csrf_token": csrf_of(web)})
        assert ok.status_code == 303
        assert _count(server, Customer, ref_id="c-csrf", archived_at=None) == 0


def test_archiving_lands_on_the_archived_customers_page_which_unarchives_it(
    server: LiveServer, api: httpx.Client
) -> None:
    """The archive button redirected to the customer's page, which then answered "That was refused: customer
    was not found" (the page read the customer as the API does, archived ones being 404 there): a support
    agent saw their own archive reported as a failure, and an archived customer could not be looked at."""
    _customer(api, "c-gone")
    editor = make_user(server.db, "archiver@example.com", "editor")
    viewer = make_user(server.db, "archive-viewer@example.com", "viewer")
    with signed_in(server.base_url, editor) as web:
        token = csrf_of(web)
        archived = web.post("/console/customers/c-gone/archive", data={"csrf_token": token}, follow_redirects=True)
        assert archived.status_code == 200, archived.text
        assert "archived</span>" in archived.text and "/console/customers/c-gone/unarchive" in archived.text
        assert '/console/customers/c-gone/archive"' not in archived.text and "Preview price" not in archived.text
        assert api.get("/api/v1/customers/c-gone").status_code == 404  # the API still answers as Stigg's
        back = web.post("/console/customers/c-gone/unarchive", data={"csrf_token": token}, follow_redirects=True)
        assert back.status_code == 200 and "archived</span>" not in back.text
    assert api.get("/api/v1/customers/c-gone").status_code == 200
    with signed_in(server.base_url, viewer) as web:
        assert api.post("/api/v1/customers/c-gone/archive").status_code == 200
        page = web.get("/console/customers/c-gone")
        assert page.status_code == 200 and "archived</span>" in page.text and "/unarchive" not in page.text
        refused = web.post("/console/customers/c-gone/unarchive", data={"csrf_token": csrf_of(web)})
        assert refused.status_code == 403


def test_a_viewer_sees_no_edit_controls_and_its_forged_posts_are_refused(server: LiveServer, api: httpx.Client) -> None:
    _customer(api, "c-view")
    _plan(api)
    email = make_user(server.db, "viewer@example.com", "viewer")
    with signed_in(server.base_url, email) as web:
        page = web.get("/console/customers/c-view")
        assert page.status_code == 200 and "c-view" in page.text
        for control in ("/archive", "/promotions", "/provision", "Preview price", "cancellation_time"):
            assert control not in page.text
        token = csrf_of(web)  # the viewer's own valid token: the role alone refuses
        forged = [
            ("/console/customers/c-view/archive", {}),
            ("/console/customers/c-view/subscriptions", {"plan": "basic"}),
            ("/console/customers/c-view/promotions", {"feature_id": "f", "period": "1 week"}),
            ("/console/settings/keys", {"kind": "server"}),
            ("/console/settings/users", {"email": "x@example.com", "role": "admin", "password": PASSWORD}),
        ]
        for path, data in forged:
            refused = web.post(path, data={"csrf_token": token, **data})
            assert refused.status_code == 403, (path, refused.text)
        assert web.get("/console/settings").status_code == 403
    assert _count(server, Customer, ref_id="c-view", archived_at=None) == 1
    assert _count(server, Subscription) == 0
    assert _count(server, AuditEntry, actor=email) == 0


def test_an_editor_edits_customers_but_not_keys_or_users(server: LiveServer, api: httpx.Client) -> None:
    _customer(api, "c-edit")
    _plan(api)
    email = make_user(server.db, "ed@example.com", "editor")
    with signed_in(server.base_url, email) as web:
        token = csrf_of(web)
        preview = web.get("/console/customers/c-edit/provision", params={"plan": "basic"})
        assert preview.status_code == 200 and "Confirm subscription" in preview.text
        made = web.post("/console/customers/c-edit/subscriptions", data={"csrf_token": token, "plan": "basic"})
        assert made.status_code == 303
        assert web.post("/console/settings/keys", data={"csrf_token": token, "kind": "server"}).status_code == 403
        # A rule's refusal reads as the API words it.
        unknown = web.post("/console/customers/c-edit/subscriptions", data={"csrf_token": token, "plan": "nope"})
        by_api = api.post("/api/v1/subscriptions", json={"customerId": "c-edit", "planId": "nope"})
        assert unknown.status_code == by_api.status_code
        assert by_api.json()["error"]["message"] in html.unescape(unknown.text)
    assert _count(server, Subscription, plan_ref="basic") == 1


def test_an_admin_creates_a_key_shown_once_and_a_user(server: LiveServer) -> None:
    email = make_user(server.db, "root@example.com", "admin")
    with signed_in(server.base_url, email) as web:
        token = csrf_of(web)
        made = web.post("/console/settings/keys", data={"csrf_token": token, "kind": "server"})
        assert made.status_code == 200
        key = re.search(r'data-testid="new-key"[^>]*|value="(server-development-[^"]+)"', made.text)
        raw = re.search(r'value="(server-development-[^"]+)"', made.text)
        assert key and raw
        with server.http(raw.group(1)) as fresh:
            assert fresh.get("/api/v1/customers").status_code == 200
        # Shown once: the settings page lists the prefix, never the key.
        assert raw.group(1) not in web.get("/console/settings").text
        added = web.post(
            "/console/settings/users",
            data={"csrf_token": token, "email": "New@Example.com", "role": "viewer", "password": PASSWORD},
        )
        assert added.status_code == 303
        short = web.post(
            "/console/settings/users",
            data={"csrf_token": token, "email": "b@example.com", "role": "viewer", "password": "short"},
        )
        assert short.status_code == 400 and "at least 12 characters" in short.text
    with signed_in(server.base_url, "new@example.com") as newcomer:
        assert newcomer.get("/console").status_code == 200


def test_the_audit_log_names_the_author_of_console_and_api_writes(server: LiveServer, api: httpx.Client) -> None:
    _customer(api, "c-audit")
    email = make_user(server.db, "auditor@example.com", "editor")
    with signed_in(server.base_url, email) as web:
        token = csrf_of(web)
        assert web.post("/console/customers/c-audit/archive", data={"csrf_token": token}).status_code == 303
        shown = web.get("/console/audit-log")
        assert shown.status_code == 200 and email in shown.text and "c-audit" in shown.text
    listing = api.get("/api/v1/audit-log", params={"entityId": "c-audit"})
    assert listing.status_code == 200, listing.text
    entries = listing.json()["data"]
    assert [(e["action"], e["actorType"]) for e in entries] == [("UPDATE", "USER"), ("CREATE", "API_KEY")]
    archived, created = entries
    assert archived["actor"] == email and archived["entityType"] == "customers"
    assert archived["changes"]["archived_at"][0] is None and archived["changes"]["archived_at"][1]
    assert server.server_key.startswith(created["actor"]) and len(created["actor"]) < len(server.server_key)
    assert created["changes"]["ref_id"] == "c-audit"
    assert set(listing.json()["pagination"]) == {"next", "prev"}
    # Another environment's server key sees none of it; a client key may not read it.
    with server.http(server.key("staging")) as staging:
        assert staging.get("/api/v1/audit-log").json()["data"] == []
    with server.http(server.key(kind=KeyKind.CLIENT)) as public:
        assert public.get("/api/v1/audit-log").status_code == 403


def test_audit_log_pages_newest_first(server: LiveServer, api: httpx.Client) -> None:
    for i in range(5):
        _customer(api, f"c-page-{i}")
    first = api.get("/api/v1/audit-log", params={"limit": 2, "entityType": "customers"}).json()
    assert [e["entityId"] for e in first["data"]] == ["c-page-4", "c-page-3"]
    second = api.get("/api/v1/audit-log", params={"limit": 2, "after": first["pagination"]["next"]}).json()
    assert [e["entityId"] for e in second["data"]] == ["c-page-2", "c-page-1"]
    back = api.get("/api/v1/audit-log", params={"limit": 2, "before": second["pagination"]["prev"]}).json()
    assert [e["entityId"] for e in back["data"]] == ["c-page-4", "c-page-3"]


def test_the_api_ignores_console_cookies_and_sets_none(server: LiveServer, api: httpx.Client) -> None:
    email = make_user(server.db, "cookie@example.com", "admin")
    with signed_in(server.base_url, email) as web:
        # A console session is no API credential.
        cookie = web.cookies[COOKIE]
        anonymous = httpx.get(f"{server.base_url}/api/v1/customers", cookies={COOKIE: cookie})
        assert anonymous.status_code == 401
    answer = api.get("/api/v1/customers")
    assert answer.status_code == 200 and "set-cookie" not in answer.headers


def test_the_environment_switcher_changes_the_environment_and_marks_production(server: LiveServer) -> None:
    server.key("production")
    email = make_user(server.db, "switch@example.com", "viewer")
    with signed_in(server.base_url, email) as web:
        page = web.get("/console").text
        assert "<strong>development</strong>" in page and "PRODUCTION" not in page.split("<main")[0]
        moved = web.post("/console/environment", data={"csrf_token": csrf_of(web), "environment": "production"})
        assert moved.status_code == 303
        page = web.get("/console/customers").text
        assert "<strong>production</strong>" in page and 'class="badge-prod"' in page
        unknown = web.post("/console/environment", data={"csrf_token": csrf_of(web), "environment": "nope"})
        assert unknown.status_code == 404


@pytest.mark.parametrize("path", ["/console/customers/missing", "/console/customers?after=garbage"])
def test_console_errors_are_pages_not_json(server: LiveServer, path: str) -> None:
    email = make_user(server.db, "err@example.com", "viewer")
    with signed_in(server.base_url, email) as web:
        page = web.get(path)
        assert page.status_code in (400, 404) and page.headers["content-type"].startswith("text/html")
        assert "That was refused" in page.text


def test_the_overview_counts_subscriptions_and_monthly_recurring_revenue(server: LiveServer) -> None:
    client = server.stigg()
    build_catalog(client)
    for ref in ("m1", "m2"):
        client.v1.customers.provision(id=ref, name=ref)
        client.v1.subscriptions.provision(customer_id=ref, plan_id="pro", billing_period="MONTHLY")
    client.v1.customers.provision(id="f1", name="f1")
    client.v1.subscriptions.provision(customer_id="f1", plan_id="free")
    email = make_user(server.db, "numbers@example.com", "viewer")
    with signed_in(server.base_url, email) as web:
        page = web.get("/console")
        assert page.status_code == 200
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
        assert "Customers 3 " in text
        assert "20.00 USD" in text  # two monthly Pro at 10: the free plan adds nothing
        assert "pro ACTIVE 2" in text and "free ACTIVE 1" in text
        assert 'aria-label="New subscriptions per day: 3 from' in page.text


def test_an_editor_creates_a_metered_feature_with_the_meter_editor(server: LiveServer, api: httpx.Client) -> None:
    email = make_user(server.db, "catalog@example.com", "editor")
    with signed_in(server.base_url, email) as web:
        token = csrf_of(web, "/console/features")
        form = {
            "csrf_token": token,
            "id": "tokens",
            "display_name": "Tokens",
            "feature_type": "NUMBER",
            "meter_type": "INCREMENTAL",
            "feature_units": "token",
            "aggregation": "SUM",
            "aggregation_field": "tokens",
            "cond_field_0": "eventName",
            "cond_op_0": "EQUALS",
            "cond_value_0": "completion",
            "cond_field_1": "model",
            "cond_op_1": "IN",
            "cond_value_1": "small, large",
        }
        assert web.post("/console/features", data=form).status_code == 303
        listed = web.get("/console/features").text
        assert "SUM(tokens) where eventName EQUALS completion and model IN small,large" in listed
        # The API's own rule and message: a boolean feature has no meter.
        bad = web.post("/console/features", data={**form, "id": "flag", "feature_type": "BOOLEAN"})
        by_api = api.post(
            "/api/v1/features",
            json={"id": "flag", "displayName": "Flag", "featureType": "BOOLEAN", "meterType": "INCREMENTAL"},
        )
        assert bad.status_code == by_api.status_code == 400
        assert by_api.json()["error"]["message"] in html.unescape(bad.text)
    meter = api.get("/api/v1/features/tokens").json()["data"]["meter"]
    assert meter == {
        "aggregation": {"function": "SUM", "field": "tokens"},
        "filters": [
            {
                "conditions": [
                    {"field": "eventName", "operation": "EQUALS", "value": "completion", "values": None},
                    {"field": "model", "operation": "IN", "value": None, "values": ["small", "large"]},
                ]
            }
        ],
    }


def test_an_editor_builds_a_plan_with_a_tiered_price_and_a_trial_and_publishes_it(
    server: LiveServer, api: httpx.Client
) -> None:
    api.post("/api/v1/products", json={"id": "main", "displayName": "Main"})
    api.post(
        "/api/v1/features",
        json={"id": "seats", "displayName": "Seats", "featureType": "NUMBER", "meterType": "FLUCTUATING"},
    )
    email = make_user(server.db, "pricing@example.com", "editor")
    with signed_in(server.base_url, email) as web:
        token = csrf_of(web, "/console/plans")
        made = web.post(
            "/console/plans", data={"csrf_token": token, "id": "team", "display_name": "Team", "product_id": "main"}
        )
        assert made.status_code == 303 and made.headers["location"] == "/console/plans/team"
        entitled = web.post(
            "/console/plans/team/entitlements",
            data={"csrf_token": token, "feature_id": "seats", "usage_limit": "20", "reset_period": ""},
        )
        assert entitled.status_code == 303
        priced = web.post(
            "/console/plans/team/price",
            data={
                "csrf_token": token,
                "billing_model": "PER_UNIT",
                "billing_period": "MONTHLY",
                "feature_id": "seats",
                "currency": "usd",
                "tiers_mode": "GRADUATED",
                "tiers": "10 5\n* 4 1.5",
                "trial_days": "14",
            },
        )
        assert priced.status_code == 303, priced.text
        bad_tiers = web.post(
            "/console/plans/team/price",
            data={"csrf_token": token, "billing_model": "PER_UNIT", "billing_period": "MONTHLY", "tiers": "ten 5"},
        )
        assert bad_tiers.status_code == 400 and "tier line 1" in bad_tiers.text
        page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", web.get("/console/plans/team").text))
        assert "graduated tiers: up to 10 at 5 USD; beyond at 4 USD + 1.5 USD flat" in page
        assert "trial 14 day(s)" in page
        published = web.post(
            "/console/plans/team/publish", data={"csrf_token": token, "migration_type": "NEW_CUSTOMERS"}
        )
        assert published.status_code == 303
        assert 'data-testid="plan-status">PUBLISHED' in web.get("/console/plans/team").text
    plan = api.get("/api/v1/plans/team").json()["data"]
    assert plan["status"] == "PUBLISHED" and plan["pricingType"] == "PAID"
    assert plan["defaultTrialConfig"]["duration"] == 14 and plan["defaultTrialConfig"]["units"] == "DAY"
    assert [e["id"] for e in plan["entitlements"]] == ["seats"]
    charges = api.get("/api/v1/plans/team/charges").json()["data"]
    assert [(c["billingModel"], c["tiersMode"]) for c in charges] == [("PER_UNIT", "GRADUATED")]


def test_over_https_the_session_cookie_is_secure(server: LiveServer) -> None:
    email = make_user(server.db, "tls@example.com", "viewer")
    # As behind a proxy that terminates TLS (uvicorn trusts the forwarded scheme from 127.0.0.1).
    with browser(server.base_url) as web:
        web.headers["X-Forwarded-Proto"] = "https"
        form = web.get("/console/login")
        login_cookie = form.headers["set-cookie"]
        assert login_cookie.startswith(f"{LOGIN_CSRF_COOKIE}=") and "Secure" in login_cookie
        # This client speaks plain http, so it would not send a Secure cookie back: hand it over.
        token = csrf_of(web, "/console/login")
        web.cookies.clear()
        web.cookies.set(LOGIN_CSRF_COOKIE, token, path="/console/login")
        answer = web.post("/console/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
        assert answer.status_code == 303, answer.text
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_integrations_are_for_admins_refuse_what_the_api_refuses_and_retry_dead_jobs(
    server: LiveServer, api: httpx.Client
) -> None:
    env_id = environment_pk(server.db, "development")
    with server.db.transaction() as s:
        job = enqueue(s, env_id, "console.test.never_registered", {}, run_at=datetime(2030, 1, 1, tzinfo=UTC))
        job.status, job.attempts, job.last_error = DEAD, 12, "boom"
        s.flush()
        job_pk = job.pk
    editor = make_user(server.db, "not-admin@example.com", "editor")
    with signed_in(server.base_url, editor) as web:
        assert web.get("/console/integrations").status_code == 403
        token = csrf_of(web)
        assert web.post(f"/console/jobs/{job_pk}/retry", data={"csrf_token": token}).status_code == 403
    admin = make_user(server.db, "ops-admin@example.com", "admin")
    with signed_in(server.base_url, admin) as web:
        page = web.get("/console/integrations")
        assert page.status_code == 200 and "console.test.never_registered" in page.text and "boom" in page.text
        token = csrf_of(web, "/console/integrations")
        live = "sk_live_" + "x" * 24
        refused = web.post("/console/integrations", data={"csrf_token": token, "api_secret_key": live})
        by_api = api.post("/api/v1/integrations", json={"vendorIdentifier": "STRIPE", "apiSecretKey": live})
        assert refused.status_code == by_api.status_code and 400 <= by_api.status_code < 500
        assert by_api.json()["error"]["message"] in html.unescape(refused.text)
        assert web.post(f"/console/jobs/{job_pk}/retry", data={"csrf_token": token}).status_code == 303
        assert web.post("/console/jobs/nope/retry", data={"csrf_token": token}).status_code == 400
    with server.db.read() as s:
        assert s.get(Job, job_pk).status == "PENDING"  # type: ignore[union-attr]


def test_webhook_endpoints_are_for_admins_with_the_secret_shown_once(server: LiveServer, api: httpx.Client) -> None:
    editor = make_user(server.db, "hooks-editor@example.com", "editor")
    with signed_in(server.base_url, editor) as web:
        assert web.get("/console/webhooks").status_code == 403
    admin = make_user(server.db, "hooks-admin@example.com", "admin")
    with signed_in(server.base_url, admin) as web:
        token = csrf_of(web, "/console/webhooks")
        form = {"csrf_token": token, "url": "https://hooks.example.com/entitle", "event_types": ["customer.created"]}
        made = web.post("/console/webhooks", data=form)
        assert made.status_code == 200
        secret = re.search(r'data-testid="webhook-secret"', made.text) and re.search(
            r'id="wh-secret" readonly value="([^"]+)"', made.text
        )
        assert secret
        listed = api.get("/api/v1/webhooks").json()["data"]
        assert [(w["url"], w["eventTypes"]) for w in listed] == [
            ("https://hooks.example.com/entitle", ["customer.created"])
        ]
        assert secret.group(1) not in web.get("/console/webhooks").text
        page = web.get(f"/console/webhooks/{listed[0]['id']}")
        assert page.status_code == 200 and "Nothing delivered yet" in page.text
        private = {**form, "url": "http://127.0.0.1:9/hook"}
        refused = web.post("/console/webhooks", data=private)
        by_api = api.post("/api/v1/webhooks", json={"url": private["url"], "eventTypes": ["customer.created"]})
        assert refused.status_code == by_api.status_code == 400
        assert by_api.json()["error"]["message"] in html.unescape(refused.text)


def test_an_unknown_email_costs_a_password_check_like_a_wrong_password(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time a failed sign-in takes must not tell which emails have accounts: an unknown email is
    checked against a stand-in hash, as a known one is against its own."""
    accounts.create_user(db, "known@example.com", "viewer", "right-password-1")
    checked: list[str] = []
    verify = accounts._verify

    def counted(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return verify(password_hash, password)

    monkeypatch.setattr(accounts, "_verify", counted)
    for email in ("known@example.com", "nobody@example.com"):
        with pytest.raises(Unauthenticated):
            accounts.sign_in(db, email, "wrong-password")
    assert len(checked) == 2 and all(h.startswith("$argon2") for h in checked) and checked[0] != checked[1]


def test_a_hash_made_with_other_parameters_is_upgraded_at_the_next_sign_in(db: Database) -> None:
    """The session hashes with CHEAP_HASHER (tests/conftest.py): a hash of other parameters (as an older
    release's would be) is replaced by one of the current parameters once its password proved right."""
    accounts.create_user(db, "old@example.com", "viewer", PASSWORD)
    older = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash(PASSWORD)
    with db.transaction() as s:
        s.execute(update(ConsoleUser).where(ConsoleUser.email == "old@example.com").values(password_hash=older))

    def stored() -> str:
        with db.read() as s:
            return s.scalars(select(ConsoleUser.password_hash).where(ConsoleUser.email == "old@example.com")).one()

    with pytest.raises(Unauthenticated):
        accounts.sign_in(db, "old@example.com", "wrong-password")
    assert stored() == older  # a wrong password changes nothing
    accounts.sign_in(db, "old@example.com", PASSWORD)
    upgraded = stored()
    assert upgraded != older
    current = extract_parameters(CHEAP_HASHER.hash(PASSWORD))
    assert extract_parameters(upgraded) == current
    accounts.sign_in(db, "old@example.com", PASSWORD)  # the new hash holds the same password
    assert stored() == upgraded
