"""docs/sdk.md's examples run, as written, against a live server: the page a Python developer copies first."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from entitle.sdk import Entitle, Source
from tests.conftest import LiveServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def seed(api: httpx.Client) -> None:
    """What the first example assumes: plan `plan-pro` granting `feature-api-calls`, and a meter that
    counts the `api_call` events it reports (so their delivery shows as usage)."""
    features: list[dict[str, Any]] = [
        {"id": "feature-api-calls", "displayName": "API calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
        {
            "id": "feature-tokens",
            "displayName": "Tokens",
            "featureType": "NUMBER",
            "meterType": "INCREMENTAL",
            "meter": {
                "aggregation": {"function": "SUM", "field": "tokens"},
                "filters": [{"conditions": [{"field": "eventName", "operation": "EQUALS", "value": "api_call"}]}],
            },
        },
    ]
    for body in features:
        api.post("/api/v1/features", json=body).raise_for_status()
    api.post("/api/v1/products", json={"id": "product-main", "displayName": "Main"}).raise_for_status()
    api.post(
        "/api/v1/plans", json={"id": "plan-pro", "displayName": "Pro", "productId": "product-main"}
    ).raise_for_status()
    grants = [
        {"type": "FEATURE", "id": "feature-api-calls", "usageLimit": 100, "resetPeriod": "MONTH"},
        {"type": "FEATURE", "id": "feature-tokens", "hasUnlimitedUsage": True, "resetPeriod": "MONTH"},
    ]
    api.post("/api/v1/plans/plan-pro/entitlements", json={"entitlements": grants}).raise_for_status()
    api.post("/api/v1/plans/plan-pro/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()


def test_the_first_example_provisions_checks_reports_usage_and_sends_the_event(
    server: LiveServer, api: httpx.Client
) -> None:
    seed(api)
    source = blocks()[0]
    assert 'api_key="server-production-..."' in source and 'base_url="https://entitle.internal"' in source
    source = source.replace('api_key="server-production-..."', f'api_key="{server.server_key}"')
    source = source.replace('base_url="https://entitle.internal"', f'base_url="{server.base_url}"')
    exec(compile(source, "docs/sdk.md", "exec"), {})  # ends with close(): the queued event is sent

    with Entitle(server.server_key, server.base_url, push=False) as check:
        calls = check.get_entitlement("acme", "feature-api-calls")
        tokens = check.get_entitlement("acme", "feature-tokens")
    assert (calls.is_granted, calls.source, calls.current_usage, calls.usage_limit) == (True, Source.SERVER, 1, 100)
    assert tokens.current_usage == 512


def test_the_fallback_example_answers_offline(server: LiveServer) -> None:
    scope: dict[str, Any] = {"api_key": server.server_key, "base_url": "http://127.0.0.1:9"}  # nothing listens
    exec(compile(blocks()[1], "docs/sdk.md", "exec"), scope)
    entitle: Entitle = scope["entitle"]
    try:
        sso = entitle.get_entitlement("acme", "feature-sso")
        assert (sso.is_granted, sso.source) == (True, Source.FALLBACK)
        assert entitle.get_entitlement("acme", "feature-api-calls", requested_usage=100).is_granted
        assert not entitle.get_entitlement("acme", "feature-api-calls", requested_usage=101).is_granted
        assert entitle.get_entitlement("acme", "feature-region", requested_values=["eu"]).is_granted
        assert not entitle.get_entitlement("acme", "feature-region", requested_values=["us"]).is_granted
    finally:
        entitle.close()


def test_the_customer_token_example_makes_a_token_for_that_customer() -> None:
    scope: dict[str, Any] = {"signing_secret": "cts_Zx9Q2hB7mVnL4tRwY8kE3sPdA6uJfG1cT5oHiN0bXeM", "customer_id": "acme"}
    exec(compile(blocks()[3], "docs/sdk.md", "exec"), scope)
    assert scope["CUSTOMER_TOKEN_HEADER"] == "X-CUSTOMER-TOKEN"
    claims = jwt.decode(scope["token"], "cts_Zx9Q2hB7mVnL4tRwY8kE3sPdA6uJfG1cT5oHiN0bXeM", algorithms=["HS256"])
    assert claims["sub"] == "acme"
    assert 3500 < claims["exp"] - time.time() <= 3600  # the default lifetime: one hour
