"""Route dispatch whose cost does not grow with the routers before the one that answers.

FastAPI (0.12x and later) keeps each included router as one route that, to say whether a request is
its, walks every route of that router through a per-route context: tens to hundreds of microseconds
of CPU per router, paid by every request for every router included before its own (the health check,
behind forty routers, paid milliseconds on a loaded machine). `gate_included_routers` puts in front
of each included router one regular expression made of all its routes' own path expressions: a path
none of them can match is answered "not mine" at once, exactly as the router itself would answer, and
any other path goes through FastAPI's own matching unchanged (405 for a known path with another
method, the chosen route, its path parameters). A router whose routes change later gets its gate
rebuilt; one with a route this cannot read (a host route, a fallback route) is left ungated.

A router holding a path but no route answering the request's method (the customers' list, `GET
/api/v1/customers`, for the `POST` that provisions, answered by a later router) would walk all its
routes to answer PARTIAL: when each of its routes is a FastAPI route matched by path and methods
alone, the gate's expressions per method answer that PARTIAL (an included router's match carries no
scope) without the walk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute

# The very function Starlette's routes match paths with (root path removed), so the gate sees what they see.
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

_Read = TypeVar("_Read")

_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


def gate_included_routers(app: FastAPI) -> int:
    """Gate every included router of the app; the number gated (0 on a FastAPI that inlines routes)."""
    return sum(_gate(route) for route in app.router.routes)


def path_patterns(route: Any) -> list[str] | None:
    """The path expressions of every route an included router holds (nested ones too), or None when
    one of them is not matched by its path alone."""
    return _each_route(route, _path_of)


def method_patterns(route: Any) -> list[tuple[str, frozenset[str] | None]] | None:
    """The path expression of every route an included router holds (nested ones too), each with the
    methods it answers (None: any), when each is a FastAPI route matched by its path and its methods
    alone; else None."""
    return _each_route(route, _path_and_methods_of)


def _each_route(route: Any, read: Callable[[Any], _Read | None]) -> list[_Read] | None:
    """What `read` reads of every route an included router holds (nested routers walked into), or None
    when the router has low-priority routes or `read` cannot read one of them."""
    candidates = getattr(route, "effective_candidates", None)
    low_priority = getattr(route, "effective_low_priority_routes", None)
    if candidates is None or low_priority is None or low_priority():
        return None
    found: list[_Read] = []
    for candidate in candidates():
        if hasattr(candidate, "effective_candidates"):
            nested = _each_route(candidate, read)
            if nested is None:
                return None
            found.extend(nested)
            continue
        item = read(candidate)
        if item is None:
            return None
        found.append(item)
    return found


def _path_of(candidate: Any) -> str | None:
    regex = getattr(candidate, "path_regex", None) or getattr(
        getattr(candidate, "starlette_route", None), "path_regex", None
    )
    return None if regex is None else unnamed(regex.pattern)


def _path_and_methods_of(candidate: Any) -> tuple[str, frozenset[str] | None] | None:
    regex = getattr(candidate, "path_regex", None)
    if regex is None or not isinstance(getattr(candidate, "original_route", None), APIRoute):
        return None
    methods = getattr(candidate, "methods", None)
    return unnamed(regex.pattern), frozenset(methods) if methods else None


def method_gates(entries: list[tuple[str, frozenset[str] | None]]) -> dict[str | None, re.Pattern[str] | None]:
    """Per method, one expression matching the paths some route answers with that method (None: the
    methods no route names, answered only by routes of any method; an absent expression: none)."""
    named = {method for _, methods in entries for method in methods or ()}
    gates: dict[str | None, re.Pattern[str] | None] = {}
    for method in (*sorted(named), None):
        patterns = [p for p, methods in entries if methods is None or (method is not None and method in methods)]
        gates[method] = any_of(patterns) if patterns else None
    return gates


def unnamed(pattern: str) -> str:
    """A path expression without its named groups: one expression of many alternatives cannot repeat a
    group name, and a test of "can this path match" needs no groups."""
    return _NAMED_GROUP.sub("(?:", pattern)


def _gate(route: Any) -> bool:
    patterns = path_patterns(route)
    if not patterns:
        return False
    candidates_of: Callable[[], object] = route.effective_candidates
    own_matches: Callable[[Scope], tuple[Match, Scope]] = route.matches
    state: dict[str, Any] = {"candidates": candidates_of(), "gate": any_of(patterns), "methods": _methods_of(route)}

    def matches(scope: Scope) -> tuple[Match, Scope]:
        candidates = candidates_of()  # FastAPI hands back a new list once the router's routes change
        if candidates is not state["candidates"]:
            rebuilt = path_patterns(route)
            state["candidates"] = candidates
            state["gate"] = any_of(rebuilt) if rebuilt else None
            state["methods"] = _methods_of(route) if rebuilt else None
        gate = state["gate"]
        kind = scope["type"]
        if gate is not None and kind in ("http", "websocket"):
            path = get_route_path(scope)
            if gate.match(path) is None:
                return Match.NONE, {}
            gates = state["methods"]
            if gates is not None and kind == "http":
                method = scope["method"]
                answering = gates[method] if method in gates else gates[None]
                if answering is None or answering.match(path) is None:
                    # Each of its routes whose path this is refuses the method: the router's own answer
                    # (an included router's match carries no scope), without walking its routes.
                    return Match.PARTIAL, {}
        return own_matches(scope)

    # The router stays the same object (the OpenAPI schema, url_path_for and FastAPI's own checks see
    # it unchanged); only its answer to "is this path yours" is asked of the gate first.
    route.matches = matches
    return True


def _methods_of(route: Any) -> dict[str | None, re.Pattern[str] | None] | None:
    entries = method_patterns(route)
    return method_gates(entries) if entries else None


def any_of(patterns: list[str]) -> re.Pattern[str]:
    """One expression matching what any of the (unnamed) path expressions matches."""
    return re.compile("|".join(f"(?:{p})" for p in patterns))
