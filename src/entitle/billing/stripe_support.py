"""What the Stripe provider (`stripe_provider`) builds on, as functions and constants: which Stripe errors
no retry can fix, what a request that waited for Stripe answers when it fails, the permissions and the
billing-portal settings Entitle asks of an account, and Stripe's shapes of Entitle's objects both ways
(the parameters of a Price or a subscription item, an Invoice read back). Only the billing package
reaches Stripe; this module and `stripe_provider` are where it imports the SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, cast

import stripe
from stripe.params import (
    PriceCreateParams,
)

from entitle.billing import rules
from entitle.billing.provider import (
    CreditInvoiceSpec,
    InvoiceLine,
    PlanChange,
    PriceSpec,
    ProviderInvoice,
    ProviderRefused,
    ProviderUnavailable,
    SubscriptionItem,
    SubscriptionSpec,
)
from entitle.errors import FailedPrecondition

# The metadata that names an Entitle customer or subscription at Stripe (within one environment).
_CUSTOMER_IDENTITY = ("entitleEnvironment", "entitleCustomerId")
_SUBSCRIPTION_IDENTITY = ("entitleEnvironment", "entitleSubscriptionId")


class ProviderRetryLater(RuntimeError):
    """A provider call that cannot succeed yet but may later (the job retries with backoff)."""


# The Stripe events Entitle acts on (docs/stripe.md, "Webhooks from Stripe"); others are answered 2xx
# and dropped. invoice.payment_succeeded is Stripe's older twin of invoice.paid (localstripe sends it).
HANDLED_EVENTS: frozenset[str] = frozenset(
    {
        "payment_method.attached",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "invoice.overdue",
        "invoice.created",
        # A credit grant's invoice cancelled: the grant waiting for it is voided (docs/credits.md).
        "invoice.voided",
        "invoice.marked_uncollectible",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "checkout.session.completed",
    }
)

# Stripe codes of a 4xx that heals on its own (another request holds the key or the object for now).
_TRANSIENT_CODES = frozenset({"idempotency_key_in_use", "lock_timeout", "rate_limit"})


def is_permanent(exc: BaseException) -> bool:
    """A Stripe error no retry of the same call can fix: the key is refused (401), lacks a permission
    (403), or Stripe refuses the request itself (400: invalid; 404: no such object). Network failures,
    429s and Stripe's 5xx are transient; an idempotency conflict is handled where it happens."""
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return True
    if isinstance(exc, stripe.InvalidRequestError):
        return exc.http_status in (400, 404) and exc.code not in _TRANSIENT_CODES
    return False


# What Entitle does at Stripe, as the resources a restricted key must open (Stripe's dashboard names,
# with the list call that proves read access). Connecting reads each once; write access is proven by
# the first write, and a write refused for a permission is a permanent error (the job's dead letter
# names it).
REQUIRED_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("Customers (write)", "/v1/customers"),
    ("Products (write)", "/v1/products"),
    ("Prices (write)", "/v1/prices"),
    ("Subscriptions (write)", "/v1/subscriptions"),
    ("Invoices (read)", "/v1/invoices"),
    ("Coupons (write)", "/v1/coupons"),
    ("Checkout Sessions (write)", "/v1/checkout/sessions"),
    ("Customer portal (write)", "/v1/billing_portal/configurations"),
    ("Meters (write)", "/v1/billing/meters"),
)

# The billing-portal settings Stigg recommends so the portal never changes what Entitle owns:
# invoices, the billing address and payment methods are the customer's to see and change; the
# subscription (plan, quantity, cancellation, pause) and the customer's name and email are Entitle's.
RECOMMENDED_PORTAL_FEATURES: dict[str, Any] = {
    "invoice_history": {"enabled": True},
    "customer_update": {"enabled": True, "allowed_updates": ["address"]},
    "payment_method_update": {"enabled": True},
    "subscription_cancel": {"enabled": False},
    "subscription_pause": {"enabled": False},
    "subscription_update": {"enabled": False},
}


