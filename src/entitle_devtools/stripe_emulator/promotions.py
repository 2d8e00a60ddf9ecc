"""Promotion codes (a customer-facing code for a coupon), which localstripe lacks (see `standin.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entitle_devtools.stripe_emulator.wire import _bad, _bool, _list, _missing, _now, _rand


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
            "max_redemptions": None,
            "metadata": params.get("metadata") or {},
            "restrictions": {},
            "times_redeemed": 0,
        }
        self.promotion_codes[promo_id] = promo
        return promo
