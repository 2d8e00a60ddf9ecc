"""The entitlement check and list routes are solved by a plan made once (`entitle.http.hot_route`), not by
FastAPI on every request: for any request, they answer byte for byte what FastAPI's own solving of the same
declared endpoints answers (validation failures, auth refusals, answers), and the plan refuses, when the
route is built, a declaration it could not honour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Response
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator
from starlette.datastructures import Headers

from entitle.app import create_app
from entitle.clock import utcnow
from entitle.config import Settings
from entitle.db import Database
from entitle.entitlements import routes
from entitle.environments.access import signing_secret, update_settings
from entitle.environments.models import KeyKind
from entitle.environments.rules import ENVIRONMENT_HEADER, TOKEN_HEADER
from entitle.environments.service import create_key
from entitle.http import hot_route
from entitle.http.errors import install_error_handlers
from entitle.http.hot_dispatch import HotDispatch
from entitle.http.hot_route import HotRoute
from entitle.sdk.tokens import customer_token
from entitle.secrets import secret_box

CHECK_PARAMS = [
    "featureId",
    "currencyId",
    "requestedUsage",
    "requestedValues",
    "resourceId",
    "reserveAmount",
    "reservationId",
    "reservationTtlSeconds",
    "reservationExpiresAt",
    "reservationMetadata",
    "somethingElse",
]
# Each parameter's edges: accepted, refused by its declared constraint, of the wrong type, empty.
VALUES = st.sampled_from(
    [
        "calls",
        "sso",
        "tier",
        "unknown-feature",
        "",
        "0",
        "1",
        "-1",
        "2.5",
        "1e3",
        "1e400",
        "NaN",
        "inf",
        str(10**15),
        str(10**15 + 1),
        "86400",
        "86401",
        "abc",
        "a,b, ,c",
        "2026-01-01T00:00:00Z",
        "2026-13-01",
        "x" * 256,
        "é ü",
    ]
)


ENUM_A = {"value": "a", "displayName": "a"}
ORIGIN = "https://app.example.com"


@pytest.fixture
def apps(db: Database, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The real app (seeded through, served with its lifespan), and two bare apps serving only the
    entitlements routes over the same database: one with the routes as declared (HotRoute), one re-adding
    the same endpoints as FastAPI's own APIRoute."""
    settings = Settings(database_url=db.url, data_dir=tmp_path, console_base_url="http://testserver")
    server_key = create_key(db, "development", KeyKind.SERVER)
    client_key = create_key(db, "development", KeyKind.CLIENT)
    update_settings(db, "development", allowed_origins=[ORIGIN])
    with TestClient(create_app(settings, db=db)) as full:
        key = {"X-API-KEY": server_key}
        for feature in (
            {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"},
            {"id": "sso", "displayName": "SSO", "featureType": "BOOLEAN"},
            {"id": "tier", "displayName": "Tier", "featureType": "ENUM", "enumConfiguration": [ENUM_A]},
        ):
            assert full.post("/api/v1/features", json=feature, headers=key).status_code == 200
        assert full.post("/api/v1/products", json={"id": "p", "displayName": "P"}, headers=key).status_code == 200
        plan = {"id": "plan", "displayName": "Plan", "productId": "p"}
        assert full.post("/api/v1/plans", json=plan, headers=key).is_success
        grants = [
            {"type": "FEATURE", "id": "calls", "usageLimit": 10, "resetPeriod": "MONTH"},
            {"type": "FEATURE", "id": "sso"},
        ]
        assert full.post("/api/v1/plans/plan/entitlements", json={"entitlements": grants}, headers=key).is_success
        publish = {"migrationType": "NEW_CUSTOMERS"}
        assert full.post("/api/v1/plans/plan/publish", json=publish, headers=key).is_success
        for customer in ("c1", "a/b"):
            body = {"id": customer, "subscriptionParams": {"planId": "plan"}}
            assert full.post("/api/v1/customers", json=body, headers=key).is_success
        usage = {"usages": [{"customerId": "c1", "featureId": "calls", "value": 3}]}
        assert full.post("/api/v2/usage", json=usage, headers=key).is_success
        declared = APIRouter()
        for route in routes.router.routes:
            assert isinstance(route, APIRoute)
            declared.add_api_route(
                route.path, route.endpoint, methods=list(route.methods), response_model=route.response_model
            )
        served = {}
        for name, router in (("hot", routes.router), ("declared", declared)):
            app = FastAPI()
            install_error_handlers(app)
            app.state.db, app.state.settings = db, settings
            app.include_router(router)
            served[name] = TestClient(app)
        secret = signing_secret(db, secret_box(tmp_path), "development")
        token = customer_token(secret, "c1", expires_in=timedelta(hours=1), now=utcnow())
        yield {**served, "full": full, "server": server_key, "client": client_key, "token": token}


HEADERS = st.fixed_dictionaries(
    {
        "X-API-KEY": st.sampled_from(["server", "client", "bogus", None]),
        ENVIRONMENT_HEADER: st.sampled_from([None, "development", "production"]),
        TOKEN_HEADER: st.sampled_from([None, "token", "garbage"]),
    }
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/c1/entitlements/check", "/c1/entitlements", "/nobody/entitlements/check"]),
    query=st.lists(st.tuples(st.sampled_from(CHECK_PARAMS), VALUES), max_size=5),
    headers=HEADERS,
)
def test_the_hot_routes_answer_as_fastapi_solving_their_declarations(
    apps: dict[str, Any], path: str, query: list[tuple[str, str]], headers: dict[str, str | None]
) -> None:
    sent = {name: apps.get(value, value) for name, value in headers.items() if value is not None}
    url = "/api/v1/customers" + path
    hot = apps["hot"].get(url, params=query, headers=sent)
    declared = apps["declared"].get(url, params=query, headers=sent)
    assert (hot.status_code, hot.headers.get("content-type"), hot.content) == (
        declared.status_code,
        declared.headers.get("content-type"),
        declared.content,
    )


def test_a_check_is_answered_without_fastapis_per_request_solving(
    apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**_: Any) -> None:
        raise AssertionError("FastAPI solved a hot route's dependencies")

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", refuse)
    key = {"X-API-KEY": apps["server"]}
    check = apps["hot"].get("/api/v1/customers/c1/entitlements/check?featureId=calls&requestedUsage=7", headers=key)
    assert check.status_code == 200
    assert (check.json()["data"]["isGranted"], check.json()["data"]["currentUsage"]) == (True, 3)
    listed = apps["hot"].get("/api/v1/customers/c1/entitlements", headers=key)
    assert [e["feature"]["id"] for e in listed.json()["data"]["entitlements"]] == ["calls", "sso"]
    refused = apps["hot"].get("/api/v1/customers/c1/entitlements/check?featureId=calls&requestedUsage=-1", headers=key)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "requestedUsage: Input should be greater than or equal to 0"


async def _sync_dependency_holder(value: Annotated[str, Depends(lambda: "x")]) -> Response:
    return Response(value)


async def _list_parameter(values: Annotated[list[str] | None, Query()] = None) -> Response:
    return Response(str(values))


async def _body(body: dict[str, int]) -> Response:
    return Response(str(body))


@pytest.mark.parametrize(
    "endpoint, refusal",
    [
        (_sync_dependency_holder, "distinct async function"),
        (_list_parameter, "cannot read the query parameter values"),
        (_body, "a body"),
    ],
)
def test_a_declaration_the_plan_cannot_honour_is_refused_when_the_route_is_built(endpoint: Any, refusal: str) -> None:
    router = APIRouter(route_class=HotRoute)
    with pytest.raises(TypeError, match=refusal):
        router.add_api_route("/x", endpoint, methods=["GET" if endpoint is not _body else "POST"])


async def _who() -> str:
    return "real"


async def _fake() -> str:
    return "fake"


async def _named(name: Annotated[str, Depends(_who)], shout: Annotated[bool, Query()] = False) -> Response:
    return Response(name.upper() if shout else name)


def test_dependency_overrides_are_honoured_through_fastapis_own_solving() -> None:
    app = FastAPI()
    router = APIRouter(route_class=HotRoute)
    router.add_api_route("/who", _named, methods=["GET"])
    app.include_router(router)
    client = TestClient(app)
    assert client.get("/who?shout=true").text == "REAL"
    app.dependency_overrides[_who] = _fake
    assert client.get("/who").text == "fake"
    assert client.get("/who?shout=maybe").status_code == 422  # FastAPI's own answer (no handlers installed)


class _Suffix:
    """A configured dependency: an instance whose `__call__` is awaited (the ingest route's body reader)."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    async def __call__(self, name: Annotated[str, Query()]) -> str:
        return name + self.suffix


class _SyncSuffix:
    def __call__(self, name: Annotated[str, Query()]) -> str:
        return name


async def _suffixed(value: Annotated[str, Depends(_Suffix("!"))]) -> Response:
    return Response(value)


async def _sync_suffixed(value: Annotated[str, Depends(_SyncSuffix())]) -> Response:
    return Response(value)


def test_an_instance_with_an_async_call_is_solved_as_fastapi_solves_it_and_a_sync_one_refused() -> None:
    answers = {}
    for route_class in (HotRoute, APIRoute):
        app = FastAPI()
        router = APIRouter(route_class=route_class)
        router.add_api_route("/x", _suffixed, methods=["GET"])
        app.include_router(router)
        client = TestClient(app)
        answers[route_class] = [(r.status_code, r.text) for r in (client.get("/x?name=hi"), client.get("/x"))]
    assert answers[HotRoute] == answers[APIRoute]
    assert answers[HotRoute][0] == (200, "hi!")
    with pytest.raises(TypeError, match="distinct async function"):
        APIRouter(route_class=HotRoute).add_api_route("/x", _sync_suffixed, methods=["GET"])


def test_a_planned_route_is_solved_by_its_plan_but_left_to_the_route_table() -> None:
    app = FastAPI()
    router = APIRouter(route_class=hot_route.PlannedRoute)
    router.add_api_route("/x", _suffixed, methods=["GET"])
    app.include_router(router)
    assert HotDispatch(app.router, app.router).table.entries == ()
    client = TestClient(app)
    assert client.get("/x?name=hi").text == "hi!"
    assert client.get("/x").status_code == 422  # FastAPI's own answer (no handlers installed)


# Around the hot routes' paths: other methods (405), a trailing slash (the table's redirect), an id holding
# a "/" (sent as %2F), an empty id, longer paths and another route of the same customer.
DISPATCH_PATHS = st.sampled_from(
    [
        "/api/v1/customers/c1/entitlements/check",
        "/api/v1/customers/c1/entitlements",
        "/api/v1/customers/nobody/entitlements/check",
        "/api/v1/customers/a%2Fb/entitlements",
        "/api/v1/customers/a%2Fb/entitlements/check",
        "/api/v1/customers/c1/entitlements/",
        "/api/v1/customers/c1/entitlements/check/",
        "/api/v1/customers//entitlements",
        "/api/v1/customers/c1/entitlements/check/more",
        "/api/v1/customers/c1",
    ]
)


def _both_ways(client: TestClient, method: str, url: str, **sent: Any) -> list[tuple[Any, ...]]:
    """The app's answer with its HotRoutes dispatched ahead of the route table, then through the table."""
    app: Any = client.app
    dispatch = app.router.middleware_stack
    assert isinstance(dispatch, HotDispatch)
    answers = []
    for stack in (dispatch, dispatch.app):
        app.router.middleware_stack = stack
        try:
            response = client.request(method, url, **sent)
        finally:
            app.router.middleware_stack = dispatch
        answers.append((response.status_code, sorted(response.headers.multi_items()), response.content))
    return answers


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=DISPATCH_PATHS,
    method=st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "DELETE"]),
    query=st.lists(st.tuples(st.sampled_from(CHECK_PARAMS), VALUES), max_size=4),
    headers=HEADERS,
    origin=st.sampled_from([None, ORIGIN, "https://elsewhere.example.com"]),
)
def test_the_hot_routes_dispatched_ahead_of_the_table_answer_as_the_table_does(
    apps: dict[str, Any],
    path: str,
    method: str,
    query: list[tuple[str, str]],
    headers: dict[str, str | None],
    origin: str | None,
) -> None:
    sent = {name: apps.get(value, value) for name, value in headers.items() if value is not None}
    if origin is not None:
        sent["Origin"] = origin
    dispatched, routed = _both_ways(apps["full"], method, path, params=query, headers=sent, follow_redirects=False)
    assert dispatched == routed


