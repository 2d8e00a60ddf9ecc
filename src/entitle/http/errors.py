"""Every error leaves as `{"error": {"code", "message"}}`, the envelope the official client documents."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from entitle.errors import EntitleError, UnknownField, UnsupportedField
from entitle.http.deps import KEY_READ
from entitle.http.wire import UNSUPPORTED_FIELD

log = logging.getLogger("entitle.http")

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    retry: bool | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    if retry is not None:
        headers["x-should-retry"] = "true" if retry else "false"
    return JSONResponse(body, status_code=status, headers=headers)


def _describe(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for err in errors[:20]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        details.append({"field": ".".join(loc), "problem": str(err.get("msg", "invalid"))})
    first = details[0] if details else {"field": "", "problem": "invalid request"}
    where = f"{first['field']}: " if first["field"] else ""
    return f"{where}{first['problem']}", details


# A wire name (camelCase) in an error location; other parts are pydantic's union branches ("FEATURE",
# "function-after[...]") that are not part of the request's JSON.
_WIRE_NAME = re.compile(r"^[a-z][A-Za-z0-9]*$")


def json_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """`("body", "entitlements", 0, "FEATURE", "isCustom")` -> `entitlements[0].isCustom`."""
    path = ""
    for i, part in enumerate(loc):
        if i == 0 and part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        elif _WIRE_NAME.match(str(part)) or (i == 1 and loc[0] in ("query", "header")):
            path += f".{part}" if path else str(part)
    return path


def _unsupported(errors: list[Any]) -> UnsupportedField | None:
    """The first field refused as unsupported, if any: that answer wins over the request's other problems,
    since the field has to go whatever else is fixed."""
    refused = [e for e in errors if e.get("type") == UNSUPPORTED_FIELD]
    if not refused:
        return None
    first = refused[0]
    error = UnsupportedField(json_path(first.get("loc", ())), str(first.get("msg", "not supported")))
    error.details = [{"field": json_path(e.get("loc", ())), "problem": str(e.get("msg", ""))} for e in refused[:20]]
    return error


def _unknown_path(error: Any) -> str:
    # The unknown key is whatever the caller sent, so it is kept as is, not filtered like a wire name.
    loc = tuple(error.get("loc", ()))
    if not loc:
        return ""
    parent = json_path(loc[:-1])
    return f"{parent}.{loc[-1]}" if parent else str(loc[-1])


def _unknown(errors: list[Any]) -> UnknownField | None:
    """The first field the request's model does not have, if any (pydantic's `extra_forbidden`)."""
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    if not unknown:
        return None
    error = UnknownField(_unknown_path(unknown[0]))
    error.details = [{"field": _unknown_path(e), "problem": "unknown field"} for e in unknown[:20]]
    return error


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EntitleError)
    async def _domain(_: Request, exc: EntitleError) -> JSONResponse:
        retry_after = getattr(exc, "retry_after_seconds", None)  # an error that can say when to try again
        return error_response(
            exc.status_code, exc.code, exc.message, details=exc.details, retry=exc.retryable, retry_after=retry_after
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A route whose use case reads its key (`deps.server_key_read`) has not read it yet: the key is
        # answered for first, as a route whose dependency read it before its body is.
        key_read = getattr(request.state, KEY_READ, None)
        if key_read is not None and key_read.principal is None:
            try:
                await run_in_threadpool(key_read.read)
            except EntitleError as refused:
                return await _domain(request, refused)
        unsupported = _unsupported(list(exc.errors()))
        if unsupported is not None:
            return error_response(400, unsupported.code, unsupported.message, details=unsupported.details, retry=False)
        unknown = _unknown(list(exc.errors()))
        if unknown is not None:
            return error_response(400, unknown.code, unknown.message, details=unknown.details, retry=False)
        message, details = _describe(list(exc.errors()))
        return error_response(400, "INVALID_ARGUMENT", message, details=details, retry=False)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        # A race between two writers of the same id reaches here; the first one won.
        log.info("integrity conflict: %s", exc.orig)
        return error_response(409, "CONFLICT", "the request conflicts with existing data", retry=False)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold, e.g. a NUL character in an id or filter on PostgreSQL.
        log.info("data error: %s", exc.orig)
        return error_response(400, "INVALID_ARGUMENT", "the request holds a value the database cannot store")

    @app.exception_handler(OperationalError)
    async def _operational(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return error_response(503, "UNAVAILABLE", "the database is busy or unreachable; retry", retry=True)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "INTERNAL", "internal error")
