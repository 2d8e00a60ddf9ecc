"""Customer tokens for tests: the environment's signing secret (made on first use, as
`entitle keys signing-secret` does) and a token minted with the SDK helper a backend would use."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from entitle.clock import utcnow
from entitle.environments.access import signing_secret
from entitle.environments.models import KeyKind
from entitle.sdk.tokens import CUSTOMER_TOKEN_HEADER, customer_token
from entitle.secrets import secret_box

if TYPE_CHECKING:
    from tests.conftest import LiveServer


def secret_of(server: LiveServer, environment: str = "development") -> str:
    return signing_secret(server.db, secret_box(server.data_dir), environment)


def token_for(
    server: LiveServer,
    customer_id: str,
    *,
    environment: str = "development",
    expires_in: timedelta = timedelta(hours=1),
) -> str:
    """A valid token for `customer_id`, expiring `expires_in` after Entitle's clock (the test clock if set)."""
    return customer_token(secret_of(server, environment), customer_id, expires_in=expires_in, now=utcnow())


def browser(server: LiveServer, customer_id: str, *, environment: str = "development") -> httpx.Client:
    """What a customer's browser page holds: a client key and that customer's token."""
    client = server.http(server.key(environment, KeyKind.CLIENT))
    client.headers[CUSTOMER_TOKEN_HEADER] = token_for(server, customer_id, environment=environment)
    return client
