"""A local Stripe for tests: the `localstripe` emulator behind a small stateful stand-in.

The official `stripe` SDK is pointed at the stand-in's address (`StripeEmulator.api_base`); nothing
here talks to the real Stripe, and both servers listen on 127.0.0.1 only.

Who serves what
---------------

    SDK ──> stand-in (starlette under uvicorn, a thread of the test process, free port)
              │  1. failure injection      (`fail_next`: errors in front of Stripe, for retry tests)
              │  2. idempotency keys       (for every POST, whoever serves it; localstripe has none)
              │  3. endpoints localstripe lacks, served from the stand-in's own state:
              │       /v1/prices, /v1/prices/{id}                      (create, retrieve, update, list)
              │       /v1/checkout/sessions[/{id}[/expire]]             (create, retrieve, list, expire)
              │       /v1/billing_portal/sessions                       (create)
              │       /v1/billing/meters[/{id}[/deactivate|/reactivate]] (create, retrieve, update, list)
              │       /v1/billing/meters/{id}/event_summaries           (list, one summary per query)
              │       /v1/billing/meter_events                          (create)
              │  4. fields localstripe refuses on coupons (name, currency_options) and subscriptions
              │     (automatic_tax, collection_method, days_until_due, default_payment_method, discounts,
              │     proration_behavior): taken off the request, kept, and shown on the objects returned
              └──> localstripe (a subprocess, free port): everything else — customers, products, plans,
                   subscriptions, invoices, payment methods, ... — exactly as localstripe implements it.

Details that matter to tests:

- A Price created here is also created in localstripe as a Plan with the *same id* (Stripe itself
  serves every Price under /v1/plans too), so a later localstripe Subscription or Invoice on that
  price id works and stays localstripe's: the stand-in renames `items[i][price]` (and `price` of a
  subscription item) to localstripe's `plan` on the way (localstripe subscriptions take one item).
  Mirrored: recurring per-unit prices with an integral `unit_amount` (and their `transform_quantity`),
  and tiered prices with integral tier amounts; not mirrored (localstripe's Plan cannot hold them):
  one-time prices and fractional `unit_amount_decimal` (also in a tier). Price updates (active,
  metadata, nickname) are kept by the stand-in only.
- Tiers and quantity transformation: the stand-in takes `billing_scheme=tiered` with `tiers` (`up_to`
  a whole number or "inf", last one "inf"; `unit_amount`/`unit_amount_decimal`, `flat_amount`/
  `flat_amount_decimal`) and `tiers_mode` graduated|volume, and `transform_quantity` (`divide_by`,
  `round` up|down; not with tiers, as at Stripe). localstripe computes graduated tiers wrongly (it
  prices the whole quantity in the first tier) and knows no `transform_quantity`, so the boot script
  replaces its subscription-item amount with Stripe's documented rules: `transform_quantity` divides
  and rounds first; volume prices every unit at the tier the quantity falls in plus that tier's flat
  amount; graduated prices each unit at its own tier plus the flat amount of every tier reached; a
  metered item bills nothing up front (Stripe bills it in arrears from meter events).
- Idempotency follows Stripe's documented rules: the first response for a key is saved and replayed
  (with `Idempotent-Replayed: true`) to a POST with the same key and the same parameters; the same
  key with other parameters is a 400 `idempotency_error`; a key whose first request is still running
  is a 409. Responses to requests that failed parameter validation (400) are not saved, as at Stripe.
- Injected failures (`fail_next`) model errors raised in front of Stripe's API (network, 429, 503):
  by default nothing executes and nothing is saved against the idempotency key. With
  `after_execution=True` the request executes (and its result is saved) but the caller gets the
  error — a response lost on the way back, the case idempotency keys exist for.
- `StandIn.after_write` (a callback) sees each POST that executed without error, after its result was
  saved and before the answer goes back: crash tests SIGKILL the calling worker process there.
- Objects the stand-in returns have the top-level fields of Stripe's published examples
  (`shared/stripe/fixtures3.json`, from Stripe's OpenAPI repository); `test_stripe_emulator.py`
  checks the field sets against that file when it is there.
- localstripe persists its store to a fixed `/tmp/localstripe.pickle`, which concurrent test runs on
  one machine would share; the subprocess is started with persistence switched off, bound to
  127.0.0.1 (its own `start()` binds every interface).

Checkout Sessions keep `automatic_tax[enabled]`, `phone_number_collection[enabled]` and `discounts` as
asked (Stripe Tax computes nothing here: a session asking for it shows `status: requires_location_inputs`).

Not emulated (a test that needs them must say so): webhooks from the stand-in's objects (checkout
completion creating a subscription, meter events reaching localstripe invoices), search other than
customers' and subscriptions' by metadata (which the stand-in answers at once, where Stripe's index
lags by up to a minute), Products' `default_price`, and Stripe's 24-hour expiry of idempotency keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.http import SSL_CONTEXT
from tests.support.ports import listening_socket, with_free_port

# Started with `python -c`: no persistence to the shared pickle, loopback only, no access log.
_LOCALSTRIPE_BOOT = """
import sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

# Stripe's price semantics on localstripe's plans (see "Tiers and quantity transformation" above).
_plan_init = resources.Plan.__init__
def _plan_with_transform(self, *args, transform_quantity=None, **kwargs):
    _plan_init(self, *args, **kwargs)
    self.transform_quantity = transform_quantity
resources.Plan.__init__ = _plan_with_transform

