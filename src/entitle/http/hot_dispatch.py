"""The HotRoutes answered ahead of the route table, exactly as the table would answer them.

Routing a request to the entitlement check through FastAPI (0.165) costs more than the check itself:
the app's routes are walked, each included router through its own matching and per-route contexts,
then the chosen route wraps its handler in two exit stacks and a second exception handler, about 40 us
of CPU on every check and list, against about 50 us for all the rest of the request. `HotDispatch` sits
where the route table does (inside every middleware and the exception handlers) and answers a request
for a `HotRoute` itself when the table would pick that route, with the same plan and endpoint
(`entitle.http.hot_route.answer`); anything else, it hands to the table untouched.

"The table would pick that route" is decided as Starlette decides it, conservatively: the path is
matched by the route's own path expression and the method is one of its methods (else the table's
405 or another route's answer stands), and no route before it in the table could match the path at all
(their path expressions, read from the table and read again whenever it changes). A route whose path
expression cannot be read (a host route) ends what is dispatched: the HotRoutes after it are left to
the table. So are requests under dependency overrides (tests), which FastAPI's own handler serves, and
requests traced by FastAPI's telemetry, whose span names the route the table chose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from entitle.http.hot_route import HotRoute, Plan, answer, plan_of
from entitle.http.routing import any_of, unnamed


@dataclass(frozen=True, slots=True)
class _Entry:
    """One HotRoute as the table holds it (with its inclusion's prefix and dependencies)."""

    path_regex: re.Pattern[str]
    convertors: dict[str, Any]
    methods: frozenset[str]
    route: APIRoute
    endpoint: Callable[..., Any]
    plan: Plan
    overrides: Any
    earlier: re.Pattern[str] | None  # what the routes before it in the table can match


@dataclass(frozen=True, slots=True)
class _Table:
    routes: tuple[BaseRoute, ...]  # the table's first routes, up to the last holding a HotRoute
    inclusions: tuple[tuple[Callable[[], object], object], ...]  # each included router's candidates, as read
    entries: tuple[_Entry, ...]
    any_entry: re.Pattern[str] | None  # a path no entry matches goes to the table at once
    # What each path recently asked for chose (the entry and its converted parameters, or None: the
    # table's), as long as this table is current: the same path always chooses alike in the same table.
    chosen: dict[str, tuple[_Entry, dict[str, Any]] | None] = field(default_factory=dict)


# Paths whose choice is remembered at most (then forgotten all at once): ~100 bytes each, and a path
# names its customer, so a busy server's paths outnumber any bound; this keeps the recent ones.
CHOSEN_PATHS = 4096


def _contexts(route: Any) -> Iterator[Any] | None:
    """The routes an included router holds, in the order the table tries them (nested ones too)."""
    candidates = getattr(route, "effective_candidates", None)
    if candidates is None:
        return None
    return _flatten(candidates())


def _flatten(candidates: Any) -> Iterator[Any]:
    for candidate in candidates:
        if hasattr(candidate, "effective_candidates"):
            yield from _flatten(candidate.effective_candidates())
        else:
            yield candidate


_Inclusion = tuple[int, Callable[[], object], object]  # position, its candidates' reader, what it read


def _read_table(routes: list[BaseRoute]) -> _Table:
    entries: list[_Entry] = []
    inclusions: list[_Inclusion] = []
    earlier: list[str] = []
    held = 0
    for position, route in enumerate(routes):
        contexts = _contexts(route)
        if contexts is None:
            contexts = iter([cast(Any, route)])
        else:
            read: Callable[[], object] = route.effective_candidates  # type: ignore[attr-defined]
            inclusions.append((position, read, read()))
        for context in contexts:
            regex = getattr(context, "path_regex", None) or getattr(
                getattr(context, "starlette_route", None), "path_regex", None
            )
            if regex is None:
                return _table(routes, held, inclusions, entries)
            original = getattr(context, "original_route", context)
            hot = isinstance(original, HotRoute) and original.ahead_of_table
            plan = _plan_of(context) if hot else None
            if plan is not None:
                entries.append(
                    _Entry(
                        path_regex=regex,
                        convertors=context.param_convertors,
                        methods=frozenset(context.methods or ()),
                        route=original,
                        endpoint=context.endpoint,
                        plan=plan,
                        overrides=context.dependency_overrides_provider,
                        earlier=any_of(earlier) if earlier else None,
                    )
                )
                held = position + 1
            earlier.append(unnamed(regex.pattern))
    return _table(routes, held, inclusions, entries)


def _plan_of(context: Any) -> Plan | None:
    # A declaration the plan cannot honour (an inclusion's dependencies, say) is the table's to answer:
    # FastAPI refuses it there just as HotRoute does.
    try:
        return plan_of(context.dependant)
    except TypeError:
        return None


def _table(routes: list[BaseRoute], held: int, inclusions: list[_Inclusion], entries: list[_Entry]) -> _Table:
    watched = tuple((read, seen) for position, read, seen in inclusions if position < held)
    any_entry = any_of([unnamed(entry.path_regex.pattern) for entry in entries]) if entries else None
    return _Table(tuple(routes[:held]), watched, tuple(entries), any_entry)


def _choose(table: _Table, route_path: str) -> tuple[_Entry, dict[str, Any]] | None:
    """The first entry whose path matches, with its parameters converted; None when no entry matches or
    a route before that entry could (the table's to answer)."""
    for entry in table.entries:
        found = entry.path_regex.match(route_path)
        if found is None:
            continue
        if entry.earlier and entry.earlier.match(route_path):
            return None
        return entry, {name: entry.convertors[name].convert(value) for name, value in found.groupdict().items()}
    return None


class HotDispatch:
    """ASGI: the route table's own app, with its HotRoutes answered ahead of it (see the module)."""

    def __init__(self, router: Router, app: ASGIApp) -> None:
        self.router = router
        self.app = app
        self.table = _read_table(router.routes)

    def _current(self) -> _Table:
        """The table as read, or read again when what precedes its last HotRoute changed."""
        table = self.table
        routes = self.router.routes
        # Plain loops: on every check and list, a generator's start-up costs more than these few comparisons.
        if len(routes) < len(table.routes):
            return self._reread(routes)
        for now, read in zip(routes, table.routes, strict=False):
            if now is not read:
                return self._reread(routes)
        for candidates, seen in table.inclusions:
            if candidates() is not seen:
                return self._reread(routes)
        return table

    def _reread(self, routes: list[BaseRoute]) -> _Table:
        table = self.table = _read_table(routes)
        return table

    def _select(self, scope: Scope) -> tuple[_Entry, dict[str, Any]] | None:
        route_path = get_route_path(scope)
        # Only a path some HotRoute matches needs the table read afresh (to know what precedes it); any
        # other goes to the table, which is right whatever it holds now.
        if self.table.any_entry is None or self.table.any_entry.match(route_path) is None:
            return None
        table = self._current()
        try:
            chosen = table.chosen[route_path]
        except KeyError:
            chosen = _choose(table, route_path)
            if len(table.chosen) >= CHOSEN_PATHS:
                table.chosen.clear()
            table.chosen[route_path] = chosen
        if chosen is None:
            return None
        entry = chosen[0]
        if scope["method"] not in entry.methods:
            return None
        if entry.overrides is not None and getattr(entry.overrides, "dependency_overrides", None):
            return None
        return chosen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        selected = None
        if scope["type"] == "http" and "fastapi.telemetry" not in scope:
            selected = self._select(scope)
        if selected is None:
            await self.app(scope, receive, send)
            return
        entry, params = selected
        # What the table leaves in the scope for the route it picks (Starlette's keys).
        scope.setdefault("router", self.router)
        scope["endpoint"] = entry.endpoint
        scope["path_params"] = {**scope.get("path_params", {}), **params}
        scope["route"] = entry.route
        response = await answer(entry.plan, Request(scope, receive, send))
        await response(scope, receive, send)


def dispatch_hot_routes(app: FastAPI) -> int:
    """Answer the app's HotRoutes ahead of its route table; the number it answers so."""
    router = app.router
    dispatch = HotDispatch(router, router.middleware_stack)
    # Starlette's router calls its `middleware_stack` (itself, or its own middleware around it), from
    # inside the app's middleware and exception handlers: the dispatch goes exactly there.
    router.middleware_stack = dispatch
    return len(dispatch.table.entries)
