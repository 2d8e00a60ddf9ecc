"""Customer tokens: what your backend gives the browser page of a logged-in customer so that page may
read that customer's entitlements and paywall with the environment's (public) client key.

A customer token is a JSON Web Token (RFC 7519) signed with HMAC-SHA256 (`HS256`) by the environment's
signing secret (`entitle keys signing-secret --environment NAME`), with two claims: `sub`, the customer
id, and `exp`, when it expires (seconds since the Unix epoch). Any JWT library makes the same token;
docs/customer-tokens.md shows the bytes. Standard library only, like the rest of the SDK.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

CUSTOMER_TOKEN_HEADER = "X-CUSTOMER-TOKEN"
DEFAULT_TTL = timedelta(hours=1)
_HEADER = {"alg": "HS256", "typ": "JWT"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def customer_token(
    signing_secret: str,
    customer_id: str,
    *,
    expires_in: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> str:
    """A token letting its bearer act as `customer_id` until `now + expires_in` (send it in the
    X-CUSTOMER-TOKEN header). Keep the lifetime short: a token cannot be revoked, only outlived (or
    killed with its secret, by rotating it)."""
    if not signing_secret:
        raise ValueError("signing_secret is required (entitle keys signing-secret --environment NAME)")
    if not customer_id:
        raise ValueError("customer_id is required")
    if expires_in <= timedelta(0):
        raise ValueError("expires_in must be positive")
    issued = now if now is not None else datetime.now(UTC)
    if issued.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    expires = int((issued + expires_in).timestamp())
    signing_input = f"{_b64url(_json(_HEADER))}.{_b64url(_json({'sub': customer_id, 'exp': expires}))}"
    signature = hmac.new(signing_secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"