def _waited_for(call: str, exc: stripe.StripeError) -> Exception:
    """What a request that waited for Stripe answers when the call failed."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (exc.http_status or 500) >= 500:
        return ProviderUnavailable(f"Stripe did not answer ({call}): {exc.user_message or exc}")
    if isinstance(exc, stripe.AuthenticationError):
        return ProviderRefused(f"Stripe refused the secret key ({call}): {exc.user_message or exc}")
    return ProviderRefused(f"Stripe refused {call}: {exc.user_message or exc}")


_INVOICE_STATES: dict[str, Literal["OPEN", "CANCELED", "PAID"]] = {
    "draft": "OPEN",
    "open": "OPEN",
    "paid": "PAID",
    "void": "CANCELED",
    "uncollectible": "CANCELED",
}


def _when(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _minor(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _invoice(invoice: Any) -> ProviderInvoice:
    """Entitle's view of a Stripe Invoice (read field by field: older and newer API versions differ)."""
    raw: dict[str, Any] = invoice.to_dict() if hasattr(invoice, "to_dict") else dict(invoice)
    transitions = raw.get("status_transitions") or {}
    discounts = raw.get("total_discount_amounts") or []
    taxes = raw.get("total_taxes")
    tax = sum((_minor(t.get("amount")) for t in taxes), Decimal(0)) if taxes is not None else _minor(raw.get("tax"))
    lines: list[InvoiceLine] = []
    for line in (raw.get("lines") or {}).get("data") or []:
        price = line.get("price") or line.get("plan") or (line.get("pricing") or {}).get("price_details") or {}
        unit = price.get("unit_amount_decimal") or price.get("unit_amount") or price.get("amount")
        metadata = price.get("metadata") or {}
        lines.append(
            InvoiceLine(
                description=line.get("description"),
                quantity=_minor(line["quantity"]) if line.get("quantity") is not None else None,
                unit_amount_minor=_minor(unit) if unit is not None else None,
                amount_minor=_minor(line.get("amount")),
                product_ref=metadata.get("entitleEntityId"),
            )
        )
    status = str(raw.get("status") or "draft")
    return ProviderInvoice(
        id=str(raw["id"]),
        number=raw.get("number"),
        state=_INVOICE_STATES.get(status, "OPEN"),
        currency=str(raw.get("currency") or "").lower(),
        issued_at=_when(transitions.get("finalized_at") or raw.get("created")),
        due_at=_when(raw.get("due_date")),
        paid_at=_when(transitions.get("paid_at")) if status == "paid" else None,
        subtotal_minor=_minor(raw.get("subtotal")),
        discount_minor=sum((_minor(d.get("amount")) for d in discounts), Decimal(0)),
        tax_minor=tax,
        total_minor=_minor(raw.get("total")),
        lines=tuple(lines),
        pdf_url=raw.get("invoice_pdf"),
        hosted_url=raw.get("hosted_invoice_url"),
    )


def minor_amount(spec: PriceSpec) -> tuple[str, int | str]:
    """Stripe's field and value for an exact minor-unit amount: `unit_amount` when whole, else the decimal."""
    minor = spec.unit_amount_minor
    if minor == minor.to_integral_value():
        return "unit_amount", int(minor)
    return "unit_amount_decimal", format(minor.normalize(), "f")


def price_fingerprint(spec: PriceSpec, product_id: str) -> dict[str, Any]:
    field, value = minor_amount(spec)
    fingerprint: dict[str, Any] = {
        "product": product_id,
        "currency": spec.currency,
        "unitAmountDecimal": str(value) if field == "unit_amount" else value,
        "interval": spec.interval,
    }
    if spec.meter is not None:
        fingerprint["meter"] = spec.meter.event_name
    # Only when set, so the fingerprints of plain prices synced earlier stay the same (and are reused).
    if spec.tiers:
        fingerprint["tiersMode"] = spec.tiers_mode
        fingerprint["tiers"] = [_tier_params(t) for t in spec.tiers]
    if spec.divide_by is not None:
        fingerprint["divideBy"] = spec.divide_by
    return fingerprint


def _tier_params(tier: rules.ProviderTier) -> dict[str, Any]:
    """One Stripe tier: `up_to` (or "inf"), the unit amount (`unit_amount`, or `unit_amount_decimal` when
    fractional) and the flat amount (whole minor units), each only when set."""
    params: dict[str, Any] = {"up_to": tier.up_to if tier.up_to is not None else "inf"}
    unit = tier.unit_amount_minor
    if unit is not None:
        if unit == unit.to_integral_value():
            params["unit_amount"] = int(unit)
        else:
            params["unit_amount_decimal"] = _plain(unit)
    if tier.flat_amount_minor is not None:
        params["flat_amount"] = int(tier.flat_amount_minor)
    return params


