"""The routers' path gates (`entitle.http.routing`) change which route answers nothing: for every path
the application serves (each route's own template filled in, and paths around them), with every method,
the gated routers pick the same route with the same kind of match as FastAPI's own matching."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import Match

from entitle.app import create_app
from entitle.http.routing import gate_included_routers, path_patterns

METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


def _templates(route: Any) -> list[str]:
    found: list[str] = []
    for candidate in route.effective_candidates():
        if hasattr(candidate, "effective_candidates"):
            found.extend(_templates(candidate))
        else:
            found.append(candidate.path or candidate.starlette_route.path)
    return found


def _probes(templates: list[str]) -> set[str]:
    probes = {"/", "/nope", "/api", "/api/v1", "/api/v1/nope", "/healthz/", "/api/v1/customers/"}
    for template in templates:
        filled = re.sub(r"\{[^}:]+:path\}", "a/b", template)
        filled = re.sub(r"\{[^}]+\}", "x-1", filled)
        probes |= {filled, filled + "/", filled + "/extra", filled.rsplit("/", 1)[0] or "/"}
    return probes


def _dispatch(routes: list[Any], path: str, method: str) -> tuple[int, Match] | None:
    partial = None
    for i, route in enumerate(routes):
        scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": [], "query_string": b""}
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return i, match
        if match == Match.PARTIAL and partial is None:
            partial = (i, match)
    return partial


@pytest.fixture(scope="module")
def routes() -> list[Any]:
    return list(create_app().router.routes)


def test_the_gated_routers_choose_the_route_fastapi_chooses(routes: list[Any]) -> None:
    gated = [r for r in routes if "matches" in vars(r)]
    assert len(gated) >= 30, "the application's included routers are gated"
    templates = [t for r in gated for t in _templates(r)]
    probes = sorted(_probes(templates))
    chosen = {(p, m): _dispatch(routes, p, m) for p in probes for m in METHODS}
    for route in gated:
        del route.matches  # FastAPI's own matching again
    try:
        for (path, method), answer in chosen.items():
            assert _dispatch(routes, path, method) == answer, (method, path)
    finally:
        for route in gated:
            assert path_patterns(route)
    assert sum(1 for answer in chosen.values() if answer is not None and answer[1] == Match.FULL) > 200
    assert any(answer is None for answer in chosen.values()), "some probes match nothing"
    assert any(answer is not None and answer[1] == Match.PARTIAL for answer in chosen.values()), "and some are 405s"


def test_a_gate_is_rebuilt_when_its_router_gains_a_route() -> None:
    # A router of its own: the application's routers are module-level, shared by every app of the process.
    app = FastAPI()
    own = APIRouter(prefix="/api/v1/own")

    async def first() -> dict[str, str]:
        return {}

    own.add_api_route("/first", first, methods=["GET"])
    app.include_router(own)
    assert gate_included_routers(app) == 1
    router: Any = app.router.routes[-1]
    router.matches({"type": "http", "path": "/", "method": "GET", "root_path": "", "headers": [], "query_string": b""})

    async def late() -> dict[str, str]:
        return {}

    router.original_router.add_api_route("/late-route", late, methods=["GET"])
    (path,) = [t for t in _templates(router) if t.endswith("/late-route")]
    scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": [], "query_string": b""}
    assert router.matches(scope)[0] == Match.FULL


def test_a_path_whose_routes_all_refuse_the_method_is_answered_partial_without_walking_them() -> None:
    """`POST /api/v1/customers`: the customers' router holds the path (its list) but not the method; its
    gate answers the PARTIAL its routes would, without FastAPI matching each of them (a later router
    answers the request)."""
    scope = {
        "type": "http",
        "path": "/api/v1/customers",
        "method": "POST",
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    routes = list(create_app().router.routes)  # gated afresh (the first test takes its routers' gates off)
    holding = [r for r in routes if "matches" in vars(r) and "/api/v1/customers" in _templates(r)]
    assert len(holding) >= 2
    answers = []
    for route in holding:
        walked: list[Any] = []
        original = route.original_router.matches

        def walk(scope: Any, original: Any = original, walked: list[Any] = walked) -> Any:
            walked.append(scope)
            return original(scope)

        route.original_router.matches = walk
        try:
            answers.append((route.matches(dict(scope))[0], bool(walked)))
        finally:
            del route.original_router.matches
    # The first refuses POST without walking; the one that answers it is walked (FULL).
    assert answers[0] == (Match.PARTIAL, False)
    assert (Match.FULL, True) in answers
