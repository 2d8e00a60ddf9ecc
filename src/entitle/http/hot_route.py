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
request, async dependencies each used once: functions, or instances with an async `__call__`) and refuses
anything else when the route is built, so nothing a declaration asks for can be silently skipped. With
dependency overrides installed (tests), FastAPI's own handler serves the route.
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
from typing import Any, ClassVar, TypeGuard, Union, get_args, get_origin
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
    # What its validator answered for strings received before, for a validator that depends on nothing
    # else and answers an immutable value (None: ask it every time); see `_memo_of`.
    memo: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _Optional:
    defaults: Mapping[str, Any]  # name -> default
    by_key: Mapping[str, _Param]
    order: Mapping[str, int]  # key -> position in the group


@dataclass(frozen=True, slots=True)
class Plan:
    call: Callable[..., Awaitable[Any]]
    name: str | None
    dependencies: tuple[Plan, ...]
    path: tuple[_Param, ...]
    query: tuple[_Param, ...]
    headers: tuple[_Param, ...]
    request_name: str | None
    header_names: Mapping[bytes, str]  # the headers' keys as ASGI sends them (lower-cased bytes)
    optional_query: _Optional | None  # the query read by `_read_sent` (None: by `_read`)
    optional_headers: _Optional | None


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
        memo=_memo_of(field),
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


# Core schema types whose validation of a string is a function of that string alone, answering an
# immutable value; and the wrappers that only add a default or accept None around them.
_PURE_TYPES = {"decimal", "int", "float", "bool", "datetime", "date"}
_WRAPPERS = {"default", "nullable"}
# Bounds of a memo: strings longer than this are validated each time, and a full memo starts again.
MEMO_KEY_LENGTH = 64
MEMO_SIZE = 256


def _memo_of(field: Any) -> dict[str, Any] | None:
    """An empty memo for a field whose schema is one of `_PURE_TYPES` (constrained or not, wrapped or not),
    with no function of its own anywhere (a validator, a default factory): its answers may be reused."""
    adapter = getattr(field, "_type_adapter", None)
    schema = getattr(adapter, "core_schema", None)

    def pure(node: Any, wrapped: bool) -> bool:
        if callable(node):
            return False
        if isinstance(node, dict):
            kind = node.get("type")
            if wrapped and kind in _WRAPPERS:
                return all(pure(value, key == "schema") for key, value in node.items())
            if wrapped:
                return kind in _PURE_TYPES and all(pure(value, False) for value in node.values())
            return all(pure(value, False) for value in node.values())
        if isinstance(node, list | tuple):
            return all(pure(value, False) for value in node)
        return True

    return {} if isinstance(schema, dict) and pure(schema, True) else None


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
    if not _is_async(call) or call in seen or getattr(dependant, "concurrency", None) is not None:
        # FastAPI would run a plain function in a worker thread and call a repeated dependency once.
        raise TypeError(f"HotRoute needs each dependency to be a distinct async function: {call}")
    seen.add(call)
    headers = tuple(_param(f, "header") for f in dependant.header_params)
    query = tuple(_param(f, "query") for f in dependant.query_params)
    return Plan(
        call=call,
        name=name,
        dependencies=tuple(_plan(sub, sub.name, seen) for sub in dependant.dependencies),
        path=tuple(_param(f, "path") for f in dependant.path_params),
        query=query,
        headers=headers,
        request_name=dependant.request_param_name,
        header_names={param.key.encode("latin-1"): param.key for param in headers},
        optional_query=_optional(query),
        optional_headers=_optional(headers),
    )


def _is_async(call: Any) -> TypeGuard[Callable[..., Awaitable[Any]]]:
    """An async function, or an instance whose `__call__` is one (a configured dependency, such as a
    body reader: FastAPI awaits it on the event loop alike)."""
    if inspect.iscoroutinefunction(call):
        return True
    return not inspect.isclass(call) and inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004


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
        problems = _validate(param, raw, found)
        if problems:
            errors.extend(problems)
    values.update(found)