def test_the_dispatch_answers_the_hot_routes_itself_and_hands_on_everything_else(apps: dict[str, Any]) -> None:
    app: Any = apps["full"].app
    dispatch = app.router.middleware_stack
    table = dispatch.app
    handed: list[str] = []

    async def recording_table(scope: Any, receive: Any, send: Any) -> None:
        handed.append(scope["path"])
        await table(scope, receive, send)

    dispatch.app = recording_table
    key = {"X-API-KEY": apps["server"]}
    check = apps["full"].get("/api/v1/customers/c1/entitlements/check?featureId=calls&requestedUsage=7", headers=key)
    listed = apps["full"].get("/api/v1/customers/a%2Fb/entitlements", headers=key)
    refused = apps["full"].get("/api/v1/customers/c1/entitlements/check?requestedUsage=-1", headers=key)
    assert (check.json()["data"]["isGranted"], check.json()["data"]["currentUsage"]) == (True, 3)
    assert [e["feature"]["id"] for e in listed.json()["data"]["entitlements"]] == ["calls", "sso"]
    assert refused.json()["error"]["message"] == "requestedUsage: Input should be greater than or equal to 0"
    assert handed == []
    assert apps["full"].head("/api/v1/customers/c1/entitlements", headers=key).status_code == 405
    assert apps["full"].get("/api/v1/customers/c1", headers=key).status_code == 200
    assert handed == ["/api/v1/customers/c1/entitlements", "/api/v1/customers/c1"]