def _plain(value: Decimal) -> str:
    """A decimal as Stripe reads it: plain digits, never scientific notation."""
    return format(value.normalize(), "f")


def _id_of(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(value.get("id"))


def _item_price(item: Any) -> str:
    price = item.get("price") or item.get("plan")  # localstripe's items name the plan (a price's twin)
    return str(_id_of(price))


def _coupon_of(subscription: Any) -> str | None:
    """The coupon of the subscription's (first) discount, whichever API version shaped it."""
    discounts = subscription.get("discounts") or []
    discount = discounts[0] if discounts else subscription.get("discount")
    if discount is None or isinstance(discount, str):
        return None
    coupon = discount.get("coupon") or (discount.get("source") or {}).get("coupon")
    return _id_of(coupon)


def _promotion_code_of(subscription: Any) -> str | None:
    """The promotion code of the subscription's (first) discount, if it came from one."""
    discounts = subscription.get("discounts") or []
    discount = discounts[0] if discounts else subscription.get("discount")
    if discount is None or isinstance(discount, str):
        return None
    return _id_of(discount.get("promotion_code"))


def _item_change(change: rules.ItemChange) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if change.id is not None:
        entry["id"] = change.id
    if change.deleted:
        entry["deleted"] = True
        return entry
    if change.price is not None:
        entry["price"] = change.price
    if change.quantity is not None:
        entry["quantity"] = change.quantity
    return entry


def _price_params(spec: PriceSpec, product_id: str, meter_id: str | None = None) -> PriceCreateParams:
    params: PriceCreateParams = {
        "product": product_id,
        "currency": spec.currency,
        "nickname": spec.nickname,
        "metadata": spec.metadata,
    }
    field, value = minor_amount(spec)
    if spec.tiers:
        params["billing_scheme"] = "tiered"
        params["tiers_mode"] = cast(Literal["graduated", "volume"], spec.tiers_mode)
        params["tiers"] = [cast(Any, _tier_params(t)) for t in spec.tiers]
    elif field == "unit_amount":
        assert isinstance(value, int)
        params["unit_amount"] = value
    else:
        # The SDK types this as Decimal but sends str(Decimal), which is scientific notation below
        # 1e-6 ('1E-7'), which Stripe refuses; the plain string goes through as written.
        assert isinstance(value, str)
        params["unit_amount_decimal"] = cast(Decimal, value)
    if spec.divide_by is not None and not spec.tiers:
        params["transform_quantity"] = {"divide_by": spec.divide_by, "round": "up"}
    if spec.interval is not None and meter_id is not None:
        params["recurring"] = {
            "interval": spec.interval,
            "interval_count": 1,
            "usage_type": "metered",
            "meter": meter_id,
        }
    elif spec.interval is not None:
        params["recurring"] = {"interval": spec.interval, "interval_count": 1, "usage_type": "licensed"}
    return params


def subscription_price(
    client: stripe.StripeClient,
    base_price_id: str,
    unit_amount_minor: Decimal,
    subscription_ref: str,
    *,
    reusable: list[str],
    idempotency_key: str,
) -> str:
    """The Price of one subscription's overridden charge: the catalog price `base_price_id` (its product,
    currency, interval, meter and quantity transformation) at `unit_amount_minor`. A price of `reusable`
    (the subscription's current ones) made for the same charge and amount is reused, so re-sending a
    subscription unchanged changes none of its items."""
    wanted = format(unit_amount_minor.normalize(), "f")
    for price_id in reusable:
        held = client.v1.prices.retrieve(price_id).to_dict()
        metadata = held.get("metadata") or {}
        if metadata.get("entitleBasePrice") == base_price_id and metadata.get("entitleUnitAmountMinor") == wanted:
            return price_id
    base = client.v1.prices.retrieve(base_price_id).to_dict()
    if base.get("billing_scheme") == "tiered":
        raise ProviderRefused(f"price {base_price_id} is tiered: a subscription price overrides a unit amount only")
    params: dict[str, Any] = {
        "product": _id_of(base.get("product")),
        "currency": base["currency"],
        "nickname": f"{base.get('nickname') or base_price_id} (subscription {subscription_ref})"[:250],
        "metadata": {
            "entitleBasePrice": base_price_id,
            "entitleSubscriptionId": subscription_ref[:500],
            "entitleUnitAmountMinor": wanted,
        },
    }
    if unit_amount_minor == unit_amount_minor.to_integral_value():
        params["unit_amount"] = int(unit_amount_minor)
    else:
        params["unit_amount_decimal"] = wanted
    recurring = base.get("recurring")
    if recurring:
        params["recurring"] = {
            key: recurring[key] for key in ("interval", "interval_count", "usage_type", "meter") if recurring.get(key)
        }
    if base.get("transform_quantity"):
        transform = base["transform_quantity"]
        params["transform_quantity"] = {"divide_by": transform["divide_by"], "round": transform["round"]}
    created = client.v1.prices.create(
        params=cast(PriceCreateParams, params),
        options={"idempotency_key": f"{idempotency_key}:price:{base_price_id}"},
    )
    return str(created.id)


def priced_items(
    client: stripe.StripeClient,
    items: tuple[SubscriptionItem, ...],
    subscription_ref: str,
    *,
    idempotency_key: str,
    reusable: tuple[str, ...] = (),
) -> list[SubscriptionItem]:
    """The items with each overridden charge on the subscription's own price (`subscription_price`)."""
    return [
        item
        if item.override_unit_amount_minor is None
        else SubscriptionItem(
            subscription_price(
                client,
                item.price_billing_id,
                item.override_unit_amount_minor,
                subscription_ref,
                reusable=list(reusable),
                idempotency_key=idempotency_key,
            ),
            item.quantity,
        )
        for item in items
    ]


def mark_latest_invoice_paid(client: stripe.StripeClient, subscription_billing_id: str, idempotency_key: str) -> str:
    """`paid_out_of_band` on the subscription's latest invoice, which must be open (a draft is finalized
    first, as Stripe pays only finalized invoices)."""
    subscription = client.v1.subscriptions.retrieve(subscription_billing_id).to_dict()
    invoice_id = _id_of(subscription.get("latest_invoice"))
    if not invoice_id:
        raise FailedPrecondition(f"Stripe subscription {subscription_billing_id} has no invoice yet")
    status = client.v1.invoices.retrieve(invoice_id).status
    if status == "draft":
        client.v1.invoices.finalize_invoice(invoice_id, options={"idempotency_key": f"{idempotency_key}:finalize"})
    elif status != "open":
        raise FailedPrecondition(f"the latest invoice {invoice_id} is {status}, not open: nothing to mark paid")
    client.v1.invoices.pay(
        invoice_id, params={"paid_out_of_band": True}, options={"idempotency_key": f"{idempotency_key}:paid"}
    )
    return invoice_id


# How far before the grant was written an invoice of it is looked for: Stripe's `created` is Stripe's clock, the
# grant's is this host's, and a skew between them must not hide the invoice (the cost: a day more of listing).
_CLOCK_SKEW = timedelta(days=1)


def credit_invoice_made(
    client: stripe.StripeClient, customer_billing_id: str, environment_ref: str, grant_ref: str, made_since: datetime
) -> Any | None:
    """The grant's invoice an earlier attempt made (metadata `entitleCreditGrantId` and `entitleEnvironment`), or
    None. Stripe lists a customer's invoices "sorted by creation date, with the most recently created invoices
    appearing first" (docs.stripe.com/api/invoices/list): read until one older than the grant (less a skew).
    Listing, not Search: a list is read-after-write consistent, Stripe's search index lags (about a minute)."""
    oldest = int((made_since - _CLOCK_SKEW).timestamp())
    page = client.v1.invoices.list(params={"customer": customer_billing_id, "limit": 100})
    for invoice in page.auto_paging_iter():
        if int(invoice.created or 0) < oldest:
            return None
        metadata = invoice.to_dict().get("metadata") or {}
        if metadata.get("entitleCreditGrantId") == grant_ref and metadata.get("entitleEnvironment") == environment_ref:
            return invoice
    return None


def create_credit_invoice(
    client: stripe.StripeClient,
    spec: CreditInvoiceSpec,
    idempotency_key: str,
    still_wanted: Callable[[], bool] | None = None,
) -> ProviderInvoice:
    """A credit grant's invoice: a draft of its own (`pending_invoice_items_behavior=exclude`, so no other
    pending item of the customer joins it), one line with the cost in minor units, finalized and sent
    (`send_invoice`, due after the days given) or, paid out of band, recorded paid without a charge. Each call
    has its own key derived from the grant's: a retried job replays what was done and makes no second one.
    Stripe forgets keys after 24 hours, so a later attempt (`spec.made_since`) first looks for the invoice an
    earlier one made and carries it on from where it stopped (its line added only to a draft without one).
    Nothing is paid for a grant that ended meanwhile (`still_wanted`, asked just before): the invoice is left
    open, and recording it on the ended grant voids it (`credits.paid`)."""
    metadata = {"entitleEnvironment": spec.environment_ref, "entitleCreditGrantId": spec.grant_ref}
    earlier = None
    if spec.made_since is not None:
        earlier = credit_invoice_made(
            client, spec.customer_billing_id, spec.environment_ref, spec.grant_ref, spec.made_since
        )
    if earlier is None:
        params: Any = {
            "customer": spec.customer_billing_id,
            "collection_method": "charge_automatically" if spec.charge else "send_invoice",
            "pending_invoice_items_behavior": "exclude",
            "description": spec.description,
            "metadata": metadata,
        }
        if not spec.charge:
            params["days_until_due"] = spec.days_until_due
        draft = client.v1.invoices.create(params=params, options={"idempotency_key": f"{idempotency_key}:invoice"})
        invoice_id = str(draft.id)
    else:
        invoice_id = str(earlier.id)
    if earlier is None or (earlier.status == "draft" and not (earlier.to_dict().get("lines") or {}).get("data")):
        client.v1.invoice_items.create(
            params={
                "customer": spec.customer_billing_id,
                "invoice": invoice_id,
                "amount": spec.amount_minor,
                "currency": spec.currency,
                "description": spec.description,
                "metadata": metadata,
            },
            options={"idempotency_key": f"{idempotency_key}:item"},
        )
    invoice = client.v1.invoices.retrieve(invoice_id)
    if invoice.status == "draft":
        invoice = client.v1.invoices.finalize_invoice(
            invoice_id, options={"idempotency_key": f"{idempotency_key}:finalize"}
        )
    if (spec.paid_out_of_band or spec.charge) and invoice.status == "open" and still_wanted and not still_wanted():
        return _invoice(invoice)
    if spec.paid_out_of_band and invoice.status == "open":
        invoice = client.v1.invoices.pay(
            invoice_id, params={"paid_out_of_band": True}, options={"idempotency_key": f"{idempotency_key}:paid"}
        )
    if spec.charge and invoice.status == "open":
        try:
            invoice = client.v1.invoices.pay(invoice_id, options={"idempotency_key": f"{idempotency_key}:charge"})
        except stripe.CardError:
            invoice = client.v1.invoices.retrieve(invoice_id)  # declined: the invoice stays open
        except stripe.InvalidRequestError as exc:
            if exc.code != "invoice_payment_intent_requires_action":
                raise
            invoice = client.v1.invoices.retrieve(invoice_id)  # 3-D Secure: the customer must act
        if invoice.status == "open":
            return _with_attempt(client, invoice)
    return _invoice(invoice)


def _with_attempt(client: stripe.StripeClient, invoice: Any) -> ProviderInvoice:
    """An open invoice with what its latest payment attempt says: its PaymentIntent (the invoice's own field
    in older API versions and localstripe's; its `payments` since 2025) wants an action, or failed."""
    raw: dict[str, Any] = invoice.to_dict()
    intent_id = _id_of(raw.get("payment_intent"))
    if intent_id is None and "payment_intent" not in raw:
        expanded = client.v1.invoices.retrieve(str(raw["id"]), params={"expand": ["payments"]}).to_dict()
        for payment in (expanded.get("payments") or {}).get("data") or []:
            intent_id = _id_of((payment.get("payment") or {}).get("payment_intent")) or intent_id
    seen = _invoice(invoice)
    if intent_id is None:
        return seen
    try:
        intent = client.v1.payment_intents.retrieve(intent_id).to_dict()
    except stripe.PermissionError:  # a restricted key without PaymentIntents (read): the webhooks will tell
        return seen
    if intent.get("status") == "requires_action":
        return replace(seen, requires_action=True)
    error = intent.get("last_payment_error") or {}
    message = error.get("message") or error.get("decline_code") or error.get("code")
    return replace(seen, payment_error=str(message)[:500] if message else None)


def void_invoice(client: stripe.StripeClient, invoice_id: str, idempotency_key: str) -> ProviderInvoice:
    invoice = client.v1.invoices.retrieve(invoice_id)
    if invoice.status in ("draft", "open"):
        invoice = client.v1.invoices.void_invoice(invoice_id, options={"idempotency_key": f"{idempotency_key}:void"})
    return _invoice(invoice)


def provider_invoice(obj: dict[str, Any]) -> ProviderInvoice:
    """A Stripe Invoice as an event carries it (`data.object`), in Entitle's view."""
    return _invoice(obj)


def item_edits(
    client: stripe.StripeClient, current: dict[str, Any], subscription: SubscriptionSpec, idempotency_key: str
) -> list[rules.ItemChange]:
    """The item edits that turn a Stripe subscription's items (`current`, as retrieved) into
    `subscription`'s (`rules.item_changes`), its prices found or made as `priced_items` does, the items'
    own prices reused first."""
    held = [rules.CurrentItem(item["id"], _item_price(item), item.get("quantity")) for item in current["items"]["data"]]
    items = priced_items(
        client,
        subscription.items,
        subscription.ref,
        idempotency_key=idempotency_key,
        reusable=tuple(h.price for h in held),
    )
    return rules.item_changes(held, [rules.WantedItem(i.price_billing_id, i.quantity) for i in items])


def change_subscription_items(
    client: stripe.StripeClient, billing_id: str, subscription: SubscriptionSpec, at: datetime, idempotency_key: str
) -> PlanChange | None:
    """A plan change kept in place (docs/stripe.md, "Plan changes"): one `POST /v1/subscriptions/{id}` with
    the item edits that turn the subscription's items into the new plan's (`rules.item_changes`),
    `proration_behavior` as asked and `proration_date` = the change's instant, so Stripe credits the unused
    time of the old items and charges the rest of the period of the new ones exactly then. Charged now
    (`always_invoice`, to a card), it is sent with `payment_behavior=pending_if_incomplete`: a payment that fails leaves
    the old items in place (Stripe's pending update) while the change's invoice waits to be paid. Only
    what a pending update may carry is sent; metadata, discount and collection follow by the ordinary
    update. When the items already match (a retry after the answer was lost), nothing is sent and the
    latest invoice tells the outcome."""
    retrieved = client.v1.subscriptions.retrieve(billing_id, params={"expand": ["latest_invoice"]})
    current: dict[str, Any] = retrieved.to_dict()
    if current.get("status") in ("canceled", "incomplete_expired"):
        return None
    changes = item_edits(client, current, subscription, idempotency_key)
    if not changes:
        return _change_outcome(current, None)
    params: dict[str, Any] = {
        "items": [_item_change(c) for c in changes],
        "proration_behavior": subscription.proration_behavior,
        "proration_date": int(at.timestamp()),
        "expand": ["latest_invoice"],
    }
    if subscription.proration_behavior == "always_invoice" and subscription.collection_method == "charge_automatically":
        # (An invoiced subscription's change is sent to be paid later: no payment to wait for here.)
        params["payment_behavior"] = "pending_if_incomplete"
    updated = client.v1.subscriptions.update(
        billing_id, params=cast(Any, params), options={"idempotency_key": f"{idempotency_key}:change"}
    )
    return _change_outcome(updated.to_dict(), _id_of(current.get("latest_invoice")))


def _change_outcome(subscription: dict[str, Any], invoice_before: str | None) -> PlanChange:
    """Settled when no update is pending and the change's invoice (a latest invoice other than the one before
    it; none when the change made none) is paid, or sent to be paid on invoice terms (`send_invoice`: the
    service goes on meanwhile, as for a new invoiced subscription)."""
    latest = subscription.get("latest_invoice")
    invoice = latest if isinstance(latest, dict) else None
    made = invoice if invoice is not None and invoice.get("id") != invoice_before else None
    pending = subscription.get("pending_update") is not None
    invoiced = made is not None and made.get("collection_method") == "send_invoice" and made.get("status") == "open"
    paid = not pending and (made is None or made.get("status") == "paid" or invoiced)
    return PlanChange(invoice_id=str(made["id"]) if made is not None else None, paid=paid)