def _read_sent(group: _Optional, received: Mapping[str, Any], values: dict[str, Any], errors: list[Any]) -> None:
    """`_read` for a group whose parameters all default, unvalidated, to a value shared as is: only what
    was sent is read (most of a check's ten are not), failures kept in the group's order."""
    found = dict(group.defaults)
    failures: list[tuple[int, list[Any]]] = []
    for key, raw in received.items():
        param = group.by_key.get(key)
        if param is not None:
            problems = _validate(param, raw, found)
            if problems:
                failures.append((group.order[key], problems))
    for _, problems in sorted(failures, key=lambda failure: failure[0]):
        errors.extend(problems)
    values.update(found)


def _optional(group: tuple[_Param, ...]) -> _Optional | None:
    if any(p.required or p.copy_default or p.validate_default for p in group):
        return None
    return _Optional(
        defaults={p.name: p.default for p in group},
        by_key={p.key: p for p in group},
        order={p.key: n for n, p in enumerate(group)},
    )


def _validate(param: _Param, raw: Any, found: dict[str, Any]) -> list[Any] | None:
    """Put the received value's validated form in `found`; the failures, if it has any."""
    if param.str_lengths is not None and type(raw) is str and len(raw) in param.str_lengths:
        found[param.name] = raw
        return None
    memo = param.memo
    if memo is not None and type(raw) is str:
        value = memo.get(raw, _UNSEEN)
        if value is not _UNSEEN:
            found[param.name] = value
            return None
    value, problems = param.field.validate(raw, found, loc=param.loc)
    if problems:
        return list(problems)
    found[param.name] = value
    if memo is not None and type(raw) is str and len(raw) <= MEMO_KEY_LENGTH:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[raw] = value
    return None


_UNSEEN = object()


def _query_of(query_string: bytes) -> dict[str, str]:
    """The query as Starlette's `QueryParams` reads it (`parse_qsl`, blank values kept), a repeated
    parameter's last value, as a plain dict (its own `get` costs a KeyError per parameter not sent).
    Without an escape ('%', or '+' for a space), each pair is already as sent: split, not unquoted."""
    if b"%" in query_string or b"+" in query_string:
        return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    query: dict[str, str] = {}
    for pair in query_string.decode("latin-1").split("&"):
        if pair:
            name, _, value = pair.partition("=")
            query[name] = value
    return query


def _headers_of(raw: Any, names: Mapping[bytes, str]) -> dict[str, str]:
    """The headers the plan reads, as Starlette's `Headers` answers them: a repeated header's first value."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name = names.get(key)
        if name is not None and name not in headers:
            headers[name] = value.decode("latin-1")
    return headers


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
        query = _query_of(request.scope["query_string"])
        if plan.optional_query is not None:
            _read_sent(plan.optional_query, query, values, errors)
        else:
            _read(plan.query, query, values, errors)
    if plan.headers:
        headers = _headers_of(request.scope["headers"], plan.header_names)
        if plan.optional_headers is not None:
            _read_sent(plan.optional_headers, headers, values, errors)
        else:
            _read(plan.headers, headers, values, errors)
    if plan.request_name:
        values[plan.request_name] = request
    return values, errors


class HotRoute(APIRoute):
    """An APIRoute (async endpoint answering a `Response`) solved by a plan made once; see the module."""

    # Answered ahead of the route table (`entitle.http.hot_dispatch.HotDispatch`).
    ahead_of_table: ClassVar[bool] = True

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


class PlannedRoute(HotRoute):
    """A HotRoute the route table routes, for a route far down the table: answering it ahead of the table
    would have `HotDispatch` check, on every hot request, that none of the routers before it changed (for
    the event ingestion route, 8 us more on each entitlement check of ~40 us, to save ~40 us of a batch's
    routing)."""

    ahead_of_table = False