def test_a_route_before_a_hot_route_in_the_table_keeps_the_paths_it_matches(apps: dict[str, Any]) -> None:
    app: Any = apps["full"].app
    key = {"X-API-KEY": apps["server"]}

    async def earlier(customer_id: str) -> dict[str, str]:
        return {"earlier": customer_id}

    app.add_api_route("/api/v1/customers/{customer_id}/entitlements", earlier, methods=["GET"])
    app.router.routes.insert(0, app.router.routes.pop())
    assert apps["full"].get("/api/v1/customers/c1/entitlements", headers=key).json() == {"earlier": "c1"}
    check = apps["full"].get("/api/v1/customers/c1/entitlements/check?featureId=sso", headers=key)
    assert check.json()["data"]["isGranted"] is True
    app.router.routes.pop(0)
    listed = apps["full"].get("/api/v1/customers/c1/entitlements", headers=key)
    assert [e["feature"]["id"] for e in listed.json()["data"]["entitlements"]] == ["calls", "sso"]


# Bytes a query or header may carry: separators, escapes, a space's '+', a non-ASCII byte.
QUERY_BYTES = st.lists(
    st.sampled_from([b"a", b"B", b"=", b"&", b"%", b"%2", b"%41", b"%E9", b"+", b";", b"\xe9", b" "])
).map(b"".join)


