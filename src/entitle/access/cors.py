"""CORS per environment: a browser page may call with an environment's key only from an origin that
environment allows (`entitle environments update --allowed-origin`); none is allowed by default.

A preflight carries no key, so it is answered for an origin some environment allows, and only for GET
(the one method a client key may use), except under `WIDGET_PATHS`: the embeddable widgets' routes,
where a client key with the customer's token also writes (POST, DELETE). The real request then carries
its key: its response names the origin only when the key's environment allows it, so another
environment's origin reads nothing.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entitle.environments.access import origin_allowed_somewhere
from entitle.environments.service import Principal
from entitle.http.errors import error_response

ALLOWED_METHODS = "GET"
# The widgets' routes (`entitle.widgets.routes`): a page also checks out and cancels there.
WIDGET_PATHS = "/api/v1/widgets/"
WIDGET_METHODS = "GET, POST, DELETE"
# Browsers cache a preflight this long (s); the real response is judged on every request regardless.
PREFLIGHT_MAX_AGE = "600"
DEFAULT_HEADERS = "X-API-KEY, X-CUSTOMER-TOKEN"
_HEADER_LIST = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")


class EnvironmentCorsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            response = await self._preflight(scope, headers, origin)
            await response(scope, receive, send)
            return
        # The auth dependency leaves the caller here (a shared dict, also through copied scopes).
        state = scope.setdefault("state", {})

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers.add_vary_header("Origin")
                principal = state.get("principal")
                if isinstance(principal, Principal) and origin in principal.allowed_origins:
                    response_headers["Access-Control-Allow-Origin"] = origin
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, headers: Headers, origin: str) -> ASGIApp:
        method = headers["access-control-request-method"].strip().upper()
        requested = headers.get("access-control-request-headers", "").strip()
        db = scope["app"].state.db
        widget = scope["path"].startswith(WIDGET_PATHS)
        allowed_methods = WIDGET_METHODS if widget else ALLOWED_METHODS
        if method not in allowed_methods.split(", ") or not await run_in_threadpool(
            origin_allowed_somewhere, db, origin
        ):
            refused = error_response(403, "PERMISSION_DENIED", f"CORS: {method} from origin {origin!r} is not allowed")
            refused.headers["Vary"] = "Origin"
            return refused
        if requested and not _HEADER_LIST.match(requested):
            return error_response(400, "INVALID_ARGUMENT", "CORS: malformed Access-Control-Request-Headers")
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": allowed_methods,
                # Echoed: the official clients add headers of their own (x-stainless-*) beside the key.
                "Access-Control-Allow-Headers": requested or DEFAULT_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                "Vary": "Origin",
            },
        )
