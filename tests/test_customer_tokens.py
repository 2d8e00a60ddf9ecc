"""Customer tokens (issue #11, defect 7): a client key is public, so alone it reads no customer's data.

Every client-key route about a customer wants a valid, unexpired token for that customer (X-CUSTOMER-TOKEN,
signed by the environment's signing secret), and refuses any other with the same 401 whether the
customer exists or not. See docs/customer-tokens.md.
"""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import jwt
import pytest
import stigg
from hypothesis import given
from hypothesis import strategies as st
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import select

from entitle.environments import access, rules
from entitle.environments.models import Environment, KeyKind
from entitle.sdk import CUSTOMER_TOKEN_HEADER, customer_token
from entitle.secrets import secret_box
from tests.conftest import LiveServer
from tests.support.clock import TestClock
from tests.support.tokens import secret_of, token_for
from tests.test_auth import CLIENT_KEY_ROUTES

DOC = Path(__file__).resolve().parent.parent / "docs" / "customer-tokens.md"

# Each client-key route, as a request about one customer: (path, query).
Request = Callable[[str], tuple[str, dict[str, str]]]
CUSTOMER_ROUTES: dict[tuple[str, str], Request] = {
    ("GET", "/api/v1/customers/{customer_id}/entitlements"): lambda c: (
        f"/api/v1/customers/{quote(c, safe='')}/entitlements",
        {},
    ),
    ("GET", "/api/v1/customers/{customer_id}/entitlements/check"): lambda c: (
        f"/api/v1/customers/{quote(c, safe='')}/entitlements/check",
        {"featureId": "seats"},
    ),
    ("GET", "/api/v1/paywall"): lambda c: ("/api/v1/paywall", {"productId": "main", "customerId": c}),
    ("GET", "/api/v1/widgets/customers/{customer_id}"): lambda c: (
        f"/api/v1/widgets/customers/{quote(c, safe='')}",
        {},
    ),
    ("GET", "/api/v1/widgets/customers/{customer_id}/subscriptions"): lambda c: (
        f"/api/v1/widgets/customers/{quote(c, safe='')}/subscriptions",
        {},
    ),
    ("GET", "/api/v1/widgets/customers/{customer_id}/invoices"): lambda c: (
        f"/api/v1/widgets/customers/{quote(c, safe='')}/invoices",
        {},
    ),
}


def _seed(server: LiveServer) -> None:
    admin = server.stigg()
    admin.v1.features.create_feature(id="seats", display_name="Seats", feature_type="NUMBER", meter_type="FLUCTUATING")
    admin.v1.products.create_product(id="main", display_name="Main")
    admin.v1.plans.create(id="basic", display_name="Basic", product_id="main", pricing_type="FREE")
    admin.v1.plans.entitlements.create("basic", entitlements=[{"type": "FEATURE", "id": "seats", "usage_limit": 3}])
    admin.v1.plans.publish("basic", migration_type="NEW_CUSTOMERS")
    for customer in ("acme", "globex"):
        admin.v1.customers.provision(id=customer, name=customer.title())
        admin.v1.subscriptions.provision(customer_id=customer, plan_id="basic")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _call(http: httpx.Client, route: Request, customer: str, token: str | None) -> httpx.Response:
    path, params = route(customer)
    headers = {} if token is None else {CUSTOMER_TOKEN_HEADER: token}
    return http.get(path, params=params, headers=headers)


def _bad_tokens(server: LiveServer, customer: str) -> dict[str, str | None]:
    """Tokens that must not let their bearer read `customer`, by what is wrong with them."""
    secret = secret_of(server)
    good = token_for(server, customer)
    header, payload, signature = good.split(".")
    forged_payload = _b64(json.dumps({"sub": "someone-else-" + customer, "exp": 4102444800}).encode())
    claims = {"sub": customer, "exp": 4102444800}
    with warnings.catch_warnings():  # PyJWT finds the secret short for HS512: that is not the point here
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        hs512 = jwt.encode(claims, secret, algorithm="HS512")
    unsigned_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "missing": None,
        "empty": "",
        "garbage": "not-a-token",
        "other customer": token_for(server, "other-" + customer),
        "tampered payload": f"{header}.{forged_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        "other environment's secret": token_for(server, customer, environment="staging"),
        "unsigned (alg none)": f"{unsigned_header}.{_b64(json.dumps(claims).encode())}.",
        "another algorithm (HS512)": hs512,
        "no expiry": jwt.encode({"sub": customer}, secret, algorithm="HS256"),
        "not valid yet (nbf)": jwt.encode({**claims, "nbf": 4102444000}, secret, algorithm="HS256"),
        "expired": customer_token(secret, customer, now=datetime(2020, 1, 1, tzinfo=UTC)),
        "oversized": good + "A" * rules.MAX_TOKEN_LENGTH,
    }


