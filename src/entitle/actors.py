"""Who is acting in the current request: set once per request, read by whatever records writes.

The audit log (`entitle.audit`) names the author of every write made through the API or the console
without each route passing it along. A request gets an empty `Actor` from `ActorScope` (an ASGI
middleware, so the object is shared by the request's dependencies and handler even though FastAPI
runs each of them in its own thread with a copy of the context); the authenticating code fills it in.
Outside a request (the job worker, a test calling a service) there is no actor and nothing is named.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

ActorKind = Literal["api_key", "user", "cli"]


@dataclass
class Actor:
    kind: ActorKind | None = None
    # The API key's prefix (never the key), a console user's email, or the CLI user's login.
    label: str | None = None
    environment_id: int | None = None

    def identify(self, kind: ActorKind, label: str, environment_id: int | None) -> None:
        self.kind = kind
        self.label = label
        self.environment_id = environment_id

    @property
    def known(self) -> bool:
        return self.kind is not None and self.label is not None


_current: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("entitle_actor", default=None)


def current() -> Actor | None:
    return _current.get()


@contextmanager
def acting_as(kind: ActorKind, label: str, environment_id: int | None = None) -> Iterator[Actor]:
    """Name the actor for a block of code outside a request (a CLI command)."""
    actor = Actor(kind, label, environment_id)
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


class ActorScope:
    """ASGI middleware: a fresh, unidentified `Actor` for each HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _current.set(Actor())
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
