"""Routes whose parameters FastAPI declares but does not solve on each request.

FastAPI solves a route's dependencies anew on every request and, doing so, inspects every parameter's
declaration again (a sequence? a model? which alias?) before validating it. On the entitlement check, with
ten query parameters and three headers, that took about 250 µs of CPU a request against about 40 µs for the
check itself. A `HotRoute` keeps FastAPI's declaration of its endpoint (the OpenAPI document, and
`route.dependant` as the compatibility test reads it) and solves that same dependant with a plan made once
when the route is built: the same fields validated by the same validators in FastAPI's order, failures
raised as the same `RequestValidationError`, dependencies called as FastAPI calls them. So there is one
declaration and one set of rules, read once instead of on every request.

The plan covers only what the hot routes use (path, query and header parameters of scalar types, the
request, async dependencies each used once) and refuses anything else when the route is built, so nothing
a declaration asks for can be silently skipped. With dependency overrides installed (tests), FastAPI's own
handler serves the route.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from copy import deepcopy
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin
from urllib.parse import parse_qsl

import fastapi.routing
from fastapi import params
from fastapi._compat import get_missing_field_error
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

_SCALARS = (str, int, float, bool, Decimal, datetime, date)


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    key: str  # what the request calls it
    loc: tuple[str, str]
    field: Any  # FastAPI's ModelField: its validator is the declaration's own
    required: bool
    default: Any
    copy_default: bool
    validate_default: bool
    # A received string of this many characters is what its validator would answer (None: ask it).
    str_lengths: range | None


@dataclass(frozen=True, slots=True)
class Plan:
    call: Callable[..., Awaitable[Any]]
    name: str | None
    dependencies: tuple[Plan, ...]
    path: tuple[_Param, ...]
    query: tuple[_Param, ...]
    headers: tuple[_Param, ...]
    request_name: str | None


def _is_scalar(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return all(arg is NoneType or _is_scalar(arg) for arg in get_args(annotation))
    return isinstance(annotation, type) and (issubclass(annotation, _SCALARS) or issubclass(annotation, Enum))


def _param(field: Any, where: str) -> _Param:
    info = field.field_info
    if not _is_scalar(info.annotation) or info.validation_alias not in (None, field.alias):
        raise TypeError(f"HotRoute cannot read the {where} parameter {field.name} ({info.annotation})")
    named = field.alias
    key = named
    if isinstance(info, params.Header):
        if info.convert_underscores and named == field.name:
            named = named.replace("_", "-")
        key = named.lower()  # HTTP header names are case-insensitive; ASGI gives them lower-cased
    default = field.default
    return _Param(
        name=field.name,
        key=key,
        loc=(where, named),
        field=field,
        required=info.is_required(),
        default=default,
        copy_default=not isinstance(default, (NoneType, *_SCALARS)),
        validate_default=bool(info.validate_default),
        str_lengths=_str_lengths(field),
    )


_STR_LENGTHS = {"min_length", "max_length"}


def _str_lengths(field: Any) -> range | None:
    """For a field whose schema is a `str` (optional or defaulted) constrained at most by its length, with
    no other setting: the lengths it accepts. pydantic answers such a string with that same string, and
    refuses it only for its length (counted in characters, as `len` counts them)."""
    adapter = getattr(field, "_type_adapter", None)
    schema = getattr(adapter, "core_schema", None)
    while isinstance(schema, dict) and schema.get("type") in ("default", "nullable") and not schema.get("metadata"):
        if set(schema) - {"type", "schema", "default", "metadata"}:
            return None
        schema = schema.get("schema")
    if not isinstance(schema, dict) or schema.get("type") != "str" or schema.get("metadata"):
        return None
    if set(schema) - {"type", "metadata"} - _STR_LENGTHS:
        return None
    lowest, highest = schema.get("min_length", 0), schema.get("max_length")
    if not isinstance(lowest, int) or not isinstance(highest, int | None):
        return None
    return range(lowest, sys.maxsize if highest is None else highest + 1)


def _plan(dependant: Dependant, name: str | None, seen: set[Any]) -> Plan:
    unsupported = {
        "a body": dependant.body_params,
        "cookies": dependant.cookie_params,
        "the connection": dependant.http_connection_param_name,
        "a websocket": dependant.websocket_param_name,
        "background tasks": dependant.background_tasks_param_name,
        "the response": dependant.response_param_name,
        "security scopes": dependant.security_scopes_param_name or dependant.own_oauth_scopes,
    }
    for what, present in unsupported.items():
        if present:
            raise TypeError(f"HotRoute cannot give {dependant.call} {what}")
    call = dependant.call
    if not inspect.iscoroutinefunction(call) or call in seen or getattr(dependant, "concurrency", None) is not None:
        # FastAPI would run a plain function in a worker thread and call a repeated dependency once.
        raise TypeError(f"HotRoute needs each dependency to be a distinct async function: {call}")
    seen.add(call)
    return Plan(
        call=call,
        name=name,
        dependencies=tuple(_plan(sub, sub.name, seen) for sub in dependant.dependencies),
        path=tuple(_param(f, "path") for f in dependant.path_params),
        query=tuple(_param(f, "query") for f in dependant.query_params),
        headers=tuple(_param(f, "header") for f in dependant.header_params),
        request_name=dependant.request_param_name,
    )


def _read(group: tuple[_Param, ...], received: Mapping[str, Any], values: dict[str, Any], errors: list[Any]) -> None:
    """FastAPI's `request_params_to_args` for scalar parameters: the last value of a repeated one, the
    default (not validated) of a missing one, and every failure collected."""
    found: dict[str, Any] = {}
    for param in group:
        raw = received.get(param.key)
        if raw is None:
            if param.required:
                errors.append(get_missing_field_error(loc=param.loc))
                continue
            raw = deepcopy(param.default) if param.copy_default else param.default
            if not param.validate_default:
                found[param.name] = raw
                continue
        elif param.str_lengths is not None and type(raw) is str and len(raw) in param.str_lengths:
            found[param.name] = raw
            continue
        value, problems = param.field.validate(raw, found, loc=param.loc)
        if problems:
            errors.extend(problems)
        else:
            found[param.name] = value
    values.update(found)


async def _solve(plan: Plan, request: Request) -> tuple[dict[str, Any], list[Any]]:
    values: dict[str, Any] = {}
    errors: list[Any] = []
    for sub in plan.dependencies:
        sub_values, sub_errors = await _solve(sub, request)
        if sub_errors:
            errors.extend(sub_errors)
            continue
        solved = await sub.call(**sub_values)
        if sub.name is not None:
            values[sub.name] = solved
    _read(plan.path, request.path_params, values, errors)
    if plan.query:
        # Plain dicts as Starlette's mappings answer: a repeated parameter's last value, a repeated
        # header's first (their own `get` costs a KeyError for every parameter not sent). The query is
        # parsed as Starlette's `QueryParams` parses it, without building the multi-dict.
        query = parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
        _read(plan.query, dict(query), values, errors)
    if plan.headers:
        raw = request.headers.raw
        _read(plan.headers, {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw)}, values, errors)
    if plan.request_name:
        values[plan.request_name] = request
    return values, errors


class HotRoute(APIRoute):
    """An APIRoute (async endpoint answering a `Response`) solved by a plan made once; see the module."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()
        # An included router's route is built with its inclusion's dependant (its prefix, its router's
        # dependencies): FastAPI passes it through this context variable, read the same way here (a FastAPI
        # without it builds each included route itself).
        inclusion = getattr(fastapi.routing, "_effective_route_context_var", None)
        context = inclusion.get() if inclusion is not None else None
        route = context if context is not None and context.original_route is self else self
        plan = plan_of(route.dependant)
        overrides = route.dependency_overrides_provider

        async def handle(request: Request) -> Response:
            if overrides is not None and getattr(overrides, "dependency_overrides", None):
                return await declared(request)
            return await answer(plan, request)

        return handle


def plan_of(dependant: Dependant) -> Plan:
    """The plan solving a HotRoute's dependant (its own, or an inclusion's with the router's prefix)."""
    return _plan(dependant, None, set())


async def answer(plan: Plan, request: Request) -> Response:
    """The endpoint's response to the request, its parameters solved by the plan."""
    values, errors = await _solve(plan, request)
    if errors:
        raise RequestValidationError(errors)
    response = await plan.call(**values)
    if not isinstance(response, Response):
        raise TypeError(f"{plan.call.__name__} must answer a Response on a HotRoute")
    return response
