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
              │       /v1/promotion_codes[/{id}]                        (create, retrieve, update active, list by code)
              │  4. fields localstripe refuses on coupons (name, currency_options) and subscriptions
              │     (automatic_tax, collection_method, days_until_due, default_payment_method, discounts,
              │     proration_behavior): taken off the request, kept, and shown on the objects returned
              │     (an update's proration_behavior also reaches localstripe, whose boot patch prorates)
              │  5. Stripe's "now" (`clock`, as a Stripe test clock): given, a new subscription starts then
              │     (`backdate_start_date` to localstripe) and an item update without `proration_date` is
              │     prorated then
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
  saved and before the answer goes back: crash tests SIGKILL the calling worker process there; race tests
  change Entitle there (void a grant, run the worker) while the caller waits. It runs in a worker thread,
  so the stand-in serves other requests meanwhile (what the hook runs may call Stripe itself).
- Objects the stand-in returns have the top-level fields of Stripe's published examples
  (`shared/stripe/fixtures3.json`, from Stripe's OpenAPI repository); `test_stripe_emulator.py`
  checks the field sets against that file when it is there.
- localstripe persists its store to a fixed `/tmp/localstripe.pickle`, which concurrent test runs on
  one machine would share; the subprocess is started with persistence switched off, bound to
  127.0.0.1 (its own `start()` binds every interface).

Checkout Sessions keep `automatic_tax[enabled]`, `phone_number_collection[enabled]` and `discounts` as
asked (Stripe Tax computes nothing here: a session asking for it shows `status: requires_location_inputs`).

Also emulated: Stripe's hosted pages (`hosted.py`: a Checkout page whose "Pay" completes the session,
creates the subscription and sends a signed `checkout.session.completed` to `webhook_endpoints`; a portal
page), `GET /v1/account` (one account per key; `revoked_keys` answer 401, `restricted_keys` 403 on the
paths they lack), billing-portal configurations, subscriptions of several items and their item updates
prorated by time as Stripe prorates them (`proration_behavior`, `proration_date`, `payment_behavior`
`pending_if_incomplete`; boot patches of localstripe, see localstripe.py), and Stripe's 24-hour window
for idempotency keys and meter-event identifiers, passed on demand (`pass_identifier_window`).

Not emulated (a test that needs them must say so): meter events reaching localstripe invoices, search
other than customers' and subscriptions' by metadata (which the stand-in answers at once, where Stripe's
index lags by up to a minute), Products' `default_price`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from entitle_devtools.stripe_emulator.catalog import CatalogEndpoints
from entitle_devtools.stripe_emulator.hosted import HostedPages
from entitle_devtools.stripe_emulator.promotions import PromotionCodeEndpoints
from entitle_devtools.stripe_emulator.sessions import SessionEndpoints
from entitle_devtools.stripe_emulator.wire import (
    _METADATA_CLAUSE,
    _PRICE_KEY,
    StripeError,
    _account,
    _as_secret_key,
    _bad,
    _bool,
    _injected,
    _list,
    _missing,
    _now,
    _rand,
    _require,
    decode_form,
)

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
class StandIn(CatalogEndpoints, SessionEndpoints, HostedPages, PromotionCodeEndpoints):
    """Stripe endpoints localstripe lacks, idempotency keys and failure injection, in front of localstripe."""

    upstream: str
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    promotion_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Fields localstripe's Coupons and Subscriptions lack, kept here by object id (see `_split_extras`).
    coupon_extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscription_extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What each Checkout Session was opened with, and by which key (its hosted page pays it).
    checkout_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_auth: dict[str, str] = field(default_factory=dict)
    # Where the stand-in sends the events of what it completes itself (url, signing secret).
    webhook_endpoints: list[tuple[str, str]] = field(default_factory=list)
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
    # Called (in a thread of the stand-in's pool) with each POST that executed without an error, after its result
    # was saved against its idempotency key and before the answer goes back: a test can kill the caller
    # there (the object exists at "Stripe", the caller never learns it). Cleared by `reset`.
    after_write: Callable[[Logged], None] | None = None
    # Stripe's "now" in epoch seconds, as a Stripe test clock gives it (None: the real time). Tests whose
    # Entitle runs on a test clock set it to that clock, so the billing periods at "Stripe" are Entitle's:
    # a subscription created at the clock's now starts its cycle then, and an update without
    # `proration_date` is prorated at the clock's now. Cleared by `reset`.
    clock: Callable[[], float] | None = None

    # -- control (called from the test thread) -----------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            for store in (
                self.prices,
                self.checkout_sessions,
                self.portal_sessions,
                self.meters,
                self.meter_events,
                self.promotion_codes,
                self.portal_configurations,
                self.checkout_requests,
                self.checkout_auth,
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
            self.clock = None

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
        # Stripe.js (localstripe's stand-in for it, served here under /js.stripe.com/v3/) calls the API from
        # the page's origin, as the real one does: any origin may, the emulator listening on loopback only.
        cors = Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=methods, allow_headers=["*"])
        return Starlette(
            middleware=[cors],
            routes=[
                Route("/emulated/checkout/{session_id}", self.checkout_page, methods=["GET"]),
                Route("/emulated/checkout/{session_id}/pay", self.checkout_pay, methods=["POST"]),
                Route("/emulated/portal/{session_id}", self.portal_page, methods=["GET"]),
                Route("/emulated/invoices/{invoice_id}", self.invoice_page, methods=["GET"]),
                Route("/emulated/invoices/{invoice_id}/pdf", self.invoice_pdf, methods=["GET"]),
                Route("/{path:path}", self._handle, methods=methods),
            ],
        )

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
            await run_in_threadpool(hook, entry)  # other requests are served meanwhile: the hook may call Stripe
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
            case (_, ["v1", "promotion_codes", *_]):
                return await self._promotion_code_route(method, parts, auth, params, query)
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
    #                  {coupon} or {promotion_code}, see promotions.py; "" removes them), proration_behavior (kept
    #                  as the last one used)
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
        # A new subscription's collection also reaches localstripe, whose boot patch invoices instead of charging;
        # an update's proration behaviour too, as its boot patch prorates the items it changes.
        collection: tuple[str, ...] = ()
        if parts[1] == "subscriptions":
            collection = ("collection_method", "days_until_due") if len(parts) == 2 else ("proration_behavior",)
        kept = [(k, v) for k, v in pairs if k.split("[", 1)[0] not in names or k in collection]
        if parts[1] == "subscriptions" and self.clock is not None:
            # Stripe's "now" is the clock's (a test clock): a new subscription's cycle starts then, an update
            # of its items is prorated then unless it says when.
            names_sent = {k.split("[", 1)[0] for k, _ in pairs}
            if len(parts) == 2 and "backdate_start_date" not in names_sent:
                kept.append(("backdate_start_date", str(int(self.clock()))))
            elif len(parts) == 3 and "items" in names_sent and "proration_date" not in names_sent:
                kept.append(("proration_date", str(int(self.clock()))))
        extras = {k: v for k, v in params.items() if k in names}
        if parts[1] == "subscriptions":
            auth = request.headers.get("authorization", "")
            customer = params.get("customer")
            if len(parts) == 3 and "discounts" in extras:  # an update: the subscription's customer
                customer = (await self._upstream_get(auth, f"/v1/subscriptions/{parts[2]}") or {}).get("customer")
            extras = await self._subscription_extras(auth, extras, customer)
        return urlencode(kept), extras

    async def _subscription_extras(self, auth: str, extras: dict[str, Any], customer: str | None) -> dict[str, Any]:
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
                promo_id = entry.get("promotion_code")
                if promo_id:
                    promo = await self._redeemable(auth, str(promo_id), customer)
                    coupon_id = promo["promotion"]["coupon"]
                else:
                    coupon_id = _require(entry, "coupon")
                coupon = await self._upstream_get(auth, f"/v1/coupons/{coupon_id}")
                if coupon is None:
                    raise StripeError(404, f"No such coupon: '{coupon_id}'", code="resource_missing", param="coupon")
                coupon.update(self.coupon_extras.get(coupon_id, {}))
                discounts.append(
                    {
                        "id": f"di_{_rand(24)}",
                        "object": "discount",
                        "coupon": coupon,
                        "promotion_code": promo_id or None,
                        "start": _now(),
                    }
                )
            extras["discounts"] = discounts
        return extras

    def _with_extras(self, parts: list[str], extras: dict[str, Any] | None, response: Response) -> Response:
        if len(parts) < 2 or parts[1] not in ("coupons", "subscriptions", "invoices") or response.status_code != 200:
            return response
        body = json.loads(bytes(response.body))
        objects = body["data"] if body.get("object") == "list" else [body]
        if extras and parts[1] != "invoices" and len(objects) == 1 and "id" in objects[0]:
            store = self.coupon_extras if parts[1] == "coupons" else self.subscription_extras
            store.setdefault(objects[0]["id"], {}).update(extras)
            self._redeemed(extras.get("discounts") or [])
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
                obj.setdefault("pending_update", None)  # set by localstripe's boot patch while one waits
            elif obj.get("object") == "invoice":
                self.with_invoice_links(obj)
        headers = {k: v for k, v in response.headers.items() if k.lower() == "request-id"}
        return JSONResponse(body, status_code=response.status_code, headers=headers)
