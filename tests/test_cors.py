"""CORS per environment: no browser origin by default; a listed origin may call with that environment's
keys only, and the preflight of the client-key routes works (docs/customer-tokens.md)."""

from __future__ import annotations

import httpx
import pytest

from entitle.environments import access
from entitle.environments.models import KeyKind
from entitle.environments.rules import normalize_origin
from entitle.errors import InvalidArgument
from tests.conftest import LiveServer
from tests.support.tokens import token_for

APP = "https://app.example.com"
CHECK = "/api/v1/customers/acme/entitlements"


def _preflight(server: LiveServer, origin: str, method: str = "GET", headers: str | None = None) -> httpx.Response:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        request_headers["Access-Control-Request-Headers"] = headers
    return httpx.options(f"{server.base_url}{CHECK}", headers=request_headers, timeout=30)


def test_no_origin_is_allowed_by_default(server: LiveServer) -> None:
    refused = _preflight(server, APP, headers="x-api-key,x-customer-token")
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    with server.http(server.key(kind=KeyKind.CLIENT)) as page:
        response = page.get(CHECK, headers={"Origin": APP, "X-CUSTOMER-TOKEN": token_for(server, "acme")})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "Origin" in response.headers["vary"]


def test_a_listed_origin_calls_with_its_environments_keys_only(server: LiveServer) -> None:
    server.key("staging")
    shown = access.update_settings(server.db, "development", allowed_origins=["https://App.Example.com:443/"])
    assert shown.allowed_origins == [APP]
    assert server.http().get("/api/v1/environment").json()["data"]["allowedOrigins"] == [APP]

    stainless = "x-api-key,x-customer-token,x-stainless-lang,content-type"
    preflight = _preflight(server, APP, headers=stainless)
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == APP
    assert preflight.headers["access-control-allow-methods"] == "GET"
    assert preflight.headers["access-control-allow-headers"] == stainless
    assert int(preflight.headers["access-control-max-age"]) > 0
    assert _preflight(server, APP, method="POST").status_code == 403  # client keys only read
    assert _preflight(server, "https://evil.example.com").status_code == 403
    assert _preflight(server, APP, headers="x-api-key, (bad)").status_code == 400

    token = {"X-CUSTOMER-TOKEN": token_for(server, "acme")}
    with server.http(server.key(kind=KeyKind.CLIENT)) as page:
        allowed = page.get(CHECK, headers={"Origin": APP, **token})
        assert allowed.headers["access-control-allow-origin"] == APP
        # A refusal the page must read (a token to renew) carries the header too.
        expired = page.get(CHECK, headers={"Origin": APP})
        assert expired.status_code == 401 and expired.headers["access-control-allow-origin"] == APP
        other = page.get(CHECK, headers={"Origin": "https://evil.example.com", **token})
        assert "access-control-allow-origin" not in other.headers
    with server.http(server.key("staging", KeyKind.CLIENT)) as staging_page:
        response = staging_page.get(CHECK, headers={"Origin": APP})
        assert "access-control-allow-origin" not in response.headers
    with server.http("unknown-key") as nobody:
        assert "access-control-allow-origin" not in nobody.get(CHECK, headers={"Origin": APP}).headers

    access.update_settings(server.db, "development", allowed_origins=[])
    assert _preflight(server, APP).status_code == 403


@pytest.mark.parametrize(
    "raw",
    ["*", "null", "https://a.example/path", "ftp://a.example", "https://a.example:99999", "https://u@a.example", ""],
)
def test_origins_are_plain_scheme_host_port(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        normalize_origin(raw)


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("http://localhost:3000", "http://localhost:3000"),
        ("HTTPS://APP.example.COM", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("https://[::1]:8443/", "https://[::1]:8443"),
    ],
)
def test_origins_are_stored_as_browsers_send_them(raw: str, origin: str) -> None:
    assert normalize_origin(raw) == origin