@given(QUERY_BYTES)
def test_a_query_is_read_as_starlette_reads_it(query: bytes) -> None:
    assert hot_route._query_of(query) == dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))


@given(st.lists(st.tuples(st.sampled_from([b"x-api-key", b"x-other", b"X-API-KEY", b"x-token"]), QUERY_BYTES)))
def test_the_headers_a_plan_reads_are_read_as_starlette_reads_them(raw: list[tuple[bytes, bytes]]) -> None:
    names = {b"x-api-key": "x-api-key", b"x-token": "x-token"}
    headers = Headers(raw=raw)
    expected = {name: headers[name] for name in names.values() if name in headers}
    assert hot_route._headers_of(raw, names) == expected


def _checked(value: Decimal) -> Decimal:
    return value


async def _amounts(
    amount: Annotated[Decimal | None, Query(ge=0, le=10**15)] = None,
    count: Annotated[int | None, Query(ge=1)] = None,
    checked: Annotated[Decimal | None, AfterValidator(_checked), Query()] = None,
    name: Annotated[str | None, Query(pattern="^a")] = None,
) -> Response:
    return Response()


def test_only_a_validation_that_depends_on_the_string_alone_is_remembered() -> None:
    params = {param.key: param for param in hot_route.plan_of(get_dependant(path="/x", call=_amounts)).query}
    assert params["amount"].memo == {} and params["count"].memo == {}
    assert params["checked"].memo is None  # a function of its own may answer anything
    assert params["name"].memo is None


@given(st.lists(VALUES | st.sampled_from(["3", "3.0", "0.1", "1e-3"]), min_size=1, max_size=30))
def test_a_remembered_validation_answers_what_the_validator_answers(sent: list[str]) -> None:
    plan = hot_route.plan_of(get_dependant(path="/x", call=_amounts))
    for raw in sent:
        for param in plan.query:
            values: dict[str, Any] = {}
            errors: list[Any] = []
            hot_route._read((param,), {param.key: raw}, values, errors)
            value, problems = param.field.validate(raw, {}, loc=param.loc)
            assert (errors, str(values.get(param.name)), type(values.get(param.name))) == (
                problems or [],
                str(value) if not problems else "None",
                type(value) if not problems else type(None),
            )
            assert param.memo is None or len(param.memo) <= hot_route.MEMO_SIZE


def test_a_paths_remembered_choice_holds_only_for_its_table_and_method(apps: dict[str, Any]) -> None:
    app: Any = apps["full"].app
    key = {"X-API-KEY": apps["server"]}
    path = "/api/v1/customers/c1/entitlements"
    assert [e["feature"]["id"] for e in apps["full"].get(path, headers=key).json()["data"]["entitlements"]] == [
        "calls",
        "sso",
    ]
    assert apps["full"].head(path, headers=key).status_code == 405  # the same path, another method: the table's

    async def earlier(customer_id: str) -> dict[str, str]:
        return {"earlier": customer_id}

    app.add_api_route(path.replace("c1", "{customer_id}"), earlier, methods=["GET"])
    app.router.routes.insert(0, app.router.routes.pop())
    assert apps["full"].get(path, headers=key).json() == {"earlier": "c1"}
    app.router.routes.pop(0)
    assert "entitlements" in apps["full"].get(path, headers=key).json()["data"]
