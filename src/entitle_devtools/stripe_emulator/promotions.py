"""Promotion codes (a customer-facing code for a coupon), which localstripe lacks (see `standin.py`).

A code applied as a subscription's discount (`discounts[][promotion_code]`, on create or update, also by a
paid Checkout) is checked as Stripe documents: active and not expired, `max_redemptions` not reached, the
`customer` it is restricted to, and `restrictions.first_time_transaction` (a customer with a paid invoice
has transacted); `times_redeemed` counts each application that succeeded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entitle_devtools.stripe_emulator.wire import StripeError, _bad, _bool, _list, _missing, _now, _rand


class PromotionCodeEndpoints:
    """The stand-in's /v1/promotion_codes: create, retrieve, update `active`, list by code."""

    promotion_codes: dict[str, dict[str, Any]]

    if TYPE_CHECKING:

        async def _upstream_get(self, auth: str, path: str) -> dict[str, Any] | None: ...

    async def _promotion_code_route(
        self, method: str, parts: list[str], auth: str, params: dict[str, Any], query: dict[str, Any]
    ) -> dict[str, Any] | None:
        match (method, parts):
            case ("POST", ["v1", "promotion_codes"]):
                return await self._create_promotion_code(auth, params)
            case ("GET", ["v1", "promotion_codes"]):
                found = [
                    p
                    for p in self.promotion_codes.values()
                    if query.get("code") in (None, p["code"]) and _bool(query.get("active")) in (None, p["active"])
                ]
                return _list(found, "/v1/promotion_codes", query)
            case ("GET", ["v1", "promotion_codes", promo_id]):
                return self._promotion_code(promo_id)
            case ("POST", ["v1", "promotion_codes", promo_id]):
                promo = self._promotion_code(promo_id)
                if "active" in params:
                    promo["active"] = bool(_bool(params["active"]))
                return promo
        return None

    async def _redeemable(self, auth: str, promo_id: str, customer: str | None) -> dict[str, Any]:
        """The promotion code, if this customer may redeem it now (Stripe's 400 otherwise)."""
        promo = self.promotion_codes.get(promo_id)
        if promo is None:
            raise StripeError(
                400, f"No such promotion code: '{promo_id}'", code="resource_missing", param="promotion_code"
            )
        refused = None
        if not promo["active"] or (promo["expires_at"] is not None and promo["expires_at"] <= _now()):
            refused = "This promotion code is not active."
        elif promo["max_redemptions"] is not None and promo["times_redeemed"] >= promo["max_redemptions"]:
            refused = "This promotion code has been redeemed the maximum number of times."
        elif promo["customer"] is not None and promo["customer"] != customer:
            refused = "This promotion code cannot be redeemed by this customer."
        elif promo["restrictions"]["first_time_transaction"] and customer and await self._has_paid(auth, customer):
            refused = "This promotion code cannot be redeemed because the customer has prior transactions."
        if refused is not None:
            raise StripeError(400, refused, code="promotion_code_invalid", param="discounts")
        return promo

    async def _has_paid(self, auth: str, customer: str) -> bool:
        invoices = await self._upstream_get(auth, f"/v1/invoices?customer={customer}&limit=100")
        return any(
            i.get("status") == "paid" and (i.get("amount_paid") or 0) > 0 for i in (invoices or {}).get("data", [])
        )

    def _redeemed(self, discounts: list[dict[str, Any]]) -> None:
        """After the subscription write succeeded: each code it applied was redeemed once more."""
        for discount in discounts:
            promo = self.promotion_codes.get(discount.get("promotion_code") or "")
            if promo is not None:
                promo["times_redeemed"] += 1

    def _promotion_code(self, promo_id: str) -> dict[str, Any]:
        if promo_id not in self.promotion_codes:
            raise _missing("promotion_code", promo_id)
        return self.promotion_codes[promo_id]

    async def _create_promotion_code(self, auth: str, params: dict[str, Any]) -> dict[str, Any]:
        coupon_id = params.get("coupon") or (params.get("promotion") or {}).get("coupon")
        if not coupon_id:
            raise _bad("Missing required param: promotion[coupon].", "promotion")
        coupon = await self._upstream_get(auth, f"/v1/coupons/{coupon_id}")
        if coupon is None:
            raise _missing("coupon", str(coupon_id))
        code = str(params.get("code") or _rand(8).upper())
        if any(p["code"] == code and p["active"] for p in self.promotion_codes.values()):
            raise _bad(f"An active promotion code with `code: {code}` already exists.", "code")
        promo_id = f"promo_{_rand(14)}"
        promo: dict[str, Any] = {
            "id": promo_id,
            "object": "promotion_code",
            "active": _bool(params.get("active")) is not False,
            "code": code,
            "coupon": coupon,
            "promotion": {"type": "coupon", "coupon": coupon_id},
            "created": _now(),
            "customer": params.get("customer"),
            "expires_at": int(params["expires_at"]) if params.get("expires_at") else None,
            "livemode": False,
            "max_redemptions": int(params["max_redemptions"]) if params.get("max_redemptions") else None,
            "metadata": params.get("metadata") or {},
            "restrictions": {
                "first_time_transaction": bool(_bool((params.get("restrictions") or {}).get("first_time_transaction"))),
                "minimum_amount": None,
                "minimum_amount_currency": None,
            },
            "times_redeemed": 0,
        }
        self.promotion_codes[promo_id] = promo
        return promo