def test_the_routes_here_are_every_client_key_route() -> None:
    """Every client-key read. The widgets' writes take the same `CustomerKey` check; they are refused
    another customer's token or none in test_widgets_api.py (a valid token here would make them write)."""
    assert set(CUSTOMER_ROUTES) == {route for route in CLIENT_KEY_ROUTES if route[0] == "GET"}
    writes = {route for route in CLIENT_KEY_ROUTES if route[0] != "GET"}
    assert writes and all(path.startswith("/api/v1/widgets/customers/{customer_id}/") for _, path in writes)


@pytest.mark.parametrize("route_name", sorted(CUSTOMER_ROUTES), ids=lambda r: r[1])
def test_a_client_key_reads_a_customer_only_with_that_customers_token(
    server: LiveServer, route_name: tuple[str, str]
) -> None:
    route = CUSTOMER_ROUTES[route_name]
    _seed(server)
    server.key("staging")  # an environment with a signing secret of its own
    with server.http(server.key(kind=KeyKind.CLIENT)) as page:
        granted = _call(page, route, "acme", token_for(server, "acme"))
        assert granted.status_code == 200, granted.text

        for_unknown = _bad_tokens(server, "nobody")
        for case, bad in _bad_tokens(server, "acme").items():
            refused = _call(page, route, "acme", bad)
            assert refused.status_code == 401, (case, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "UNAUTHENTICATED", case
            assert "acme" not in refused.text and "Acme" not in refused.text, case
            expected = (
                rules.MISSING_TOKEN
                if bad in (None, "")
                else rules.EXPIRED_TOKEN
                if case == "expired"
                else rules.INVALID_TOKEN
            )
            assert error["message"] == expected, case
            # The same answer for a customer that does not exist: nothing tells which ids are real.
            unknown = _call(page, route, "nobody", for_unknown[case])
            assert (unknown.status_code, unknown.json()) == (401, refused.json()), case

        # A valid token for an id that is no customer: whatever the route answers (404, or an empty
        # list), the backend that signed it already knew the id.
        assert _call(page, route, "nobody", token_for(server, "nobody")).status_code in (200, 404)

    # Server keys are unaffected: no token needed.
    with server.http() as backend:
        assert _call(backend, route, "acme", None).status_code == 200


@pytest.mark.parametrize("route_name", sorted(CUSTOMER_ROUTES), ids=lambda r: r[1])
def test_a_token_expires_on_entitles_clock(
    server: LiveServer, route_name: tuple[str, str], test_clock: TestClock
) -> None:
    route = CUSTOMER_ROUTES[route_name]
    _seed(server)
    token = token_for(server, "acme", expires_in=timedelta(minutes=10))
    with server.http(server.key(kind=KeyKind.CLIENT)) as page:
        test_clock.advance(timedelta(minutes=9, seconds=59))
        assert _call(page, route, "acme", token).status_code == 200
        test_clock.advance(timedelta(seconds=1))
        expired = _call(page, route, "acme", token)
        assert (expired.status_code, expired.json()["error"]["message"]) == (401, rules.EXPIRED_TOKEN)


def test_rotation_keeps_the_old_secret_for_its_grace_period_only(server: LiveServer, test_clock: TestClock) -> None:
    _seed(server)
    box = secret_box(server.data_dir)
    route = CUSTOMER_ROUTES[("GET", "/api/v1/customers/{customer_id}/entitlements")]
    old_token = token_for(server, "acme", expires_in=timedelta(days=2))
    new_secret, grace_end = access.rotate_signing_secret(server.db, box, "development", timedelta(hours=1))
    assert grace_end == test_clock.now() + timedelta(hours=1)
    with server.db.read() as s:  # encrypted at rest, with the secret box
        row = s.scalars(select(Environment).where(Environment.name == "development")).one()
        assert row.signing_secret_encrypted and new_secret not in row.signing_secret_encrypted
        assert box.decrypt(row.signing_secret_encrypted) == new_secret
    new_token = customer_token(new_secret, "acme", expires_in=timedelta(days=2), now=test_clock.now())
    with server.http(server.key(kind=KeyKind.CLIENT)) as page, server.http() as admin:
        assert admin.get("/api/v1/environment").json()["data"]["previousSigningSecretExpiresAt"] is not None
        test_clock.advance(timedelta(minutes=59, seconds=59))
        assert _call(page, route, "acme", old_token).status_code == 200
        assert _call(page, route, "acme", new_token).status_code == 200
        test_clock.advance(timedelta(seconds=1))
        late = _call(page, route, "acme", old_token)
        assert (late.status_code, late.json()["error"]["message"]) == (401, rules.INVALID_TOKEN)
        assert _call(page, route, "acme", new_token).status_code == 200
        assert admin.get("/api/v1/environment").json()["data"]["previousSigningSecretExpiresAt"] is None

        # A rotation without grace (a leaked secret) kills the replaced secret's tokens at once.
        newest, none = access.rotate_signing_secret(server.db, box, "development", timedelta(0))
        assert none is None
        assert _call(page, route, "acme", new_token).status_code == 401
        newest_token = customer_token(newest, "acme", now=test_clock.now())
        assert _call(page, route, "acme", newest_token).status_code == 200


def test_any_jwt_library_makes_a_valid_token(server: LiveServer) -> None:
    """What another language's backend does: its own JWT library, HS256, `sub` and `exp` (and maybe more)."""
    _seed(server)
    claims = {"sub": "acme", "exp": int(datetime.now(UTC).timestamp()) + 600, "iat": 0, "aud": "anything"}
    token = jwt.encode(claims, secret_of(server), algorithm="HS256")
    with server.http(server.key(kind=KeyKind.CLIENT)) as page:
        response = page.get("/api/v1/customers/acme/entitlements/check", params={"featureId": "seats"})
        assert response.status_code == 401
        response = page.get(
            "/api/v1/customers/acme/entitlements/check",
            params={"featureId": "seats"},
            headers={CUSTOMER_TOKEN_HEADER: token},
        )
        assert response.status_code == 200 and response.json()["data"]["usageLimit"] == 3


def test_the_official_client_with_a_client_key_and_a_token(server: LiveServer) -> None:
    _seed(server)
    browser = stigg.Stigg(
        api_key=server.key(kind=KeyKind.CLIENT),
        base_url=server.base_url,
        max_retries=0,
        default_headers={CUSTOMER_TOKEN_HEADER: token_for(server, "acme")},
    )
    assert browser.v1.customers.check_entitlement("acme", feature_id="seats").data.usage_limit == 3
    with pytest.raises(stigg.AuthenticationError):
        browser.v1.customers.check_entitlement("globex", feature_id="seats")


def test_an_environment_may_turn_tokens_off_and_shows_it(server: LiveServer) -> None:
    _seed(server)
    route = CUSTOMER_ROUTES[("GET", "/api/v1/customers/{customer_id}/entitlements")]
    with server.http(server.key(kind=KeyKind.CLIENT)) as page, server.http() as admin:
        settings = admin.get("/api/v1/environment").json()["data"]
        assert settings["customerTokensRequired"] is True and settings["allowedOrigins"] == []
        assert _call(page, route, "acme", None).status_code == 401

        access.update_settings(server.db, "development", customer_tokens_required=False)
        assert admin.get("/api/v1/environment").json()["data"]["customerTokensRequired"] is False
        assert _call(page, route, "acme", None).status_code == 200
        assert _call(page, route, "globex", "whatever").status_code == 200

        # Another environment keeps its own setting.
        with server.http(server.key("staging", KeyKind.CLIENT)) as staging_page:
            assert _call(staging_page, route, "acme", None).status_code == 401


@given(
    customer=st.text(min_size=1, max_size=40),
    other=st.text(min_size=1, max_size=40),
    ttl=st.integers(min_value=1, max_value=10**6),
    elapsed=st.integers(min_value=0, max_value=2 * 10**6),
)
def test_token_rules(customer: str, other: str, ttl: int, elapsed: int) -> None:
    secret = rules.new_signing_secret()
    issued = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    token = customer_token(secret, customer, expires_in=timedelta(seconds=ttl), now=issued)
    now = issued + timedelta(seconds=elapsed)
    refusal = rules.customer_token_refusal(token, customer, [secret], now)
    assert refusal == (None if elapsed < ttl else rules.EXPIRED_TOKEN)
    if other != customer:
        assert rules.customer_token_refusal(token, other, [secret], issued) == rules.INVALID_TOKEN
    assert rules.customer_token_refusal(token, customer, [rules.new_signing_secret()], issued) == rules.INVALID_TOKEN
    assert rules.customer_token_refusal(token, customer, [], issued) == rules.INVALID_TOKEN


def test_the_documented_example_is_what_the_helper_makes() -> None:
    text = DOC.read_text()
    example = re.search(r"<!-- example: (\{.*?\}) -->", text)
    assert example is not None, "docs/customer-tokens.md lost its worked example"
    given_values = json.loads(example.group(1))
    token = customer_token(
        given_values["secret"],
        given_values["customerId"],
        expires_in=timedelta(seconds=given_values["exp"] - given_values["now"]),
        now=datetime.fromtimestamp(given_values["now"], UTC),
    )
    assert token in text
    header, payload, _ = token.split(".")
    assert header in text and payload in text
    assert jwt.decode(token, given_values["secret"], algorithms=["HS256"], options={"verify_exp": False}) == {
        "sub": given_values["customerId"],
        "exp": given_values["exp"],
    }
