"""The stand-in's Stripe wire: form decoding, Stripe-shaped errors and small helpers."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, Response

TEST_SECRET_KEY = "sk_test_entitle_emulator"
_PRICE_KEY = re.compile(r"^(items\[\d+\]\[|)price(\]|)$")
_ALNUM = string.ascii_letters + string.digits
_METADATA_CLAUSE = re.compile(r"metadata\['(?P<key>[^']+)'\]:'(?P<value>(?:[^'\\]|\\.)*)'")


def _rand(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _now() -> int:
    return int(time.time())


# ---------------------------------------------------------------------------------------------------
# Form decoding: the SDK sends v1 parameters form-encoded with bracket keys (metadata[k], items[0][price]).


def decode_form(raw: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        parts = [key.split("[", 1)[0]] + [p.rstrip("]") for p in key.split("[")[1:]]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    decoded: dict[str, Any] = _listify(root)
    return decoded


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def _bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


# ---------------------------------------------------------------------------------------------------
# Errors, shaped as Stripe's.


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **extra}}

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status, headers={"Request-Id": f"req_{_rand(14)}"})


def _missing(kind: str, ident: str) -> StripeError:
    return StripeError(404, f"No such {kind}: '{ident}'", code="resource_missing", param="id")


def _bad(message: str, param: str | None = None) -> StripeError:
    return StripeError(400, message, code="parameter_invalid", param=param)


def _require(params: dict[str, Any], name: str) -> Any:
    if params.get(name) in (None, ""):
        raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
    return params[name]


def _merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    if update in (None, ""):
        return {} if update == "" else current
    if not isinstance(update, dict):
        raise _bad("Invalid hash", "metadata")
    merged = dict(current)
    for k, v in update.items():
        if v == "":
            merged.pop(k, None)  # Stripe: an empty value removes the key
        else:
            merged[k] = str(v)
    return merged


def _list(objects: list[dict[str, Any]], url: str, query: dict[str, Any]) -> dict[str, Any]:
    ordered = list(reversed(objects))  # newest first, as Stripe lists
    after = query.get("starting_after")
    if after:
        ids = [o["id"] for o in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    limit = max(1, min(100, int(query.get("limit", 10))))
    return {"object": "list", "url": url, "has_more": len(ordered) > limit, "data": ordered[:limit]}


def _tiers(raw: list[Any]) -> list[dict[str, Any]]:
    """Stripe's tier checks and the tiers as a price shows them (`up_to` null for "inf")."""
    shown: list[dict[str, Any]] = []
    previous = 0
    for i, tier in enumerate(raw):
        if not isinstance(tier, dict) or "up_to" not in tier:
            raise _bad("Each tier needs `up_to` (a whole number, or inf for the last one).", f"tiers[{i}][up_to]")
        last = i == len(raw) - 1
        up_to: int | None = None
        if tier["up_to"] == "inf":
            if not last:
                raise _bad("Only the last tier may have up_to=inf.", f"tiers[{i}][up_to]")
        else:
            if not str(tier["up_to"]).isdigit() or int(tier["up_to"]) <= previous:
                raise _bad("Tiers must have ascending, whole-number up_to values.", f"tiers[{i}][up_to]")
            if last:
                raise _bad("The last tier must have up_to=inf.", f"tiers[{i}][up_to]")
            up_to = previous = int(tier["up_to"])
        entry: dict[str, Any] = {"up_to": up_to}
        for name in ("unit_amount", "flat_amount"):
            whole, decimal = tier.get(name), tier.get(f"{name}_decimal")
            if whole is not None and decimal is not None:
                raise _bad(f"You may only specify one of {name} and {name}_decimal.", f"tiers[{i}][{name}]")
            if whole is not None and not str(whole).isdigit():
                raise _bad("Invalid non-negative integer", f"tiers[{i}][{name}]")
            if decimal is not None:
                try:
                    value = float(str(decimal))
                except ValueError:
                    raise _bad("Invalid decimal", f"tiers[{i}][{name}_decimal]") from None
                if value < 0 or (name == "flat_amount" and not value.is_integer()):
                    raise _bad("Invalid decimal", f"tiers[{i}][{name}_decimal]")
                if value.is_integer() and "." not in str(decimal):
                    whole = decimal
            entry[name] = int(whole) if whole is not None else None
            entry[f"{name}_decimal"] = str(decimal if decimal is not None else whole) if (whole or decimal) else None
        if entry["unit_amount_decimal"] is None and entry["flat_amount_decimal"] is None:
            raise _bad("Each tier needs a unit amount or a flat amount.", f"tiers[{i}]")
        shown.append(
            {k: entry[k] for k in ("flat_amount", "flat_amount_decimal", "unit_amount", "unit_amount_decimal", "up_to")}
        )
    return shown


def _as_secret_key(auth: str) -> str:
    """localstripe takes secret keys only: a restricted key (the stand-in enforced its limits) reaches it
    as the secret key of the same account."""
    return auth.replace("Bearer rk_", "Bearer sk_", 1)


def _account(auth: str) -> dict[str, Any]:
    """The account a key opens: one per key, as if each key were its own Stripe account."""
    key = auth.removeprefix("Bearer ").strip()
    account_id = f"acct_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return {
        "id": account_id,
        "object": "account",
        "business_profile": {"name": "Entitle Stripe emulator"},
        "charges_enabled": True,
        "country": "US",
        "default_currency": "usd",
        "details_submitted": True,
        "email": None,
        "payouts_enabled": True,
        "settings": {"dashboard": {"display_name": "Entitle Stripe emulator", "timezone": "Etc/UTC"}},
        "type": "standard",
    }


def _injected(status: int) -> StripeError:
    if status == 429:
        return StripeError(
            429, "Too many requests (emulator: injected failure).", type_="invalid_request_error", code="rate_limit"
        )
    return StripeError(status, "An unknown error occurred (emulator: injected failure).", type_="api_error")
