"""Checkout Sessions and billing-portal configurations and sessions, which localstripe lacks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entitle_devtools.stripe_emulator.wire import (
    StripeError,
    _bad,
    _bool,
    _merge_metadata,
    _missing,
    _now,
    _rand,
    _require,
)


class SessionEndpoints:
    """Checkout Sessions, and billing-portal configurations and sessions."""

    # The stand-in's state and plumbing (`standin.StandIn`).
    checkout_sessions: dict[str, dict[str, Any]]
    checkout_requests: dict[str, dict[str, Any]]
    checkout_auth: dict[str, str]
    portal_configurations: dict[str, dict[str, Any]]
    portal_sessions: dict[str, dict[str, Any]]
    public_base: str

    if TYPE_CHECKING:

        def _price(self, price_id: str) -> dict[str, Any]: ...

        async def _upstream_get(self, auth: str, path: str) -> dict[str, Any] | None: ...

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
        self.checkout_auth[session_id] = auth  # the hosted page's Pay acts for the account that opened it
        self.checkout_requests[session_id] = params
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