def _stripe_amount(self):
    plan = self.plan
    if plan.usage_type == "metered":
        return 0  # billed in arrears from meter events, never up front
    quantity = self.quantity
    transform = getattr(plan, "transform_quantity", None)
    if transform:
        divide_by = int(transform["divide_by"])
        quantity = -(-quantity // divide_by) if transform.get("round") == "up" else quantity // divide_by
    if plan.billing_scheme == "per_unit":
        return plan.amount * quantity
    def unit(tier): return int(tier.get("unit_amount") or 0)
    def flat(tier): return int(tier.get("flat_amount") or 0)
    def top(tier): return None if tier["up_to"] == "inf" else int(tier["up_to"])
    if plan.tiers_mode == "volume":
        tier = next(t for t in plan.tiers if top(t) is None or quantity <= top(t))
        return quantity * unit(tier) + flat(tier)
    total, floor = 0, 0
    for tier in plan.tiers:
        if quantity <= floor:
            break
        ceiling = quantity if top(tier) is None else min(quantity, top(tier))
        total += (ceiling - floor) * unit(tier) + flat(tier)
        floor = ceiling
    return total
resources.SubscriptionItem._calculate_amount = _stripe_amount
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

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
    return _listify(root)


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


# ---------------------------------------------------------------------------------------------------


@dataclass
class Failure:
    remaining: int
    method: str | None
    path_prefix: str
    status: int
    after_execution: bool


@dataclass
class Logged:
    method: str
    path: str
    idempotency_key: str | None
    status: int
    replayed: bool = False
    injected: bool = False
    # The decoded form of a POST that reached execution (what the caller asked Stripe for).
    params: dict[str, Any] | None = None


@dataclass
class _Saved:
    method: str
    path: str
    params: list[tuple[str, str]]
    status: int
    body: bytes
    media_type: str


@dataclass
class StandIn:
    """Stripe endpoints localstripe lacks, idempotency keys and failure injection, in front of localstripe."""

    upstream: str
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Fields localstripe's Coupons and Subscriptions lack, kept here by object id (see `_split_extras`).
    coupon_extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscription_extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Keys Stripe no longer accepts (401), and restricted keys with the paths they may not open (403).
    revoked_keys: set[str] = field(default_factory=set)
    restricted_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    public_base: str = ""
    _failures: list[Failure] = field(default_factory=list)
    _saved: dict[tuple[str, str], _Saved] = field(default_factory=dict)
    _in_flight: set[tuple[str, str]] = field(default_factory=set)
    _expired_identifiers: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: httpx.AsyncClient | None = None
    # Called (in the stand-in's thread) with each POST that executed without an error, after its result
    # was saved against its idempotency key and before the answer goes back: a test can kill the caller
    # there (the object exists at "Stripe", the caller never learns it). Cleared by `reset`.
    after_write: Callable[[Logged], None] | None = None

    # -- control (called from the test thread) -----------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            for store in (
                self.prices,
                self.checkout_sessions,
                self.portal_sessions,
                self.meters,
                self.meter_events,
                self.portal_configurations,
            ):
                store.clear()
            self.revoked_keys.clear()
            self.restricted_keys.clear()
            self.coupon_extras.clear()
            self.subscription_extras.clear()
            self.log.clear()
            self._failures.clear()
            self._saved.clear()
            self._in_flight.clear()
            self._expired_identifiers.clear()
            self.after_write = None

    def fail_next(
        self,
        times: int,
        *,
        path_prefix: str = "/v1/",
        method: str | None = "POST",
        status: int = 503,
        after_execution: bool = False,
    ) -> None:
        with self._lock:
            self._failures.append(Failure(times, method, path_prefix, status, after_execution))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def pass_identifier_window(self) -> None:
        """Stripe forgets idempotency keys (24 hours) and meter-event identifiers (a rolling 24 hours)
        after a while: from now on a key or identifier sent before is new again. Events stay counted."""
        with self._lock:
            self._saved.clear()
            self._expired_identifiers.update(self.meter_events)

    def writes(self) -> list[Logged]:
        with self._lock:
            return [entry for entry in self.log if entry.method == "POST"]

    # -- request pipeline ----------------------------------------------------------------------------

    def app(self) -> Starlette:
        methods = ["GET", "POST", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])

    def _take_failure(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for failure in self._failures:
                if (
                    failure.remaining > 0
                    and (failure.method in (None, method))
                    and path.startswith(failure.path_prefix)
                ):
                    failure.remaining -= 1
                    return failure
        return None

    async def _handle(self, request: Request) -> Response:
        method, path = request.method, request.url.path
        raw = (await request.body()).decode()
        idem = request.headers.get("idempotency-key") if method == "POST" else None
        account = request.headers.get("authorization", "")
        refused = self._refused_key(account.removeprefix("Bearer ").strip(), path)
        if refused is not None:
            self._record(Logged(method, path, idem, refused.status))
            return refused.response()
        failure = self._take_failure(method, path)
        if failure is not None and not failure.after_execution:
            self._record(Logged(method, path, idem, failure.status, injected=True))
            return _injected(failure.status).response()

        slot = (account, idem) if idem else None
        params = sorted(parse_qsl(raw, keep_blank_values=True))
        if slot is not None:
            with self._lock:
                saved = self._saved.get(slot)
                in_flight = slot in self._in_flight
                if saved is None and not in_flight:
                    self._in_flight.add(slot)
            if saved is not None:
                if (saved.method, saved.path, saved.params) != (method, path, params):
                    self._record(Logged(method, path, idem, 400))
                    return StripeError(
                        400,
                        f"Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{idem}' if you meant to execute a different request.",
                        type_="idempotency_error",
                    ).response()
                self._record(Logged(method, path, idem, saved.status, replayed=True))
                return Response(
                    saved.body,
                    status_code=saved.status,
                    media_type=saved.media_type,
                    headers={"Idempotent-Replayed": "true", "Idempotency-Key": idem or ""},
                )
            if in_flight:
                self._record(Logged(method, path, idem, 409))
                return StripeError(
                    409,
                    "There is currently another in-progress request using this Stripe-Idempotency-Key. "
                    "Please try again later.",
                    code="idempotency_key_in_use",
                ).response()
        try:
            response = await self._execute(request, method, path, raw)
        finally:
            if slot is not None:
                with self._lock:
                    self._in_flight.discard(slot)
        if slot is not None and response.status_code != 400:
            with self._lock:
                self._saved[slot] = _Saved(
                    method, path, params, response.status_code, bytes(response.body), response.media_type or ""
                )
        if failure is not None:  # executed and saved, but the answer is lost on the way back
            self._record(Logged(method, path, idem, failure.status, injected=True))
            return _injected(failure.status).response()
        entry = Logged(method, path, idem, response.status_code, params=decode_form(raw) if method == "POST" else None)
        self._record(entry)
        hook = self.after_write
        if hook is not None and method == "POST" and response.status_code < 400:
            hook(entry)
        return response

    def _refused_key(self, key: str, path: str) -> StripeError | None:
        if key in self.revoked_keys:
            return StripeError(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}", type_="invalid_request_error")
        denied = self.restricted_keys.get(key, ())
        if any(path.startswith(prefix) for prefix in denied):
            return StripeError(
                403,
                f"The provided key '{key[:8]}***' does not have the required permissions for this endpoint "
                f"({path}). Having the necessary permissions would allow this request to continue.",
                type_="invalid_request_error",
            )
        return None

    def _record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    async def _execute(self, request: Request, method: str, path: str, raw: str) -> Response:
        query = decode_form(request.url.query)
        params = decode_form(raw) if method == "POST" else query
        parts = path.strip("/").split("/")
        try:
            result = await self._route(request, method, parts, params, query)
        except StripeError as exc:
            return exc.response()
        if result is None:
            try:
                raw, extras = await self._split_extras(request, method, parts, params, raw)
            except StripeError as exc:
                return exc.response()
            if extras and not raw and method == "POST" and len(parts) == 3:
                # Only fields the stand-in keeps changed: localstripe refuses an empty update.
                found = await self._upstream_get(request.headers.get("authorization", ""), path)
                if found is None:
                    return _missing(parts[1].rstrip("s"), parts[2]).response()
                return self._with_extras(parts, extras, JSONResponse(found))
            return self._with_extras(parts, extras, await self._forward(request, raw))
        return JSONResponse(result, headers={"Request-Id": f"req_{_rand(14)}"})

    async def _route(
        self, request: Request, method: str, parts: list[str], params: dict[str, Any], query: dict[str, Any]
    ) -> dict[str, Any] | None:
        auth = request.headers.get("authorization", "")
        match (method, parts):
            case ("POST", ["v1", "prices"]):
                return await self._create_price(auth, params)
            case ("GET", ["v1", "prices"]):
                return self._list_prices(query)
            case ("GET", ["v1", "prices", "search"]):
                raise StripeError(404, "The stand-in does not emulate price search.")
            case ("GET", ["v1", ("customers" | "subscriptions") as kind, "search"]):
                return await self._search(auth, kind, query)
            case ("GET", ["v1", "prices", price_id]):
                return self._price(price_id)
            case ("POST", ["v1", "prices", price_id]):
                return self._update_price(price_id, params)
            case ("POST", ["v1", "checkout", "sessions"]):
                return await self._create_checkout_session(auth, params)
            case ("GET", ["v1", "checkout", "sessions"]):
                return _list(list(self.checkout_sessions.values()), "/v1/checkout/sessions", query)
            case ("GET", ["v1", "checkout", "sessions", session_id]):
                return self._checkout_session(session_id)
            case ("POST", ["v1", "checkout", "sessions", session_id, "expire"]):
                return self._expire_checkout_session(session_id)
            case ("GET", ["v1", "account"]):
                return _account(auth)
            case ("POST", ["v1", "billing_portal", "configurations"]):
                return self._save_portal_configuration(None, params)
            case ("GET", ["v1", "billing_portal", "configurations"]):
                configurations = list(self.portal_configurations.values())
                return _list(configurations, "/v1/billing_portal/configurations", query)
            case ("GET", ["v1", "billing_portal", "configurations", configuration_id]):
                return self._portal_configuration(configuration_id)
            case ("POST", ["v1", "billing_portal", "configurations", configuration_id]):
                return self._save_portal_configuration(self._portal_configuration(configuration_id), params)
            case ("POST", ["v1", "billing_portal", "sessions"]):
                return await self._create_portal_session(auth, params)
            case ("POST", ["v1", "billing", "meters"]):
                return self._create_meter(params)
            case ("GET", ["v1", "billing", "meters"]):
                meters = [m for m in self.meters.values() if query.get("status") in (None, m["status"])]
                return _list(meters, "/v1/billing/meters", query)
            case ("GET", ["v1", "billing", "meters", meter_id]):
                return self._meter(meter_id)
            case ("POST", ["v1", "billing", "meters", meter_id]):
                meter = self._meter(meter_id)
                if "display_name" in params:
                    meter["display_name"] = params["display_name"]
                meter["updated"] = _now()
                return meter
            case ("POST", ["v1", "billing", "meters", meter_id, ("deactivate" | "reactivate") as action]):
                meter = self._meter(meter_id)
                meter["status"] = "inactive" if action == "deactivate" else "active"
                meter["status_transitions"]["deactivated_at"] = _now() if action == "deactivate" else None
                meter["updated"] = _now()
                return meter
            case ("GET", ["v1", "billing", "meters", meter_id, "event_summaries"]):
                return self._event_summaries(meter_id, query)
            case ("POST", ["v1", "billing", "meter_events"]):
                return self._create_meter_event(params)
        return None

    async def _upstream(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.upstream, timeout=30)
        return self._client

    async def _forward(self, request: Request, raw: str) -> Response:
        client = await self._upstream()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        headers = {k: _as_secret_key(v) if k.lower() == "authorization" else v for k, v in headers.items()}
        if request.method == "POST" and request.url.path.startswith(("/v1/subscriptions", "/v1/subscription_items")):
            # localstripe predates Prices: its subscription items name the plan, which has the price's id.
            pairs = [(_PRICE_KEY.sub(r"\1plan\2", k), v) for k, v in parse_qsl(raw, keep_blank_values=True)]
            raw = urlencode(pairs)
        query = request.url.query
        if request.url.path.startswith("/v1/subscriptions"):
            # The stand-in shows discounts expanded already; localstripe knows no such field to expand.
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, v) for k, v in pairs if not (k.startswith("expand") and v.startswith("discounts"))])
        upstream = await client.request(
            request.method, request.url.path, params=query, content=raw.encode(), headers=headers
        )
        if upstream.status_code == 404 and "json" not in upstream.headers.get("content-type", ""):
            return StripeError(
                404,
                f"Unrecognized request URL ({request.method}: {request.url.path}). "
                "(emulator: neither localstripe nor the stand-in serves this endpoint)",
            ).response()
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "application/json"),
        )

    async def _search(self, auth: str, kind: str, query: dict[str, Any]) -> dict[str, Any]:
        """Stripe's search for customers and subscriptions, for metadata clauses joined by AND (what
        Entitle asks), over localstripe's list; anything else in the query is a 400, as at Stripe."""
        text = str(_require(query, "query"))
        clauses = [c.strip() for c in re.split(r"\s+AND\s+", text)]
        wanted: dict[str, str] = {}
        for clause in clauses:
            match = _METADATA_CLAUSE.fullmatch(clause)
            if match is None:
                raise _bad(f"the stand-in's search takes metadata['key']:'value' clauses only, not {clause!r}", "query")
            wanted[match["key"]] = re.sub(r"\\(.)", r"\1", match["value"])
        listed = await self._upstream_get(auth, f"/v1/{kind}?limit=100") or {"data": []}
        hits = [o for o in listed["data"] if all((o.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
        limit = int(query.get("limit", 10))
        return {
            "object": "search_result",
            "url": f"/v1/{kind}/search",
            "has_more": len(hits) > limit,
            "data": hits[:limit],
            "next_page": None,
            "total_count": len(hits),
        }

    async def _upstream_get(self, auth: str, path: str) -> dict[str, Any] | None:
        client = await self._upstream()
        resp = await client.get(path, headers={"authorization": _as_secret_key(auth)})
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        found: dict[str, Any] = resp.json()
        return found

    # -- coupon and subscription fields localstripe lacks ----------------------------------------------
    #
    # localstripe refuses these parameters; the stand-in takes them off the request, keeps them by the
    # object's id and puts them back on every coupon or subscription it returns:
    #   coupons:       name, currency_options
    #   subscriptions: automatic_tax, collection_method, days_until_due, default_payment_method, discounts (a list of
    #                  {coupon}; "" removes them), proration_behavior (kept as the last one used)
    # A discount copies the coupon as it was when applied, so deleting the coupon (Stripe: applied
    # discounts stay) leaves the subscription's discount in place.

    _COUPON_EXTRAS = ("name", "currency_options")
    _SUBSCRIPTION_EXTRAS = (
        "automatic_tax",
        "collection_method",
        "days_until_due",
        "default_payment_method",
        "discounts",
        "proration_behavior",
    )

    async def _split_extras(
        self, request: Request, method: str, parts: list[str], params: dict[str, Any], raw: str
    ) -> tuple[str, dict[str, Any] | None]:
        if method != "POST" or len(parts) not in (2, 3) or parts[1] not in ("coupons", "subscriptions"):
            return raw, None
        names = self._COUPON_EXTRAS if parts[1] == "coupons" else self._SUBSCRIPTION_EXTRAS
        pairs = parse_qsl(raw, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k.split("[", 1)[0] not in names]
        extras = {k: v for k, v in params.items() if k in names}
        if parts[1] == "subscriptions":
            extras = await self._subscription_extras(request.headers.get("authorization", ""), extras)
        return urlencode(kept), extras

    async def _subscription_extras(self, auth: str, extras: dict[str, Any]) -> dict[str, Any]:
        method = extras.get("collection_method")
        if method is not None and method not in ("charge_automatically", "send_invoice"):
            raise _bad(f"Invalid collection_method: {method}", "collection_method")
        if method == "send_invoice" and not str(extras.get("days_until_due", "")).isdigit():
            raise _bad("days_until_due is required when collection_method is send_invoice.", "days_until_due")
        if "days_until_due" in extras:
            extras["days_until_due"] = int(extras["days_until_due"])
        if "automatic_tax" in extras:  # Stripe Tax computes nothing here; the setting is kept as asked
            tax = bool(_bool((extras["automatic_tax"] or {}).get("enabled")))
            extras["automatic_tax"] = {"enabled": tax, "disabled_reason": None, "liability": None}
        if "discounts" in extras:
            wanted = extras["discounts"] if isinstance(extras["discounts"], list) else []
            discounts = []
            for entry in wanted:
                coupon_id = _require(entry, "coupon")
                coupon = await self._upstream_get(auth, f"/v1/coupons/{coupon_id}")
                if coupon is None:
                    raise StripeError(404, f"No such coupon: '{coupon_id}'", code="resource_missing", param="coupon")
                coupon.update(self.coupon_extras.get(coupon_id, {}))
                discounts.append({"id": f"di_{_rand(24)}", "object": "discount", "coupon": coupon, "start": _now()})
            extras["discounts"] = discounts
        return extras

    def _with_extras(self, parts: list[str], extras: dict[str, Any] | None, response: Response) -> Response:
        if len(parts) < 2 or parts[1] not in ("coupons", "subscriptions") or response.status_code != 200:
            return response
        body = json.loads(bytes(response.body))
        objects = body["data"] if body.get("object") == "list" else [body]
        if extras is not None and len(objects) == 1 and "id" in objects[0]:
            store = self.coupon_extras if parts[1] == "coupons" else self.subscription_extras
            store.setdefault(objects[0]["id"], {}).update(extras)
        for obj in objects:
            if obj.get("object") == "coupon":
                obj.setdefault("name", None)
                obj.update(self.coupon_extras.get(obj["id"], {}))
            elif obj.get("object") == "subscription":
                obj.update(
                    {"collection_method": "charge_automatically", "days_until_due": None, "discounts": []}
                    | {"automatic_tax": {"enabled": False, "disabled_reason": None, "liability": None}}
                    | self.subscription_extras.get(obj["id"], {})
                )
                obj["discount"] = obj["discounts"][0] if obj["discounts"] else None
        headers = {k: v for k, v in response.headers.items() if k.lower() == "request-id"}
        return JSONResponse(body, status_code=response.status_code, headers=headers)

    # -- prices --------------------------------------------------------------------------------------

    def _price(self, price_id: str) -> dict[str, Any]:
        price = self.prices.get(price_id)
        if price is None:
            raise _missing("price", price_id)
        return price

    async def _create_price(self, auth: str, params: dict[str, Any]) -> dict[str, Any]:
        currency = str(_require(params, "currency")).lower()
        if len(currency) != 3 or not currency.isalpha():
            raise _bad(f"Invalid currency: {currency}.", "currency")
        product = params.get("product")
        if product is None:
            raise StripeError(
                400, "You must specify either `product` or `product_data`.", code="parameter_missing", param="product"
            )
        if await self._upstream_get(auth, f"/v1/products/{product}") is None:
            raise StripeError(404, f"No such product: '{product}'", code="resource_missing", param="product")
        scheme = params.get("billing_scheme", "per_unit")
        unit_amount: int | None = None
        unit_amount_decimal: str | None = None
        tiers = params.get("tiers")
        if scheme == "per_unit":
            if "unit_amount" in params and "unit_amount_decimal" in params:
                raise _bad("You may only specify one of these parameters: unit_amount, unit_amount_decimal.")
            if "unit_amount" in params:
                if not str(params["unit_amount"]).isdigit():
                    raise _bad("Invalid non-negative integer", "unit_amount")
                unit_amount = int(params["unit_amount"])
                unit_amount_decimal = str(unit_amount)
            elif "unit_amount_decimal" in params:
                unit_amount_decimal = str(params["unit_amount_decimal"])
                try:
                    value = float(unit_amount_decimal)  # validation only; the decimal string is kept as sent
                except ValueError:
                    raise _bad("Invalid decimal", "unit_amount_decimal") from None
                if value < 0 or ("." in unit_amount_decimal and len(unit_amount_decimal.split(".")[1]) > 12):
                    raise _bad("Invalid decimal", "unit_amount_decimal")
                if value.is_integer() and "." not in unit_amount_decimal:
                    unit_amount = int(unit_amount_decimal)
            else:
                raise StripeError(
                    400,
                    "Missing required param: unit_amount.",
                    code="parameter_missing",
                    param="unit_amount",
                )
        elif scheme == "tiered":
            if not isinstance(tiers, list) or not tiers or params.get("tiers_mode") not in ("graduated", "volume"):
                raise _bad("Tiered prices need `tiers` and `tiers_mode` (graduated or volume).", "tiers")
            tiers = _tiers(tiers)
        else:
            raise _bad(f"Invalid billing_scheme: {scheme}", "billing_scheme")
        transform = params.get("transform_quantity")
        if transform is not None:
            if scheme == "tiered":
                raise _bad("Quantity transformation is not compatible with tiered pricing.", "transform_quantity")
            divide_by = str(transform.get("divide_by", "")) if isinstance(transform, dict) else ""
            if not divide_by.isdigit() or int(divide_by) < 1:
                raise _bad("Invalid positive integer", "transform_quantity[divide_by]")
            if transform.get("round") not in ("up", "down"):
                raise _bad("Invalid transform_quantity[round]: must be one of up or down", "transform_quantity[round]")
            transform = {"divide_by": int(divide_by), "round": transform["round"]}
        recurring = params.get("recurring")
        recurring_out: dict[str, Any] | None = None
        if recurring is not None:
            interval = recurring.get("interval")
            if interval not in ("day", "week", "month", "year"):
                raise _bad("Invalid recurring[interval]", "recurring[interval]")
            usage_type = recurring.get("usage_type", "licensed")
            meter = recurring.get("meter")
            if usage_type == "metered":
                if meter is None:
                    raise _bad("Metered prices must be backed by a meter: pass recurring[meter].", "recurring[meter]")
                self._meter(meter)
            recurring_out = {
                "interval": interval,
                "interval_count": int(recurring.get("interval_count", 1)),
                "meter": meter,
                "usage_type": usage_type,
                "trial_period_days": None,
            }
        price_id = f"price_{_rand(24)}"
        price = {
            "active": _bool(params.get("active", True)),
            "billing_scheme": scheme,
            "created": _now(),
            "currency": currency,
            "custom_unit_amount": None,
            "id": price_id,
            "livemode": False,
            "lookup_key": params.get("lookup_key"),
            "metadata": _merge_metadata({}, params.get("metadata")),
            "nickname": params.get("nickname"),
            "object": "price",
            "product": product,
            "recurring": recurring_out,
            "tax_behavior": params.get("tax_behavior", "unspecified"),
            "tiers_mode": params.get("tiers_mode"),
            "transform_quantity": transform,
            "type": "recurring" if recurring_out else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_amount_decimal,
        }
        if scheme == "tiered":
            price["tiers"] = tiers  # only present when expanded at Stripe; kept for the tests' eyes
        await self._mirror_plan(auth, price, tiers)
        self.prices[price_id] = price
        return price

    async def _mirror_plan(self, auth: str, price: dict[str, Any], tiers: Any) -> None:
        """Create the localstripe Plan with the price's id, so subscriptions on the price work there."""
        recurring = price["recurring"]
        if recurring is None:
            return
        form: dict[str, Any] = {
            "id": price["id"],
            "product": price["product"],
            "currency": price["currency"],
            "interval": recurring["interval"],
            "interval_count": recurring["interval_count"],
            "usage_type": recurring["usage_type"],
        }
        if price["billing_scheme"] == "tiered":
            if any(t["unit_amount"] is None and t["unit_amount_decimal"] is not None for t in tiers):
                return  # a fractional tier amount: localstripe's Plan holds integers only
            form["billing_scheme"] = "tiered"
            form["tiers_mode"] = price["tiers_mode"]
            for i, tier in enumerate(tiers):
                form[f"tiers[{i}][up_to]"] = "inf" if tier["up_to"] is None else tier["up_to"]
                form[f"tiers[{i}][unit_amount]"] = tier["unit_amount"] or 0
                form[f"tiers[{i}][flat_amount]"] = tier["flat_amount"] or 0
        elif price["unit_amount"] is not None:
            form["amount"] = price["unit_amount"]
            if price["transform_quantity"]:
                form["transform_quantity[divide_by]"] = price["transform_quantity"]["divide_by"]
                form["transform_quantity[round]"] = price["transform_quantity"]["round"]
        else:
            return  # a fractional unit_amount_decimal: localstripe's Plan holds integers only
        if price["nickname"]:
            form["nickname"] = price["nickname"]
        for key, value in price["metadata"].items():
            form[f"metadata[{key}]"] = value
        client = await self._upstream()
        resp = await client.post("/v1/plans", data=form, headers={"authorization": _as_secret_key(auth)})
        if resp.status_code >= 400:
            raise StripeError(resp.status_code, f"emulator: localstripe refused the plan mirror: {resp.text}")

    def _update_price(self, price_id: str, params: dict[str, Any]) -> dict[str, Any]:
        price = self._price(price_id)
        allowed = {"active", "metadata", "nickname", "lookup_key", "tax_behavior", "expand"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise StripeError(
                400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0]
            )
        if "active" in params:
            price["active"] = _bool(params["active"])
        if "metadata" in params:
            price["metadata"] = _merge_metadata(price["metadata"], params["metadata"])
        for key in ("nickname", "lookup_key", "tax_behavior"):
            if key in params:
                price[key] = params[key] or None
        return price

    def _list_prices(self, query: dict[str, Any]) -> dict[str, Any]:
        found = list(self.prices.values())
        if "active" in query:
            found = [p for p in found if p["active"] == _bool(query["active"])]
        for key in ("product", "currency", "type"):
            if key in query:
                found = [p for p in found if p[key] == query[key]]
        if "lookup_keys" in query:
            keys = query["lookup_keys"] if isinstance(query["lookup_keys"], list) else [query["lookup_keys"]]
            found = [p for p in found if p["lookup_key"] in keys]
        return _list(found, "/v1/prices", query)

    # -- checkout and portal sessions ----------------------------------------------------------------

    def _checkout_session(self, session_id: str) -> dict[str, Any]:
        found = self.checkout_sessions.get(session_id)
        if found is None:
            raise _missing("checkout.session", session_id)
        return found

    async def _customer_exists(self, auth: str, customer: Any) -> None:
        if customer is not None and await self._upstream_get(auth, f"/v1/customers/{customer}") is None:
            raise StripeError(404, f"No such customer: '{customer}'", code="resource_missing", param="customer")

    async def _create_checkout_session(self, auth: str, params: dict[str, Any]) -> dict[str, Any]:
        mode = _require(params, "mode")
        if mode not in ("payment", "setup", "subscription"):
            raise _bad(f"Invalid mode: {mode}", "mode")
        await self._customer_exists(auth, params.get("customer"))
        items = params.get("line_items") or []
        if mode != "setup" and not items:
            raise StripeError(400, "line_items is required in payment and subscription mode.", code="parameter_missing")
        subtotal = 0
        currency = None
        prices = [self._price(_require(item, "price")) for item in items]
        if mode == "subscription" and not any(p["recurring"] for p in prices):
            raise _bad("You must provide at least one recurring price in `subscription` mode.", "line_items")
        for item, price in zip(items, prices, strict=True):
            subtotal += (price["unit_amount"] or 0) * int(item.get("quantity", 1))
            currency = currency or price["currency"]
        created = _now()
        session_id = f"cs_test_{_rand(58)}"
        tax = bool(_bool((params.get("automatic_tax") or {}).get("enabled")))
        session = {
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": _bool(params.get("allow_promotion_codes")),
            "amount_subtotal": subtotal if mode != "setup" else None,
            "amount_total": subtotal if mode != "setup" else None,
            "automatic_tax": {
                "enabled": tax,
                "liability": {"type": "self"} if tax else None,
                "provider": "stripe" if tax else None,
                "status": "requires_location_inputs" if tax else None,
            },
            "billing_address_collection": params.get("billing_address_collection"),
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": created,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": params.get("customer"),
            "customer_account": None,
            "customer_creation": None if params.get("customer") else "if_required",
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "discounts": [
                {"coupon": d.get("coupon"), "promotion_code": d.get("promotion_code")}
                for d in params.get("discounts") or []
            ],
            "expires_at": int(params.get("expires_at") or created + 24 * 3600),
            "id": session_id,
            "integration_identifier": None,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": params.get("locale"),
            "managed_payments": None,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "mode": mode,
            "object": "checkout.session",
            "origin_context": None,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always" if mode == "subscription" else None,
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "permissions": None,
            "phone_number_collection": {
                "enabled": bool(_bool((params.get("phone_number_collection") or {}).get("enabled")))
            },
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": params.get("success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": params.get("ui_mode", "hosted"),
            "url": f"{self.public_base}/emulated/checkout/{session_id}",
            "wallet_options": None,
        }
        self.checkout_sessions[session_id] = session
        return session

    def _expire_checkout_session(self, session_id: str) -> dict[str, Any]:
        session = self._checkout_session(session_id)
        if session["status"] != "open":
            raise _bad(
                f"Only Checkout Sessions with a status of `open` can be expired; this one is {session['status']}."
            )
        session["status"] = "expired"
        session["url"] = None
        return session

    def _portal_configuration(self, configuration_id: str) -> dict[str, Any]:
        found = self.portal_configurations.get(configuration_id)
        if found is None:
            raise _missing("billing_portal.configuration", configuration_id)
        return found

    def _save_portal_configuration(self, current: dict[str, Any] | None, params: dict[str, Any]) -> dict[str, Any]:
        """Create (current None) or update a portal configuration: the features as asked, merged into
        Stripe's defaults for a new one (each feature off unless enabled)."""
        if current is None and not params.get("features"):
            raise StripeError(400, "Missing required param: features.", code="parameter_missing", param="features")
        now = _now()
        configuration = current or {
            "active": True,
            "application": None,
            "business_profile": {"headline": None, "privacy_policy_url": None, "terms_of_service_url": None},
            "created": now,
            "default_return_url": None,
            "features": {
                "customer_update": {"allowed_updates": [], "enabled": False},
                "invoice_history": {"enabled": False},
                "payment_method_update": {"enabled": False, "payment_method_configuration": None},
                "subscription_cancel": {"enabled": False, "mode": "at_period_end", "proration_behavior": "none"},
                "subscription_pause": {"enabled": False},
                "subscription_update": {"default_allowed_updates": [], "enabled": False, "products": []},
            },
            "id": f"bpc_{_rand(24)}",
            "is_default": False,
            "livemode": False,
            "login_page": {"enabled": False, "url": None},
            "metadata": {},
            "name": None,
            "object": "billing_portal.configuration",
            "updated": now,
        }
        for name, asked in (params.get("features") or {}).items():
            if name not in configuration["features"] or not isinstance(asked, dict):
                raise _bad(f"Received unknown parameter: features[{name}]", f"features[{name}]")
            feature = configuration["features"][name]
            for key, value in asked.items():
                if key == "enabled":
                    feature["enabled"] = bool(_bool(value))
                elif key in ("allowed_updates", "default_allowed_updates"):
                    feature[key] = [] if value == "" else list(value)
                else:
                    feature[key] = value
        configuration["metadata"] = _merge_metadata(configuration["metadata"], params.get("metadata"))
        configuration["updated"] = now
        self.portal_configurations[configuration["id"]] = configuration
        return configuration

    async def _create_portal_session(self, auth: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = _require(params, "customer")
        if params.get("configuration"):
            self._portal_configuration(params["configuration"])
        await self._customer_exists(auth, customer)
        session_id = f"bps_{_rand(24)}"
        session = {
            "configuration": params.get("configuration") or "bpc_emulatordefault",
            "created": _now(),
            "customer": customer,
            "customer_account": None,
            "flow": None,
            "id": session_id,
            "livemode": False,
            "locale": params.get("locale"),
            "object": "billing_portal.session",
            "on_behalf_of": params.get("on_behalf_of"),
            "return_url": params.get("return_url"),
            "url": f"{self.public_base}/emulated/portal/{session_id}",
        }
        self.portal_sessions[session_id] = session
        return session

    # -- meters ----------------------------------------------------------------------------------------

    def _meter(self, meter_id: str) -> dict[str, Any]:
        found = self.meters.get(meter_id)
        if found is None:
            raise _missing("billing.meter", meter_id)
        return found

    def _create_meter(self, params: dict[str, Any]) -> dict[str, Any]:
        display_name = _require(params, "display_name")
        event_name = _require(params, "event_name")
        formula = (params.get("default_aggregation") or {}).get("formula")
        if formula not in ("sum", "count", "last"):
            raise _bad("default_aggregation[formula] must be sum, count or last.", "default_aggregation[formula]")
        if any(m["event_name"] == event_name and m["status"] == "active" for m in self.meters.values()):
            raise _bad(f"An active meter with event_name '{event_name}' already exists.", "event_name")
        mapping = params.get("customer_mapping") or {}
        created = _now()
        meter_id = f"mtr_test_{_rand(24)}"
        meter = {
            "created": created,
            "customer_mapping": {
                "event_payload_key": mapping.get("event_payload_key", "stripe_customer_id"),
                "type": mapping.get("type", "by_id"),
            },
            "default_aggregation": {"formula": formula},
            "display_name": display_name,
            "event_name": event_name,
            "event_time_window": params.get("event_time_window"),
            "id": meter_id,
            "livemode": False,
            "object": "billing.meter",
            "status": "active",
            "status_transitions": {"deactivated_at": None},
            "updated": created,
            "value_settings": {
                "event_payload_key": (params.get("value_settings") or {}).get("event_payload_key", "value")
            },
        }
        self.meters[meter_id] = meter
        return meter

    def _create_meter_event(self, params: dict[str, Any]) -> dict[str, Any]:
        event_name = _require(params, "event_name")
        payload = _require(params, "payload")
        meter = next((m for m in self.meters.values() if m["event_name"] == event_name), None)
        if meter is None or meter["status"] != "active":
            raise _bad(f"No active meter was found for event_name '{event_name}'.", "event_name")
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        if customer_key not in payload:
            raise _bad(f"payload[{customer_key}] is required by the meter's customer mapping.", "payload")
        if meter["default_aggregation"]["formula"] != "count":
            try:
                float(payload.get(value_key, ""))
            except ValueError:
                raise _bad(f"payload[{value_key}] must be a number.", "payload") from None
        identifier = params.get("identifier") or _rand(24)
        if identifier in self.meter_events and identifier not in self._expired_identifiers:
            return self.meter_events[identifier]  # within Stripe's window an identifier counts once
        if identifier in self.meter_events:  # past the window Stripe takes it as a new event: it counts again
            identifier_key = f"{identifier}#{_rand(8)}"
            self.meter_events[identifier_key] = {**self.meter_events[identifier], "created": _now()}
            self.meter_events[identifier_key]["payload"] = payload
            self.meter_events[identifier_key]["timestamp"] = int(params.get("timestamp", _now()))
            return self.meter_events[identifier_key]
        event = {
            "created": _now(),
            "event_name": event_name,
            "identifier": identifier,
            "livemode": False,
            "object": "billing.meter_event",
            "payload": payload,
            "timestamp": int(params.get("timestamp", _now())),
        }
        self.meter_events[identifier] = event
        return event

    def _event_summaries(self, meter_id: str, query: dict[str, Any]) -> dict[str, Any]:
        meter = self._meter(meter_id)
        customer = _require(query, "customer")
        start, end = int(_require(query, "start_time")), int(_require(query, "end_time"))
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        events = [
            e
            for e in self.meter_events.values()
            if e["event_name"] == meter["event_name"]
            and e["payload"].get(customer_key) == customer
            and start <= e["timestamp"] < end
        ]
        formula = meter["default_aggregation"]["formula"]
        values = [float(e["payload"].get(value_key, 0)) for e in sorted(events, key=lambda e: e["timestamp"])]
        aggregated = (
            len(values) if formula == "count" else (values[-1] if values and formula == "last" else sum(values))
        )
        summary = {
            "aggregated_value": aggregated,
            "end_time": end,
            "id": f"mtrusg_{_rand(24)}",
            "livemode": False,
            "meter": meter_id,
            "object": "billing.meter_event_summary",
            "start_time": start,
        }
        return {
            "object": "list",
            "url": f"/v1/billing/meters/{meter_id}/event_summaries",
            "has_more": False,
            "data": [summary],
        }


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


# ---------------------------------------------------------------------------------------------------


@dataclass
class StripeEmulator:
    """The running pair: `api_base` is what the SDK (and an integration's apiBase) points at."""

    api_base: str
    localstripe_base: str
    standin: StandIn
    secret_key: str = TEST_SECRET_KEY

    def client(self, secret_key: str | None = None) -> stripe.StripeClient:
        return stripe.StripeClient(
            secret_key or self.secret_key, base_addresses={"api": self.api_base}, max_network_retries=0
        )

    def reset(self) -> None:
        """Forget every object (localstripe's and the stand-in's), saved idempotency key and failure."""
        httpx.delete(f"{self.localstripe_base}/_config/data", timeout=10, verify=SSL_CONTEXT).raise_for_status()
        self.standin.reset()

    def fail_next(self, times: int, **kwargs: Any) -> None:
        self.standin.fail_next(times, **kwargs)

    def products(self) -> list[Any]:
        return list(self.client().v1.products.list(params={"limit": 100}).data)

    def prices(self, product: str | None = None) -> list[Any]:
        params: dict[str, Any] = {"limit": 100}
        if product is not None:
            params["product"] = product
        return list(self.client().v1.prices.list(params=params).data)  # type: ignore[arg-type]


def _wait_until_up(url: str, proc: subprocess.Popen[bytes] | None, log: Path | None, deadline: float) -> None:
    while True:
        try:
            httpx.get(url, timeout=1, verify=SSL_CONTEXT)
            return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            detail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"localstripe exited with {proc.returncode}: {detail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


def _start_localstripe(port: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LOCALSTRIPE_BOOT, str(port)], stdout=log_file, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/js.stripe.com/v3/", proc, log, time.monotonic() + 30)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
    return proc, base


@contextlib.contextmanager
def running_emulator(log_dir: Path) -> Iterator[StripeEmulator]:
    """Start localstripe (subprocess) and the stand-in (thread) on free loopback ports; stop both after."""
    log = log_dir / "localstripe.log"
    proc, localstripe_base = with_free_port(lambda port: _start_localstripe(port, log))
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    sock = listening_socket()  # kept from choosing to listening: no other xdist worker can take the port
    try:
        standin = StandIn(upstream=localstripe_base)
        port = sock.getsockname()[1]
        standin.public_base = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(standin.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="stripe-stand-in")
        thread.start()
        _wait_until_up(f"{standin.public_base}/", None, None, time.monotonic() + 20)
        yield StripeEmulator(api_base=standin.public_base, localstripe_base=localstripe_base, standin=standin)
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        sock.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def fixture_objects() -> dict[str, Any] | None:
    """Stripe's published example objects, when `shared/stripe/fixtures3.json` sits beside the repository."""
    candidate = Path(__file__).resolve().parents[3] / "shared" / "stripe" / "fixtures3.json"
    if not candidate.exists():
        return None
    resources: dict[str, Any] = json.loads(candidate.read_text())["resources"]
    return resources


__all__ = ["TEST_SECRET_KEY", "StandIn", "StripeEmulator", "decode_form", "fixture_objects", "running_emulator"]
