"""Fuzzing: no request, however malformed, makes the server answer 5xx.

Schemathesis reads our own OpenAPI document from the live server and generates requests for
every operation under /api/ (routes added later are picked up without touching this file), in
positive (schema-valid) and negative (schema-violating) modes. A second, hand-rolled hypothesis
test throws arbitrary JSON values at every POST/PATCH route with awkward path ids.

Both run on SQLite and PostgreSQL (the `database_url` fixture). Generation is derandomized and
uses no example database, so every run sends the same requests. Schemathesis generation is the
slow part (tens of ms per case for large bodies), so its cases are generated once per process
and replayed against each database; the tests print how long generation and requests took.

Deeper local runs: FUZZ_EXAMPLES=30 FUZZ_BODY_EXAMPLES=60, and FUZZ_SEED=<n> for other cases.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.feedback import NO_FEEDBACK

from tests.conftest import LiveServer

# Cases per operation: schema-valid ones, and half as many schema-violating ones (the costliest to
# generate). With ~75 operations the module takes about a minute on 2 cores, generation ~25s of it.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
NEGATIVE_EXAMPLES = max(1, EXAMPLES // 2)
BODY_EXAMPLES = int(os.environ.get("FUZZ_BODY_EXAMPLES", "12"))
# Unset: derandomized, the same requests every run. Set to explore other cases locally.
SEED = os.environ.get("FUZZ_SEED")

# Real rows that path ids are pointed at half of the time, by path-parameter name, so handlers get
# past their lookups. A parameter not listed here (a route added later) draws from all of them.
SEED_IDS: dict[str, list[str]] = {
    "feature_id": ["feature-seats", "feature-sso"],
    "product_id": ["product-main"],
    "customer_id": ["cust-1"],
    "integration_id": ["stripe-main"],
    "plan_id": ["plan-basic"],
    "addon_id": ["addon-extra"],
    "package_id": ["plan-basic", "addon-extra"],
    "coupon_id": ["coupon-10"],
    "subscription_id": ["sub-1"],
    "entitlement_id": ["feature-seats", "feature-sso"],
    "job_id": ["1"],
}

# Generated cases carry this header; each test's real server key replaces it when sent.
KEY_PLACEHOLDER = {"X-API-KEY": "placeholder"}


def _settings(max_examples: int, *, shrink: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    chosen = settings(
        max_examples=max_examples,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])],
        print_blob=False,
    )

    def apply(test: Callable[..., None]) -> Callable[..., None]:
        test = chosen(test)
        return test if SEED is None else seed(int(SEED))(test)

    return apply


def _seed(api: httpx.Client) -> None:
    required = [
        ("/api/v1/features", {"id": "feature-seats", "displayName": "Seats", "featureType": "NUMBER"}),
        ("/api/v1/features", {"id": "feature-sso", "displayName": "SSO", "featureType": "BOOLEAN"}),
        ("/api/v1/products", {"id": "product-main", "displayName": "Main"}),
        (
            "/api/v1/customers",
            {
                "id": "cust-1",
                "name": "Acme",
                "integrations": [{"id": "stripe-main", "vendorIdentifier": "STRIPE", "syncedEntityId": "cus_1"}],
            },
        ),
        (
            "/api/v1/customers/cust-1/promotional-entitlements",
            {"promotionalEntitlements": [{"featureId": "feature-sso", "period": "1 month"}]},
        ),
    ]
    for path, body in required:
        response = api.post(path, json=body)
        assert response.status_code == 200, response.text
    # Objects of areas still moving: a 4xx (their API changed) only leaves those ids unseeded.
    optional = [
        ("/api/v1/plans", {"id": "plan-basic", "displayName": "Basic", "productId": "product-main"}),
        ("/api/v1/plans/plan-basic/publish", {"migrationType": "NEW_CUSTOMERS"}),
        ("/api/v1/addons", {"id": "addon-extra", "displayName": "Extra", "productId": "product-main"}),
        ("/api/v1/coupons", {"id": "coupon-10", "name": "Ten", "percentOff": 10}),
        ("/api/v1/subscriptions", {"id": "sub-1", "planId": "plan-basic", "customerId": "cust-1"}),
    ]
    for path, body in optional:
        response = api.post(path, json=body)
        assert problem(response.status_code, response.content) is None, (path, response.text)


def problem(status: int, body: bytes) -> str | None:
    """Why a response breaks the contract (5xx, or a 4xx without the error envelope), else None."""
    if status >= 500:
        return f"server error {status}: {body[:500]!r}"
    if 400 <= status < 500:
        try:
            error = json.loads(body)["error"]
            if not isinstance(error["code"], str) or not isinstance(error["message"], str):
                raise TypeError("error.code and error.message must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            return f"{status} without the error envelope ({type(exc).__name__}: {exc}): {body[:500]!r}"
    return None


@pytest.fixture
def seeded(server: LiveServer, api: httpx.Client) -> LiveServer:
    _seed(api)
    return server


# --- schemathesis over the OpenAPI document ----------------------------------------------------


@dataclass
class Target:
    label: str
    cases: list[Any]


_GENERATED: dict[str, list[Target]] = {}
STREAM_PATH = "/api/v1/stream"


def _generated(base_url: str) -> tuple[list[Target], float]:
    """Cases for every /api/ operation and mode, generated once per OpenAPI document."""
    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    cache_key = json.dumps(document, sort_keys=True)
    started = time.monotonic()
    if cache_key not in _GENERATED:
        # The SSE stream never ends by design (keepalives every 15 s outlast any read timeout): a case
        # that opens it would wait forever. Its inputs are tested in tests/test_push.py.
        schema = schemathesis.openapi.from_dict(document).include(path_regex=r"^/api/").exclude(path=STREAM_PATH)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10, "the OpenAPI document lost its /api/ operations"
        _GENERATED.clear()
        _GENERATED[cache_key] = [
            Target(f"{op.label} [{mode.value}]", _draw(_with_real_ids(op, mode), _count(mode)))
            for op in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if mode is GenerationMode.POSITIVE or _negatable(op)
        ]
    return _GENERATED[cache_key], time.monotonic() - started


def _count(mode: GenerationMode) -> int:
    return EXAMPLES if mode is GenerationMode.POSITIVE else NEGATIVE_EXAMPLES


def _negatable(operation: Any) -> bool:
    """Whether a schema-violating request exists. An unconstrained string path id has none (and
    asking hypothesis for one costs a second before it gives up); the key header is fixed."""
    if list(operation.body):
        return True
    for parameter in operation.iter_parameters():
        location = parameter.location.value
        schema = parameter.definition.get("schema", {})
        if location == "header":
            continue
        if location != "path" or schema.get("type") != "string" or set(schema) - {"type", "title"}:
            return True
    return False


def _with_real_ids(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    # NO_FEEDBACK: by default schemathesis also draws strings from constants it collects in a set,
    # whose order follows PYTHONHASHSEED; without them the cases are the same in every process.
    strategy = operation.as_strategy(generation_mode=mode, headers=KEY_PLACEHOLDER, feedback=NO_FEEDBACK)
    names = re.findall(r"{([^}]+)}", operation.path)
    if not names:
        return strategy
    everything = sorted({v for ids in SEED_IDS.values() for v in ids})
    real = st.fixed_dictionaries({name: st.sampled_from(SEED_IDS.get(name, everything)) for name in names})

    def apply(drawn: tuple[Any, dict[str, str] | None]) -> Any:
        case, ids = drawn
        if ids is not None:
            case.path_parameters.update(ids)
        return case

    return st.tuples(strategy, st.none() | real).map(apply)


def _draw(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    drawn: list[Any] = []

    @_settings(count, shrink=False)
    @given(value=strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    with contextlib.suppress(Unsatisfiable):  # no schema-violating value exists for these inputs
        collect()
    return drawn


def test_schemathesis_finds_no_server_errors(seeded: LiveServer) -> None:
    targets, generation = _generated(seeded.base_url)
    key = {"X-API-KEY": seeded.server_key}
    failures: list[str] = []
    started = time.monotonic()
    sent = 0
    with requests.Session() as session:
        for target in targets:
            for case in target.cases:
                sent += 1
                response = case.call(base_url=seeded.base_url, session=session, headers=key, timeout=30)
                found = problem(response.status_code, response.content)
                try:
                    case.validate_response(response, checks=[not_a_server_error])
                except AssertionError as exc:
                    found = found or str(exc)
                if found:
                    curl = case.as_curl_command({"X-API-KEY": "<server key>"})
                    failures.append(f"{target.label}: {found}\n    {curl}")
    print(
        f"\nschemathesis: {len(targets)} operation/mode pairs, {sent} requests; "
        f"generation {generation:.1f}s, requests {time.monotonic() - started:.1f}s"
    )
    assert sent >= len(targets)
    assert not failures, f"{len(failures)} failing requests:\n" + "\n".join(failures[:40])


# --- arbitrary JSON bodies and awkward ids ------------------------------------------------------

ODD_TEXT = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "null",
        "true",
        "2026-02-30T25:61:00Z",
        "../../etc/passwd",
        "%2F",
        "%00",
        "😀" * 3,
        "\u202e\u200b\ufeff",
        "\ud800",  # a lone surrogate: not encodable as UTF-8, sent as \\ud800 escape or raw bytes
        "\U0010ffff",
        "x" * 5000,
        "'; DROP TABLE features; --",
    ]
) | st.text(max_size=40)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, 10**400, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e308, -1e308, 5e-324, -0.0])
    | ODD_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
    max_leaves=25,
)


class RawJSON(str):
    """A body already serialized: nesting too deep for json.dumps, or not JSON at all."""


def _deep(depth: int) -> RawJSON:
    return RawJSON('{"a":[' * depth + '"bottom"' + "]}" * depth)


RAW_BODIES = st.builds(_deep, st.sampled_from([20, 200, 2000, 20000])) | st.sampled_from(
    [RawJSON(""), RawJSON("{"), RawJSON("NaN"), RawJSON('{"id": NaN}'), RawJSON('{"id": Infinity}'), RawJSON("\x00")]
)
BODIES = JSON_VALUES | st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=6) | RAW_BODIES

ODD_IDS = st.sampled_from(
    [
        "feature-seats",
        "cust-1",
        "product-main",
        "a/b",
        "a%2Fb",
        "with space",
        " ",
        "ünïcødé",
        "😀",
        "%",
        "%25",
        "..",
        ".",
        "x" * 300,
        "\x00",
        "tab\there",
        "a?b#c",
        "1",
        "99999999999999999999999",
    ]
)


def _write_routes(base_url: str) -> list[tuple[str, str]]:
    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith("/api/")
        for method in item
        if method in ("post", "patch")
    )


def _fill(path: str, ids: list[str]) -> str:
    supply = iter(ids)
    return re.sub(r"{[^}]+}", lambda _: quote(next(supply), safe=""), path)


def _encode(body: Any, raw_utf8: bool) -> bytes:
    text = body if isinstance(body, RawJSON) else json.dumps(body, ensure_ascii=not raw_utf8)
    return text.encode("utf-8", "surrogatepass")


def _hypothesis_search(
    label: str, strategy: st.SearchStrategy[Any], send: Callable[[Any], tuple[int, bytes, str]]
) -> str | None:
    """One hypothesis search (shrinking on failure); the failure's description, or None."""
    found: list[str] = []

    @_settings(BODY_EXAMPLES, shrink=True)
    @given(drawn=strategy)
    def search(drawn: Any) -> None:
        status, body, request = send(drawn)
        failure = problem(status, body)
        if failure is not None:
            found[:] = [f"{label}: {failure}\n    {request}"]
            raise AssertionError(failure)

    try:
        search()
    except AssertionError:
        return found[-1] if found else f"{label}: failed"
    return None


