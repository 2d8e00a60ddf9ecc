"""Path ids may contain '/', sent percent-encoded as %2F by the official client.

The router matches on the decoded path, where such an id would split into two segments. The
middleware rebuilds the routing path from the raw one with '%' and '/' kept escaped inside each
segment, and the default `str` path convertor unescapes, so every `{id}` arrives exactly as sent.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette import convertors
from starlette.types import ASGIApp, Receive, Scope, Send


class _RefConvertor(convertors.StringConvertor):
    def convert(self, value: str) -> str:
        return unquote(value)


convertors.CONVERTOR_TYPES["str"] = _RefConvertor()


def _escape_segment(raw: str) -> str:
    return unquote(raw).replace("%", "%25").replace("/", "%2F")


class EncodedIdsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw: Any = scope.get("raw_path")
            # Without a percent-escape, each segment is already as sent (most requests).
            if raw and b"%" in raw:
                segments = raw.decode("utf-8", "replace").split("/")
                scope = dict(scope)
                scope["path"] = "/".join(_escape_segment(s) for s in segments)
        await self.app(scope, receive, send)
