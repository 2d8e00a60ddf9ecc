"""What a Stripe customer is told that Entitle does not keep: billing details (addresses, invoice name and
fields, metadata, tax ids), and the lookups of payment methods, promotion codes and tax rates that billing
information names (docs/stripe.md, "Billing information: forwarded, not kept")."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypedDict, cast

import stripe

from entitle.billing import rules
from entitle.billing.provider import (
    BillingDetails,
    CustomerSpec,
    PaymentMethodDetails,
    PaymentMethodNotFound,
    PromotionCode,
)
from entitle.billing.stripe_support import _id_of, _waited_for


class ContactParams(TypedDict, total=False):
    name: str
    email: str
    preferred_locales: list[str]


def contact_params(customer: CustomerSpec) -> ContactParams:
    """What a Stripe customer is told of the Entitle customer itself (kept by Entitle: the contract returns
    them): its name, email and language, each only when Entitle has one."""
    params: ContactParams = {}
    if customer.name:
        params["name"] = customer.name
    if customer.email:
        params["email"] = customer.email
    if customer.locales:
        params["preferred_locales"] = list(customer.locales)
    return params


def apply_billing_details(
    client: stripe.StripeClient, customer_billing_id: str, details: BillingDetails, *, idempotency_key: str
) -> None:
    """One customer update with what was passed, then the tax ids the customer lacks (Stripe adds tax
    ids one by one; those already there, by type and value, are not added twice on a retry)."""
    params: dict[str, Any] = {}
    if details.billing_address:
        params["address"] = details.billing_address
    if details.shipping_address:
        current = client.v1.customers.retrieve(customer_billing_id).to_dict()
        name = details.invoice_name or current.get("name") or customer_billing_id
        params["shipping"] = {"name": name, "address": details.shipping_address}
    if details.invoice_name:
        params["name"] = details.invoice_name
    if details.invoice_custom_fields is not None:
        fields = [{"name": k[:40], "value": v[:140]} for k, v in details.invoice_custom_fields.items()]
        params["invoice_settings"] = {"custom_fields": fields or ""}
    if details.metadata:
        params["metadata"] = {k[:40]: v[:500] for k, v in details.metadata.items()}
    if params:
        client.v1.customers.update(
            customer_billing_id,
            params=cast(Any, params),
            options={"idempotency_key": f"{idempotency_key}:billing-details"},
        )
    if not details.tax_ids:
        return
    held = {
        (str(t.type), str(t.value)) for t in client.v1.customers.tax_ids.list(customer_billing_id).auto_paging_iter()
    }
    for i, (kind, value) in enumerate(details.tax_ids):
        if (kind, value) in held:
            continue
        client.v1.customers.tax_ids.create(
            customer_billing_id,
            params={"type": cast(Any, kind), "value": value},
            options={"idempotency_key": f"{idempotency_key}:tax-id-{i}"},
        )


def payment_method(client: stripe.StripeClient, payment_method_id: str) -> PaymentMethodDetails:
    """A payment method read while a request waits: 400 when Stripe has none, 503 when it does not answer."""
    try:
        found = client.v1.payment_methods.retrieve(payment_method_id)
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404 or exc.code == "resource_missing":
            raise PaymentMethodNotFound(f"paymentMethodId: Stripe has no payment method '{payment_method_id}'") from exc
        raise _waited_for("reading the payment method", exc) from exc
    except stripe.StripeError as exc:
        raise _waited_for("reading the payment method", exc) from exc
    raw: dict[str, Any] = found.to_dict()
    card = raw.get("card") or {}
    return PaymentMethodDetails(
        id=str(raw["id"]),
        type=rules.PAYMENT_METHOD_TYPES.get(str(raw.get("type"))),
        customer_billing_id=_id_of(raw.get("customer")),
        card_brand=card.get("brand"),
        card_last4=card.get("last4"),
        card_exp_month=card.get("exp_month"),
        card_exp_year=card.get("exp_year"),
    )


def find_promotion_code(client: stripe.StripeClient, code: str) -> PromotionCode | None:
    found = client.v1.promotion_codes.list(params={"code": code, "limit": 1}).data
    if not found:
        return None
    promo: dict[str, Any] = found[0].to_dict()
    # Older API versions name the coupon at the top level, newer ones under `promotion`.
    coupon_id = _id_of(promo.get("coupon") or (promo.get("promotion") or {}).get("coupon"))
    if coupon_id is None:
        return None
    expires = promo.get("expires_at")
    expired = expires is not None and int(expires) <= int(datetime.now(UTC).timestamp())
    return PromotionCode(
        id=str(promo["id"]),
        code=str(promo.get("code")),
        coupon_billing_id=coupon_id,
        active=bool(promo.get("active")) and not expired,
        max_redemptions=promo.get("max_redemptions"),
        times_redeemed=int(promo.get("times_redeemed") or 0),
        customer_billing_id=_id_of(promo.get("customer")),
    )


def tax_rate_for(client: stripe.StripeClient, percentage: Decimal, *, idempotency_key: str) -> str:
    # Sent as its exact decimal text: the request is form-encoded, so no float rounding on the way.
    wanted = cast(Any, format(percentage, "f"))
    for listed in client.v1.tax_rates.list(params={"limit": 100}).auto_paging_iter():
        rate: dict[str, Any] = listed.to_dict()
        if (
            rate.get("active")
            and not rate.get("inclusive")
            and Decimal(str(rate.get("percentage"))) == percentage
            and (rate.get("metadata") or {}).get("entitleTaxPercentage")
        ):
            return str(rate["id"])
    created = client.v1.tax_rates.create(
        params={
            "display_name": "Tax",
            "inclusive": False,
            "percentage": wanted,
            "metadata": {"entitleTaxPercentage": str(percentage)},
        },
        options={"idempotency_key": f"{idempotency_key}:tax-rate"},
    )
    return str(created.id)
