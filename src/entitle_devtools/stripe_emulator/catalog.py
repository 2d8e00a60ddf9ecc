"""Prices and Billing Meters, which localstripe lacks (see `standin.py` for the whole picture)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

from entitle_devtools.stripe_emulator.wire import (
    StripeError,
    _as_secret_key,
    _bad,
    _bool,
    _list,
    _merge_metadata,
    _missing,
    _now,
    _rand,
    _require,
    _tiers,
)


class CatalogEndpoints:
    """The stand-in's Prices (mirrored as localstripe Plans) and Billing Meters, meter events and summaries."""

    # The stand-in's state and plumbing (`standin.StandIn`).
    prices: dict[str, dict[str, Any]]
    meters: dict[str, dict[str, Any]]
    meter_events: dict[str, dict[str, Any]]
    _expired_identifiers: set[str]

    if TYPE_CHECKING:

        async def _upstream(self) -> httpx.AsyncClient: ...

        async def _upstream_get(self, auth: str, path: str) -> dict[str, Any] | None: ...

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