def test_arbitrary_json_bodies_and_odd_ids_never_give_5xx(seeded: LiveServer, api: httpx.Client) -> None:
    routes = _write_routes(seeded.base_url)
    assert routes
    failures: list[str] = []
    started = time.monotonic()
    for method, path in routes:
        slots = path.count("{")
        strategy = st.tuples(st.lists(ODD_IDS, min_size=slots, max_size=slots), BODIES, st.booleans())

        def send(drawn: Any, method: str = method, path: str = path) -> tuple[int, bytes, str]:
            ids, body, raw_utf8 = drawn
            url = _fill(path, ids)
            content = _encode(body, raw_utf8)
            response = api.request(method, url, content=content, headers={"Content-Type": "application/json"})
            return response.status_code, response.content, f"{method} {url} {content[:300]!r}"

        failure = _hypothesis_search(f"{method} {path}", strategy, send)
        if failure:
            failures.append(failure)
    print(f"\njson bodies: {len(routes)} routes x {BODY_EXAMPLES} examples in {time.monotonic() - started:.1f}s")
    assert not failures, "\n".join(failures)


def test_problem_detects_what_the_fuzzers_look_for() -> None:
    assert problem(200, b"{}") is None
    assert problem(404, b'{"error":{"code":"NOT_FOUND","message":"x"}}') is None
    assert problem(500, b'{"error":{"code":"INTERNAL","message":"x"}}') is not None
    assert problem(400, b'{"detail":"x"}') is not None
    assert problem(400, b'{"error":{"code":1,"message":"x"}}') is not None
    assert problem(405, b"Method Not Allowed") is not None


