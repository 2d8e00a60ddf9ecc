"""API keys and environments, through real HTTP: who may call what, and what each environment can see."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import stigg
from fastapi.routing import APIRoute
from sqlalchemy import update

from entitle.app import ROUTERS
from entitle.clock import utcnow
from entitle.environments.models import ApiKey, KeyKind
from entitle.environments.service import hash_key
from tests.conftest import LiveServer

# Routes a *client* key (the one shipped to browsers) may call: entitlement reads, the paywall and the widgets'.
# Listed as (METHOD, path template); each is checked to accept a client key instead of refusing it.
CLIENT_KEY_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/api/v1/customers/{customer_id}/entitlements"),
        ("GET", "/api/v1/customers/{customer_id}/entitlements/check"),
        ("GET", "/api/v1/paywall"),
        # The embeddable widgets' routes: a customer's own page, with that customer's token (issue 15).
        *(
            (method, f"/api/v1/widgets/customers/{{customer_id}}{path}")
            for method, path in (
                ("GET", ""),
                ("GET", "/subscriptions"),
                ("GET", "/invoices"),
                ("POST", "/preview"),
                ("POST", "/setup-intent"),
                ("POST", "/payment-method"),
                ("POST", "/subscriptions"),
                ("POST", "/subscriptions/{subscription_id}/cancel"),
                ("DELETE", "/subscriptions/{subscription_id}/future-update/schedule"),
                ("POST", "/portal-session"),
            )
        ),
    }
)

# Routes that need no key at all. They live outside /api/ and are not part of the sweep.
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset({("GET", "/healthz")})

# Routes under /api/ that take no API key because something else authenticates the caller, with why.
# The sweep checks that an anonymous call to each is still refused (here: an unknown integration is 404).
SIGNED_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/integrations/{integration_id}/webhooks/stripe"): (
        "Stripe calls it: the Stripe-Signature header, checked against the integration's webhook secret, "
        "authenticates the event (tests/billing/test_stripe_webhooks.py)"
    ),
}

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def api_routes(server: LiveServer) -> list[tuple[str, str]]:
    """Every (METHOD, path template) under /api/: the served OpenAPI schema plus the routers themselves,
    so routes hidden from the schema are swept too. New routes are covered without touching this test."""
    found: set[tuple[str, str]] = set()
    schema = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    for path, operations in schema["paths"].items():
        for method in operations:
            if method.upper() in _METHODS:
                found.add((method.upper(), path))
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                found.update((m, route.path) for m in route.methods if m in _METHODS)
    return sorted((m, p) for m, p in found if p.startswith("/api/"))


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _send(http: httpx.Client, method: str, path: str) -> httpx.Response:
    # A syntactically valid JSON body everywhere but GET, as the official client would send one.
    if method == "GET":
        return http.get(_concrete(path))
    return http.request(method, _concrete(path), json={})


def _assert_error(response: httpx.Response, status: int, code: str, where: Any = None) -> None:
    assert response.status_code == status, (where, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, (where, body)
    assert body["error"]["code"] == code, (where, body)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], (where, body)


def test_healthz_needs_no_key(server: LiveServer) -> None:
    r = httpx.get(f"{server.base_url}/healthz", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_the_route_sweep_sees_the_whole_api(server: LiveServer) -> None:
    routes = api_routes(server)
    for expected in [
        ("POST", "/api/v1/features"),
        ("GET", "/api/v1/features/{feature_id}"),
        ("PATCH", "/api/v1/products/{product_id}"),
        ("POST", "/api/v1/coupons/{coupon_id}/archive"),
        ("POST", "/api/v1/customers"),
    ]:
        assert expected in routes, expected
    assert not CLIENT_KEY_ROUTES - set(routes), "a client-key route listed above no longer exists"
    assert not set(SIGNED_ROUTES) - set(routes), "a signed route listed above no longer exists"


def test_missing_key_is_401_with_the_error_envelope(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        r = anonymous.get("/api/v1/features")
        assert r.status_code == 401
        assert r.json() == {
            "error": {"code": "UNAUTHENTICATED", "message": "missing API key: send it in the X-API-KEY header"}
        }
        _assert_error(anonymous.post("/api/v1/features", json={}), 401, "UNAUTHENTICATED")
        empty = anonymous.get("/api/v1/features", headers={"X-API-KEY": ""})
        _assert_error(empty, 401, "UNAUTHENTICATED")

    anonymous_client = stigg.Stigg(api_key="", base_url=server.base_url, max_retries=0)
    with pytest.raises(stigg.AuthenticationError) as caught:
        anonymous_client.v1.features.list_features()
    assert caught.value.status_code == 401
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["code"] == "UNAUTHENTICATED"


def test_unknown_and_revoked_keys_are_401(server: LiveServer) -> None:
    for bogus in ("nope", "server-development-" + "A" * 43, server.server_key + "x", server.server_key.upper()):
        with server.http(bogus) as http:
            r = http.get("/api/v1/features")
        _assert_error(r, 401, "UNAUTHENTICATED", bogus)
        assert r.json()["error"]["message"] == "unknown or revoked API key"
    with pytest.raises(stigg.AuthenticationError):
        server.stigg("not-a-key").v1.coupons.list()

    doomed = server.key("development")
    with server.http(doomed) as http:
        assert http.get("/api/v1/features").status_code == 200
        with server.db.transaction() as s:
            s.execute(update(ApiKey).where(ApiKey.key_hash == hash_key(doomed)).values(revoked_at=utcnow()))
        _assert_error(http.get("/api/v1/features"), 401, "UNAUTHENTICATED")
    with server.http() as http:  # the other keys of the environment keep working
        assert http.get("/api/v1/features").status_code == 200


def test_every_api_route_refuses_missing_unknown_and_client_keys(server: LiveServer) -> None:
    client_key = server.key(kind=KeyKind.CLIENT)
    routes = api_routes(server)
    assert len(routes) >= 20, routes
    with (
        server.http(client_key) as as_client,
        server.http("unknown-key") as as_unknown,
        httpx.Client(base_url=server.base_url, timeout=30) as anonymous,
    ):
        for method, path in routes:
            where = (method, path)
            if (method, path) in SIGNED_ROUTES:
                _assert_error(_send(anonymous, method, path), 404, "NOT_FOUND", where)
                continue
            _assert_error(_send(anonymous, method, path), 401, "UNAUTHENTICATED", where)
            _assert_error(_send(as_unknown, method, path), 401, "UNAUTHENTICATED", where)
            if (method, path) in CLIENT_KEY_ROUTES:
                assert _send(as_client, method, path).status_code != 403, where
                continue
            _assert_error(_send(as_client, method, path), 403, "PERMISSION_DENIED", where)

    # Nothing was written on the way.
    with server.http() as admin:
        for listing in ("/api/v1/features", "/api/v1/products", "/api/v1/coupons", "/api/v1/customers"):
            assert admin.get(listing).json()["data"] == [], listing


def test_client_key_through_the_official_client(server: LiveServer) -> None:
    browser = server.stigg(server.key(kind=KeyKind.CLIENT))
    with pytest.raises(stigg.PermissionDeniedError):
        browser.v1.features.create_feature(id="f", display_name="F", feature_type="BOOLEAN")
    with pytest.raises(stigg.PermissionDeniedError):
        browser.v1.coupons.list()
    with pytest.raises(stigg.PermissionDeniedError):
        browser.v1.products.list_products()
    assert server.stigg().v1.features.list_features().data == []


def _seed(client: stigg.Stigg, label: str) -> None:
    client.v1.features.create_feature(id="feature-seats", display_name=f"Seats {label}", feature_type="NUMBER")
    client.v1.products.create_product(id="product-main", display_name=f"Main {label}")
    client.v1.coupons.create(
        id="coupon-launch",
        name=f"Launch {label}",
        description=None,
        duration_in_months=None,
        metadata=None,
        percent_off=10,
        amounts_off=None,
    )
    client.v1.customers.provision(id="customer-1", name=f"Customer {label}")


def test_environments_are_isolated(server: LiveServer) -> None:
    dev = server.stigg()
    staging_key = server.key("staging")
    staging = server.stigg(staging_key)
    _seed(dev, "dev")

    # Invisible from staging: reads are 404, lists are empty.
    with pytest.raises(stigg.NotFoundError):
        staging.v1.features.retrieve_feature("feature-seats")
    with pytest.raises(stigg.NotFoundError):
        staging.v1.coupons.retrieve("coupon-launch")
    with pytest.raises(stigg.NotFoundError):
        staging.v1.customers.retrieve("customer-1")
    assert list(staging.v1.features.list_features()) == []
    assert list(staging.v1.products.list_products()) == []
    assert list(staging.v1.coupons.list()) == []
    assert list(staging.v1.customers.list()) == []
    assert list(staging.v1.coupons.list(id="coupon-launch")) == []

    # Not writable from staging either.
    with server.http(staging_key) as http:
        for method, path, body in [
            ("PATCH", "/api/v1/features/feature-seats", {"displayName": "Hijacked"}),
            ("POST", "/api/v1/features/feature-seats/archive", None),
            ("PATCH", "/api/v1/products/product-main", {"displayName": "Hijacked"}),
            ("POST", "/api/v1/products/product-main/archive", None),
            ("PATCH", "/api/v1/coupons/coupon-launch", {"name": "Hijacked"}),
            ("POST", "/api/v1/coupons/coupon-launch/archive", None),
            ("PATCH", "/api/v1/customers/customer-1", {"name": "Hijacked"}),
            ("POST", "/api/v1/customers/customer-1/archive", None),
        ]:
            _assert_error(http.request(method, path, json=body), 404, "NOT_FOUND", (method, path))
        # The environment headers the client may send do not switch environments: naming another
        # environment than the key's is refused, not ignored; naming its own (by name or id) is fine.
        r = http.get("/api/v1/coupons/coupon-launch", headers={"X-ENVIRONMENT-ID": "development"})
        _assert_error(r, 400, "ENVIRONMENT_MISMATCH", "X-ENVIRONMENT-ID")
        assert "staging" in r.json()["error"]["message"]
        r = http.get("/api/v1/coupons/coupon-launch", headers={"X-ENVIRONMENT-ID": "staging"})
        _assert_error(r, 404, "NOT_FOUND", "X-ENVIRONMENT-ID: staging")
        r = http.get("/api/v1/coupons/coupon-launch", headers={"X-ACCOUNT-ID": "development"})
        _assert_error(r, 404, "NOT_FOUND", "X-ACCOUNT-ID")

    assert dev.v1.features.retrieve_feature("feature-seats").data.display_name == "Seats dev"
    assert dev.v1.coupons.retrieve("coupon-launch").data.status == "ACTIVE"
    assert dev.v1.customers.retrieve("customer-1").data.name == "Customer dev"

    # The same ids can exist in both environments, independently.
    _seed(staging, "staging")
    assert staging.v1.features.retrieve_feature("feature-seats").data.display_name == "Seats staging"
    assert dev.v1.features.retrieve_feature("feature-seats").data.display_name == "Seats dev"
    assert [p.display_name for p in staging.v1.products.list_products()] == ["Main staging"]
    assert [p.display_name for p in dev.v1.products.list_products()] == ["Main dev"]

    staging.v1.coupons.archive_coupon("coupon-launch")
    staging.v1.features.archive_feature("feature-seats")
    assert dev.v1.coupons.retrieve("coupon-launch").data.status == "ACTIVE"
    assert [c.id for c in dev.v1.coupons.list(status=["ACTIVE"])] == ["coupon-launch"]
    assert [c.id for c in staging.v1.coupons.list(status=["ACTIVE"])] == []
    assert [f.id for f in dev.v1.features.list_features()] == ["feature-seats"]
    assert [f.id for f in staging.v1.features.list_features()] == []

    dev.v1.coupons.update_coupon("coupon-launch", name="Launch dev v2", metadata={"env": "dev"})
    assert staging.v1.coupons.retrieve("coupon-launch").data.name == "Launch staging"
    assert staging.v1.coupons.retrieve("coupon-launch").data.metadata == {}

    # A second key of the same environment sees the same data.
    dev_again = server.stigg(server.key("development"))
    assert dev_again.v1.coupons.retrieve("coupon-launch").data.name == "Launch dev v2"
