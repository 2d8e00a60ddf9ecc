"""A JSON request body validated straight from its bytes, for routes whose bodies are large (a batch of
1,000 events): FastAPI parses a body into Python objects with `json` and then validates those, which
costs about half as much again as pydantic validating the raw JSON in one pass.

`json_body(Model)` is the route's dependency and `openapi_body(Model)` its `openapi_extra`, so the
request body stays documented (and fuzzed) as a body parameter would be. A refusal is the
`RequestValidationError` FastAPI would raise (locations under `body`), so the answer is the same 400
`INVALID_ARGUMENT` naming the fields.

A body above `OFF_LOOP_BYTES` is validated on the thread pool: a 1,000-event batch takes milliseconds
to validate, and on the event loop every other request (a usage report, a check) would wait for it.
A small body is validated inline, where a thread hop would cost more than the validation itself.
"""

from __future__ import annotations

import email.message
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import HTTPException, Request
from fastapi._compat import get_missing_field_error
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

M = TypeVar("M", bound=BaseModel)

# About a hundred events: validating them costs a few tenths of a millisecond, several thread hops.
OFF_LOOP_BYTES = 16 * 1024


class JsonBody(Generic[M]):
    """The dependency reading a request's body as `model`; `model` stays visible to whoever inspects the
    route (the compatibility test reads which fields a route declares)."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    async def __call__(self, request: Request) -> M:
        raw = await self.read(request)
        if len(raw) > OFF_LOOP_BYTES:
            return await run_in_threadpool(self.validate, raw)
        return self.validate(raw)

    async def read(self, request: Request) -> bytes:
        """The body's bytes, refused as FastAPI refuses a missing body or one it does not read as JSON."""
        raw = await request.body()
        if not raw:
            raise RequestValidationError([get_missing_field_error(("body",))])
        if not _json_or_unsaid(request.headers.get("content-type")):
            # As FastAPI answers a body it does not read as JSON: it is not an object with the fields.
            raise RequestValidationError(
                [
                    {
                        "type": "model_attributes_type",
                        "loc": ("body",),
                        "msg": "Input should be a valid dictionary or object to extract fields from",
                        "input": None,
                    }
                ]
            )
        return raw

    def validate(self, raw: bytes) -> M:
        try:
            return self.model.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


@dataclass(frozen=True, slots=True)
class SentBody:
    """A request's body as FastAPI reads a declared body parameter, before validating it: none (`sent`
    false), the JSON it parsed (a JSON content type), or the bytes (any other content type, or none)."""

    value: Any
    sent: bool = True


_UNSENT = SentBody(None, sent=False)


class DeclaredBody(JsonBody[M]):
    """A body read exactly as FastAPI reads a route's declared body parameter, the same refusals in the
    same order, but validated where the route chooses (`validate_sent`: in the worker thread that serves
    the request, one hop for both). As the route's first dependency it runs where FastAPI reads a body,
    before any other dependency: JSON FastAPI cannot parse is refused before the key is looked at, and a
    body the model refuses only after it (the validation error's handler reads a key not read yet).
    FastAPI's own rules: JSON only under a JSON content type (`application/json`, `application/*+json`;
    none at all is not JSON), parsed by `json.loads` (anything else it raises is a 400), then validated
    in Python mode from attributes with the errors located under `body`."""

    async def __call__(self, request: Request) -> SentBody:  # type: ignore[override]
        raw = await request.body()
        if not raw:
            return _UNSENT
        content_type = request.headers.get("content-type")
        if content_type:
            message = email.message.Message()
            message["content-type"] = content_type
            if message.get_content_maintype() == "application":
                subtype = message.get_content_subtype()
                if subtype == "json" or subtype.endswith("+json"):
                    try:
                        return SentBody(json.loads(raw))
                    except json.JSONDecodeError as e:
                        raise RequestValidationError(
                            [
                                {
                                    "type": "json_invalid",
                                    "loc": ("body", e.pos),
                                    "msg": "JSON decode error",
                                    "input": {},
                                    "ctx": {"error": e.msg},
                                }
                            ],
                            body=e.doc,
                        ) from e
                    except Exception as e:
                        # As FastAPI answers whatever else parsing raises (bytes that are not UTF-8, nesting
                        # deeper than the parser recurses): a 400, never an unhandled error.
                        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e
        return SentBody(raw)

    def validate_sent(self, sent: SentBody) -> M:
        if not sent.sent:
            raise RequestValidationError([get_missing_field_error(("body",))])
        try:
            return self.model.model_validate(sent.value, from_attributes=True)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors], body=sent.value) from None


def json_body(model: type[M]) -> JsonBody[M]:
    return JsonBody(model)


def _json_or_unsaid(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The `openapi_extra` declaring `model` as the route's required JSON body (its definitions inlined)."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": _inline(schema, definitions)}}}
    }


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node
