"""Pure rules of access: customer tokens (docs/customer-tokens.md) and browser origins (CORS)."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import jwt

if TYPE_CHECKING:
    from jwt.types import Options

from entitle.errors import InvalidArgument

TOKEN_HEADER = "X-CUSTOMER-TOKEN"
SIGNING_SECRET_PREFIX = "cts_"
# Far above a real token (a few hundred bytes); a longer header is refused before any parsing.
MAX_TOKEN_LENGTH = 4096
MAX_ORIGINS = 50

MISSING_TOKEN = (
    f"a client key reads a customer's data only with a customer token: send one made for this customer "
    f"by your backend in the {TOKEN_HEADER} header (docs/customer-tokens.md)"
)
INVALID_TOKEN = f"the {TOKEN_HEADER} header is not a valid customer token for this customer"
EXPIRED_TOKEN = f"the customer token in {TOKEN_HEADER} has expired: have your backend make a new one"

# Claims are read, never trusted blindly: only HS256, and `sub` and `exp` must be there. The other
# registered claims are checked here against Entitle's clock (not PyJWT's wall clock) or ignored.
_DECODE_OPTIONS: Options = {
    "require": ["sub", "exp"],
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
}


def new_signing_secret() -> str:
    return SIGNING_SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class SigningSecrets:
    """An environment's signing secrets in plain text: the current one, and the previous one while its
    grace period after a rotation lasts."""

    current: str | None = None
    previous: str | None = None
    previous_expires_at: datetime | None = None

    def valid_at(self, now: datetime) -> list[str]:
        found = [self.current] if self.current else []
        if self.previous and self.previous_expires_at is not None and now < self.previous_expires_at:
            found.append(self.previous)
        return found


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def customer_token_refusal(token: str | None, customer_id: str, valid_secrets: list[str], now: datetime) -> str | None:
    """Why `token` does not let its bearer act as `customer_id` at `now`, or None when it does.

    The answer never depends on whether the customer exists: the token is judged before any lookup."""
    if token is None or token.strip() == "":
        return MISSING_TOKEN
    if len(token) > MAX_TOKEN_LENGTH:
        return INVALID_TOKEN
    claims = None
    for secret in valid_secrets:
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], options=_DECODE_OPTIONS)
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError:
            return INVALID_TOKEN
    if claims is None or claims.get("sub") != customer_id:
        return INVALID_TOKEN
    expires = _number(claims.get("exp"))
    if expires is None:
        return INVALID_TOKEN
    not_before = claims.get("nbf")
    if not_before is not None and (_number(not_before) is None or now.timestamp() < float(not_before)):
        return INVALID_TOKEN
    if now.timestamp() >= expires:
        return EXPIRED_TOKEN
    return None


def normalize_origin(raw: str) -> str:
    """A browser origin as browsers send it: `scheme://host[:port]`, lower case, no default port."""
    value = raw.strip()
    if value == "*":
        raise InvalidArgument("allowed origins are listed one by one ('*' would let any site use the keys)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"origin {raw!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"origin {raw!r} must be http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidArgument(f"origin {raw!r} must be only scheme, host and port (no path, query or user)")
    if port == 0:
        raise InvalidArgument(f"origin {raw!r} has an invalid port")
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets in an origin
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def normalize_origins(raw: list[str]) -> list[str]:
    found: list[str] = []
    for value in raw:
        origin = normalize_origin(value)
        if origin not in found:
            found.append(origin)
    if len(found) > MAX_ORIGINS:
        raise InvalidArgument(f"at most {MAX_ORIGINS} allowed origins per environment")
    return found


ENVIRONMENT_HEADER = "X-ENVIRONMENT-ID"


class EnvironmentMismatch(InvalidArgument):
    code = "ENVIRONMENT_MISMATCH"


def check_environment_header(claimed: str | None, environment_name: str, environment_id: int) -> None:
    """A request may name its environment (`X-ENVIRONMENT-ID`, optional in the contract); an API key acts
    only in its own. Naming another one is refused rather than ignored: the caller believes it is writing
    somewhere else. The environment is named by its name or its numeric id."""
    if claimed is None or claimed.strip() in (environment_name, str(environment_id)):
        return
    raise EnvironmentMismatch(
        f"{ENVIRONMENT_HEADER} names environment {claimed.strip()[:64]!r}, but this API key belongs to "
        f"environment {environment_name!r}: use a key of that environment, or drop the header"
    )