# --- regressions found by the fuzzers -----------------------------------------------------------


def test_job_id_with_non_ascii_digits_is_not_found(api: httpx.Client) -> None:
    # '²'.isdigit() is True but int('²') raises: this was a 500.
    for job_id in ("%C2%B2", "%D9%A3", "1%C2%B2"):
        response = api.post(f"/api/v1/jobs/{job_id}/retry")
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "NOT_FOUND"


def test_nul_in_catalog_ids_and_filters_is_a_client_error(api: httpx.Client) -> None:
    # PostgreSQL text cannot hold NUL; SQLite can. Either way the answer is 4xx with the envelope.
    api.post("/api/v1/features", json={"id": "f", "displayName": "F", "featureType": "BOOLEAN"}).raise_for_status()
    requests_ = [
        api.get("/api/v1/features/%00"),
        api.patch("/api/v1/features/a%00b", json={"displayName": "x"}),
        api.post("/api/v1/features/a%00/archive"),
        api.get("/api/v1/products/%00"),
        api.post("/api/v1/products/%00/duplicate", json={"targetId": "copy"}),
        api.get("/api/v1/features", params={"id": "f,\x00"}),
        api.get("/api/v1/products", params={"id": "\x00"}),
        api.get("/api/v1/customers", params={"email": "\x00"}),
    ]
    for response in requests_:
        assert response.status_code in (200, 400, 404), (response.request.url, response.text)
        if response.status_code != 200:
            assert problem(response.status_code, response.content) is None


def test_dates_whose_utc_instant_is_out_of_range_are_refused(api: httpx.Client) -> None:
    # 0001-01-01T00:00+01:00 is in year 0 in UTC: astimezone() raised OverflowError, a 500.
    for path in ("/api/v1/features", "/api/v1/products", "/api/v1/customers"):
        for name, value in (
            ("createdAt[gt]", "0001-01-01T00:00:00+01:00"),
            ("createdAt[lte]", "9999-12-31T23:59:59-01:00"),
        ):
            response = api.get(path, params={name: value})
            assert response.status_code == 400, (path, name, response.text)
            assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert api.get("/api/v1/features", params={"createdAt[gt]": "0001-01-01T00:00:00Z"}).status_code == 200
